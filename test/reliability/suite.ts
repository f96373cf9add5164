/**
 * The reliability suite (issue 14): the real system as production runs it (nats-server with
 * file storage, the edge and one process per stage, all on loopback ports) under load from
 * the product's own load tool, while faults are injected:
 *   1. stage workers SIGKILLed mid-step (a step.started seen, its step.finished not yet) and
 *      started again;
 *   2. the edge SIGKILLed and restarted while WebSocket clients wait: they reconnect and resume
 *      with afterSeq, and must get every result exactly once;
 *   3. the metrics sink SIGKILLed and ClickHouse (a real clickhouse-server) SIGKILLed during
 *      the load, both started again: afterwards the row counts are exact (one jobs row per job,
 *      every job's three steps in stage_runs, nothing twice);
 *   4. an overload burst of ten times capacity (MAX_BACKLOG) from 50 callers, open loop (each
 *      submits again as soon as one is admitted, MAX_CONCURRENT_JOBS 2 per caller), no retries:
 *      the excess gets 429/503 with Retry-After, every admitted job completes, and the resident
 *      memory of the edge and nats-server stays under MEMORY_BOUND_MIB.
 *   5. last, nats-server SIGKILLed and restarted on the same port and store: services reconnect
 *      by themselves.
 * It reports, per phase and in total: submitted, completed, failed by reason, duplicated, lost,
 * and recovery seconds per fault: from the fault until the first job of the load completes
 * after the faulty component is back. Bounded by job counts and a deadline per phase.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { connect } from '@nats-io/transport-node';
import { startCluster, JWT_SECRET, type Cluster } from '../../bench/lib/cluster.js';
import { startNatsServer, type RunningNatsServer } from '../../services/launcher/nats-server.js';
import { runLoad, type LoadReport } from '../../services/load/load.js';
import { PRESETS } from '../../services/load/main.js';
import { subjects } from '../../services/lib/bus/subjects.js';
import type { JobEvent } from '../../services/lib/shared/schema-types.js';
import { DIST } from '../../bench/lib/util.js';
import { startClickHouseServer, type ClickHouseServer } from '../helpers/clickhouse-server.js';

export const MEMORY_BOUND_MIB = { edge: 768, nats: 768 };

export interface ReliabilityOptions {
  /** Jobs per fault phase (half upscale x2 over HTTP, half detect_objects over WebSocket). */
  jobsPerPhase: number;
  workerKills: number;
  natsRestarts: number;
  edgeRestarts: number;
  /** Burst size as a multiple of MAX_BACKLOG. */
  burstFactor: number;
  /** Run the metrics phase (needs clickhouse-server; adds its start-up time). */
  metrics: boolean;
  maxBacklog: number;
  phaseTimeoutMs: number;
  log?: (line: string) => void;
}

export interface PhaseReport {
  name: string;
  loads: LoadReport[];
  recoveryS: number[];
  notes: string[];
  memoryMiB?: { edge: number; nats: number };
}

export interface MetricsCheck {
  expectedJobs: number;
  jobRows: number;
  jobsWithAllSteps: number;
  stageRunsByStatus: Record<string, number>;
  duplicateRunIds: number;
}

