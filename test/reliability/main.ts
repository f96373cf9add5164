/**
 * `npm run reliability` (full run) or `npm run reliability -- --short`: runs the fault suite
 * (suite.ts) and prints its report; `--json FILE` also writes it as JSON. Exits 1 when a job
 * was lost or duplicated, or an admitted one failed.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { MEMORY_BOUND_MIB, runReliability, summary, type ReliabilityOptions, type ReliabilityReport } from './suite.js';

export const FULL: ReliabilityOptions = { jobsPerPhase: 200, workerKills: 4, natsRestarts: 2, edgeRestarts: 2, burstFactor: 10, maxBacklog: 20, metrics: true, phaseTimeoutMs: 150_000 };
export const SHORT: ReliabilityOptions = { jobsPerPhase: 8, workerKills: 1, natsRestarts: 1, edgeRestarts: 1, burstFactor: 10, maxBacklog: 8, metrics: false, phaseTimeoutMs: 60_000 };

export function formatReliability(r: ReliabilityReport): string {
  const kv = (m: Record<string, number>) => Object.entries(m).map(([k, v]) => `${k}: ${v}`).join(', ') || 'none';
  const t = r.totals;
  const burst = r.phases.find((p) => p.memoryMiB);
  return [
    ...r.phases.map((p) => `${p.name}: ${summary(p)}`),
    `TOTAL: jobs submitted ${t.submitted}, admitted ${t.admitted}, completed ${t.completed}, failed ${kv(t.failed)}, duplicated ${t.duplicated}, lost ${t.lost}`,
    `refused (overload): ${kv(t.refused)}; without Retry-After: ${t.refusedWithoutRetryAfter}`,
    r.metrics ? `metrics rows: jobs ${r.metrics.jobRows} of ${r.metrics.expectedJobs} expected, jobs with all 3 steps in stage_runs ${r.metrics.jobsWithAllSteps}, stage_runs by status ${kv(r.metrics.stageRunsByStatus)}, duplicate run ids ${r.metrics.duplicateRunIds}` : '',
    burst?.memoryMiB ? `peak RSS during the burst: edge ${burst.memoryMiB.edge} MiB, nats-server ${burst.memoryMiB.nats} MiB (bounds ${MEMORY_BOUND_MIB.edge} / ${MEMORY_BOUND_MIB.nats} MiB)` : '',
  ].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { short: { type: 'boolean', default: false }, json: { type: 'string' } } });
  const options = values.short ? SHORT : FULL;
  const started = Date.now();
  const report = await runReliability({ ...options, log: (l) => console.log(l) });
  console.log(`\n${formatReliability(report)}\nwall ${((Date.now() - started) / 1000).toFixed(0)} s`);
  if (values.json) writeFileSync(values.json, JSON.stringify(report, null, 2));
  const t = report.totals;
  const m = report.metrics;
  const metricsExact = !m || (m.jobRows === m.expectedJobs && m.jobsWithAllSteps === m.expectedJobs && m.duplicateRunIds === 0);
  if (t.lost > 0 || t.duplicated > 0 || t.admitted !== t.completed || t.refusedWithoutRetryAfter > 0 || !metricsExact) process.exitCode = 1;
}

if (process.argv[1]?.endsWith('reliability/main.js')) {
  main().catch((error) => {
    console.error(error);
    process.exit(2);
  });
}
