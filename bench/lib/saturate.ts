/**
 * Child process of the throughput section's ceiling: runs the pipeline in process (inproc.ts:
 * stage functions back to back, no bus, no HTTP, no digests) on one photo, as many times as it
 * can between START_AT and START_AT + DURATION_MS (epoch ms, so that sibling processes run at
 * the same time), and prints how many it finished. Argument: the pipeline as JSON.
 */
import { readFileSync } from 'node:fs';
import { applyCollectorSettings, loadConfig } from '../../services/lib/shared/config.js';
import { closeAll, prepare, runInProcess, type PipelineStep } from './inproc.js';

const pipeline = JSON.parse(process.argv[2]!) as PipelineStep[];
const image = readFileSync(process.argv[3]!);
const startAt = Number(process.env.START_AT);
const durationMs = Number(process.env.DURATION_MS);

applyCollectorSettings(loadConfig()); // as the services do at start
await prepare(pipeline.map((p) => p.step));
for (let i = 0; i < 3; i++) await runInProcess(pipeline, image); // warm-up: first runs plan memory
while (Date.now() < startAt) await new Promise((r) => setTimeout(r, 2));
const end = startAt + durationMs;
let done = 0;
while (Date.now() < end) {
  await runInProcess(pipeline, image);
  done++;
}
process.stdout.write(`${JSON.stringify({ done, seconds: (Date.now() - startAt) / 1000 })}\n`);
await closeAll();