export interface ReliabilityReport {
  options: ReliabilityOptions;
  phases: PhaseReport[];
  metrics?: MetricsCheck;
  totals: { submitted: number; admitted: number; completed: number; failed: Record<string, number>; refused: Record<string, number>; refusedWithoutRetryAfter: number; duplicated: number; lost: number };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function rssMiB(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

function killed(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

export async function runReliability(options: ReliabilityOptions): Promise<ReliabilityReport> {
  const log = options.log ?? (() => undefined);
  const photo = await sharp({ create: { width: 96, height: 72, channels: 3, background: '#5a7d9a' } })
    .composite([{ input: await sharp({ create: { width: 40, height: 30, channels: 3, background: '#d08040' } }).png().toBuffer(), left: 20, top: 20 }])
    .jpeg().toBuffer();
  const steps = ['decode', 'upscale', 'detect_objects', 'encode'];
  const cluster: Cluster = await startCluster({
    workers: Object.fromEntries(steps.map((s) => [s, 1])),
    env: {
      ACK_WAIT_MS: '4000', RETRY_DELAY_MS: '200', MAX_ATTEMPTS: '6', FRAME_STORAGE: 'file',
      MAX_BACKLOG: String(options.maxBacklog), MAX_CONCURRENT_JOBS: '2', DEADLINE_SWEEP_MS: '2000',
    },
  });
  const port = Number(new URL(cluster.baseUrl).port);
  let ch: ClickHouseServer | undefined;
  let sink: ChildProcess | undefined;
  let metricsCheck: MetricsCheck | undefined;
  const spawnSink = async (): Promise<ChildProcess> => {
    const logFile = path.join(cluster.dataDir, `metrics-sink-${Date.now()}.log`);
    const fd = openSync(logFile, 'a');
    const child = spawn(process.execPath, [path.join(DIST, 'services/metrics-sink/main.js')], {
      env: { ...process.env, ...cluster.env, CLICKHOUSE_URL: ch!.url, METRICS_BATCH_MS: '300', METRICS_RETRY_MAX_MS: '1000', METRICS_ACK_WAIT_MS: '5000' },
      stdio: ['ignore', fd, fd],
    });
    closeSync(fd);
    process.once('exit', () => child.kill('SIGKILL'));
    return child;
  };
  if (options.metrics) {
    ch = await startClickHouseServer();
    process.once('exit', () => { if (ch?.pid) try { process.kill(ch.pid, 'SIGKILL'); } catch { /* gone */ } });
    sink = await spawnSink();
  }
  let nats: RunningNatsServer = cluster.nats;
  const restartedNats: RunningNatsServer[] = [];
  const workers = new Map<string, ChildProcess>();
  let edge: ChildProcess | undefined;
  const phases: PhaseReport[] = [];

  // Which steps are running right now, from the job events (a core subscription sees JetStream publishes).
  const watcher = await connect({ servers: nats.url, name: 'reliability-watch', maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  const running = new Map<string, number>();
  // step.started is live progress (photolab.progress.*), the rest stored facts (photolab.events.>).
  for (const subject of [subjects.eventsAll, subjects.progressAll]) {
    watcher.subscribe(subject, {
      callback: (_error, m) => {
        try {
          const event = m.json<JobEvent>();
          if (!event.step) return;
          if (event.type === 'step.started') running.set(event.step, (running.get(event.step) ?? 0) + 1);
          else if (event.type === 'step.finished' || event.type === 'step.retrying') running.set(event.step, Math.max(0, (running.get(event.step) ?? 0) - 1));
        } catch {
          // not an event
        }
      },
    });
  }

  try {
    // The processes the cluster started: found by their command lines' step.
    for (const [pid, args] of listChildren()) {
      const step = steps.find((s) => args.endsWith(`stage-worker/main.js ${s}`));
      if (step) workers.set(step, { pid, kill: (sig: NodeJS.Signals) => process.kill(pid, sig) } as unknown as ChildProcess);
      if (args.endsWith('edge/main.js')) edge = { pid } as unknown as ChildProcess;
    }

    /** Two loads at once: upscale x2 over HTTP and detect_objects over WebSocket. */
    async function load(name: string, jobs: number, fault: (ended: () => number, lastEnd: () => number) => Promise<number[]>, extra: { retryRefused?: boolean; callers?: number; concurrency?: number; openLoop?: boolean } = {}): Promise<PhaseReport> {
      log(`phase ${name}: ${jobs} jobs`);
      let ended = 0;
      let lastEndAt = 0;
      const notes: string[] = [];
      const common = {
        url: cluster.baseUrl, image: photo, jwtSecret: JWT_SECRET, timeoutMs: options.phaseTimeoutMs,
        retryRefused: extra.retryRefused ?? true, openLoop: extra.openLoop, onNote: (n: string) => { if (notes.length < 20) notes.push(n); },
        onEnd: () => { ended++; lastEndAt = Date.now(); },
      };
      const half = Math.ceil(jobs / 2);
      const concurrency = extra.concurrency ?? 8;
      const loads = Promise.all([
        runLoad({ ...common, mode: 'http', jobs: half, concurrency: Math.ceil(concurrency / 2), callers: extra.callers ? Math.ceil(extra.callers / 2) : 4, pipeline: PRESETS.upscale }),
        runLoad({ ...common, mode: 'ws', jobs: jobs - half, concurrency: Math.floor(concurrency / 2), callers: extra.callers ? Math.floor(extra.callers / 2) : 4, pipeline: PRESETS.detect }),
      ]);
      const recoveryS = await fault(() => ended, () => lastEndAt);
      const report = { name, loads: await loads, recoveryS, notes };
      phases.push(report);
      log(`phase ${name}: ${summary(report)}`);
      return report;
    }

    /** Waits until `count` more jobs ended than at `from`, or the phase deadline passes. */
    async function progress(ended: () => number, count: number): Promise<void> {
      const from = ended();
      const until = Date.now() + options.phaseTimeoutMs;
      while (ended() < from + count && Date.now() < until) await sleep(50);
    }
    /** Seconds from `since` until the first job ends after it. */
    async function recovered(since: number, lastEnd: () => number): Promise<number> {
      const until = Date.now() + options.phaseTimeoutMs;
      while (lastEnd() <= since && Date.now() < until) await sleep(50);
      return lastEnd() > since ? (lastEnd() - since) / 1000 : NaN;
    }

    // 1. Stage workers SIGKILLed mid-step.
    await load('stage worker SIGKILL mid-step', options.jobsPerPhase, async (ended, lastEnd) => {
      const recoveries: number[] = [];
      for (let k = 0; k < options.workerKills; k++) {
        const step = k % 2 === 0 ? 'upscale' : 'detect_objects';
        await progress(ended, 2);
        const until = Date.now() + 30_000;
        while ((running.get(step) ?? 0) === 0 && Date.now() < until) await sleep(5);
        const at = Date.now();
        const victim = workers.get(step)!;
        process.kill(victim.pid!, 'SIGKILL');
        log(`  SIGKILL ${step} worker ${victim.pid} (${running.get(step) ?? 0} running)`);
        running.set(step, 0);
        workers.set(step, await cluster.spawnService('worker', step));
        recoveries.push(await recovered(at, lastEnd));
      }
      return recoveries;
    });

    // 2. The edge SIGKILLed and restarted while WebSocket clients wait on jobs.
    await load('edge SIGKILL + restart', options.jobsPerPhase, async (ended, lastEnd) => {
      const recoveries: number[] = [];
      for (let k = 0; k < options.edgeRestarts; k++) {
        await progress(ended, 3);
        const at = Date.now();
        process.kill(edge!.pid!, 'SIGKILL');
        log(`  SIGKILL edge ${edge!.pid}`);
        await waitExit(edge!.pid!);
        edge = await cluster.spawnService('edge', undefined, port);
        recoveries.push(await recovered(at, lastEnd));
      }
      return recoveries;
    });

    // 3. The metrics sink SIGKILLed and ClickHouse SIGKILLed (stopped) during the load; both back later.
    if (ch && sink) {
      await load('metrics sink SIGKILL + ClickHouse stopped', Math.ceil(options.jobsPerPhase / 2), async (ended, lastEnd) => {
        await progress(ended, 3);
        const at = Date.now();
        await killed(sink!);
        await ch!.signal('SIGKILL');
        log('  SIGKILL metrics sink and clickhouse-server');
        await progress(ended, 5); // jobs keep completing; their metrics wait in PHOTOLAB_EVENTS
        await ch!.restart();
        sink = await spawnSink();
        log('  clickhouse-server and the sink started again');
        return [await recovered(at, lastEnd)];
      });
    }

    // 4. Overload: ten times capacity at once from 50 callers, no retries.
    const memory = { edge: 0, nats: 0 };
    const sampler = setInterval(() => {
      memory.edge = Math.max(memory.edge, rssMiB(edge?.pid));
      memory.nats = Math.max(memory.nats, rssMiB(nats.process.pid));
    }, 100);
    const burst = await load('overload burst', options.burstFactor * options.maxBacklog, async () => [], { retryRefused: false, callers: 50, concurrency: 50, openLoop: true });
    clearInterval(sampler);
    burst.memoryMiB = { edge: Math.round(memory.edge), nats: Math.round(memory.nats) };
    log(`  peak RSS MiB: edge ${burst.memoryMiB.edge}, nats-server ${burst.memoryMiB.nats}`);
    // Last: nats-server SIGKILLed and restarted on the same port and file store (last, because
    // a stall it causes would otherwise spoil the figures of the phases after it).
    await load('nats-server SIGKILL + restart', options.jobsPerPhase, async (ended, lastEnd) => {
      const recoveries: number[] = [];
      for (let k = 0; k < options.natsRestarts; k++) {
        await progress(ended, 3);
        const at = Date.now();
        await killed(nats.process);
        log(`  SIGKILL nats-server`);
        const storeDir = (cluster.nats as { storeDir: string }).storeDir;
        nats = await startNatsServer({ storeDir, port: nats.port, logFile: path.join(storeDir, `nats-${k + 1}.log`), maxMemoryStore: 4 * 1024 * 1024 * 1024 });
        restartedNats.push(nats);
        const restarted = nats.process;
        process.once('exit', () => restarted.kill('SIGKILL')); // not the cluster's: stop it on an interrupt too
        recoveries.push(await recovered(at, lastEnd));
      }
      return recoveries;
    });

    if (ch) {
      // Exact counts: every job that ended has one jobs row and its three steps in stage_runs.
      const expectedJobs = phases.reduce((a, p) => a + p.loads.reduce((b, r) => b + r.completed + Object.values(r.failed).reduce((x, y) => x + y, 0), 0), 0);
      const db = cluster.env.CLICKHOUSE_DATABASE ?? 'photolab';
      const count = async (sql: string) => Number((await ch!.query(sql)).trim() || 0);
      const until = Date.now() + options.phaseTimeoutMs;
      let jobRows = 0;
      while (Date.now() < until) {
        jobRows = await count(`SELECT count() FROM ${db}.jobs FINAL`).catch(() => 0);
        if (jobRows >= expectedJobs) break;
        await sleep(250);
      }
      const byStatus: Record<string, number> = {};
      for (const line of (await ch.query(`SELECT status, count() FROM ${db}.stage_runs FINAL GROUP BY status`)).trim().split('\n')) {
        const [status, n] = line.split('\t');
        if (status) byStatus[status] = Number(n);
      }
      metricsCheck = {
        expectedJobs,
        jobRows,
        jobsWithAllSteps: await count(`SELECT count() FROM (SELECT job_id, uniqExact(step) AS steps FROM ${db}.stage_runs FINAL GROUP BY job_id) WHERE steps = 3`),
        stageRunsByStatus: byStatus,
        duplicateRunIds: await count(`SELECT count() - uniqExact(run_id) FROM ${db}.stage_runs FINAL`),
      };
      log(`  metrics: ${JSON.stringify(metricsCheck)}`);
    }
  } finally {
    if (sink) await killed(sink);
    await ch?.stop().catch(() => undefined);
    await watcher.close().catch(() => undefined);
    for (const server of restartedNats) await server.stop().catch(() => undefined);
    await cluster.stop().catch(() => undefined);
  }

  const totals: ReliabilityReport['totals'] = { submitted: 0, admitted: 0, completed: 0, failed: {}, refused: {}, refusedWithoutRetryAfter: 0, duplicated: 0, lost: 0 };
  for (const phase of phases) {
    for (const r of phase.loads) {
      totals.submitted += r.submitted;
      totals.admitted += r.admitted;
      totals.completed += r.completed;
      totals.duplicated += r.duplicated;
      totals.lost += r.lost;
      totals.refusedWithoutRetryAfter += r.refusedWithoutRetryAfter;
      for (const [k, v] of Object.entries(r.failed)) totals.failed[k] = (totals.failed[k] ?? 0) + v;
      for (const [k, v] of Object.entries(r.refused)) totals.refused[k] = (totals.refused[k] ?? 0) + v;
    }
  }
  return { options, phases, totals, metrics: metricsCheck };
}

/** Direct children of this process: pid and command line. */
function listChildren(): [number, string][] {
  const out: [number, string][] = [];
  const ps = execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(process.pid)], { encoding: 'utf8' });
  for (const line of ps.split('\n')) {
    const match = /^\s*(\d+)\s+(.*)$/.exec(line);
    if (match) out.push([Number(match[1]), match[2]!.trim()]);
  }
  return out;
}


async function waitExit(pid: number): Promise<void> {
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await sleep(20);
  }
}

export function summary(p: PhaseReport): string {
  const sum = (f: (r: LoadReport) => number) => p.loads.reduce((a, r) => a + f(r), 0);
  const failed: Record<string, number> = {};
  const refused: Record<string, number> = {};
  for (const r of p.loads) {
    for (const [k, v] of Object.entries(r.failed)) failed[k] = (failed[k] ?? 0) + v;
    for (const [k, v] of Object.entries(r.refused)) refused[k] = (refused[k] ?? 0) + v;
  }
  const kv = (m: Record<string, number>) => Object.entries(m).map(([k, v]) => `${k}: ${v}`).join(', ') || 'none';
  return `submitted ${sum((r) => r.submitted)}, admitted ${sum((r) => r.admitted)}, completed ${sum((r) => r.completed)}, failed ${kv(failed)}, refused ${kv(refused)}, duplicated ${sum((r) => r.duplicated)}, lost ${sum((r) => r.lost)}, recovery s ${p.recoveryS.map((s) => s.toFixed(1)).join(' ') || '-'}`;
}

