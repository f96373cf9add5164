/**
 * Section "throughput": jobs per second at saturation for decode -> detect_objects -> encode
 * on a 1 MP photo, with 1 and then 2 replicas of the slowest stage (detect_objects, by its step
 * times), the others at 1. A closed loop keeps CONCURRENCY jobs in flight; the rate is taken
 * over the jobs after the warm-up ones.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { withAllocatorDefaults } from '../../services/lib/shared/config.js';
import { busCost, costPerJob, multipartBody, startCluster, type BusCost, type JobOutcome } from '../lib/cluster.js';
import { DIST, fixed, ms, now, photo, progress, summarize, table } from '../lib/util.js';
import type { SectionResult } from './types.js';

const CONCURRENCY = 8;

export async function throughputSection(options: { quick: boolean }): Promise<SectionResult> {
  const pipeline = [{ step: 'decode' }, { step: 'detect_objects', params: { model: 'yolox' } }, { step: 'encode' }];
  const image = (await photo(1)).bytes;
  const body = multipartBody(image, pipeline);
  const jobs = options.quick ? 30 : 80;
  const warm = 8;
  const rows: string[][] = [];
  const data: Record<string, unknown> = {};
  let baseline = 0;
  for (const replicas of [1, 2]) {
    progress(`throughput: detect_objects x ${replicas}, ${jobs} jobs, ${CONCURRENCY} in flight`);
    const cluster = await startCluster({ workers: { decode: 1, detect_objects: replicas, encode: 1 } });
    try {
      const outcomes: { at: number; o: JobOutcome }[] = [];
      let started = 0;
      let t0 = 0;
      let costAtT0: Promise<BusCost> | undefined;
      const lane = async () => {
        while (started < jobs + warm) {
          started++;
          const o = await cluster.client.run(body);
          if (o.status !== 'done') throw new Error(`job ended ${o.status}`);
          outcomes.push({ at: now(), o });
          if (outcomes.length === warm) {
            t0 = now();
            costAtT0 = busCost(cluster);
          }
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, lane));
      const measured = outcomes.slice(warm);
      // Jobs still in flight when the last one ended are counted in the cost but not in the rate: a slight overstatement.
      const cost = costPerJob(await costAtT0!, await busCost(cluster), measured.length);
      const seconds = (measured.at(-1)!.at - t0) / 1000;
      const rate = measured.length / seconds;
      if (replicas === 1) baseline = rate;
      const stepP50 = (name: string) => summarize(measured.map(({ o }) => Object.entries(o.stepMs).find(([k]) => k.endsWith(`:${name}`))?.[1] ?? NaN)).p50;
      const e2e = summarize(measured.map(({ o }) => o.e2eMs));
      data[`replicas${replicas}`] = { rate, e2e, bus: cost };
      rows.push([String(replicas), String(measured.length), fixed(rate, 2), replicas === 1 ? '1.00' : fixed(rate / baseline, 2),
        `${ms(stepP50('decode'))} / ${ms(stepP50('detect_objects'))} / ${ms(stepP50('encode'))}`, `${ms(e2e.p50)} / ${ms(e2e.p95)}`, fixed(cost.writes, 1), ms(cost.natsCpuMs)]);
    } finally {
      await cluster.stop();
    }
  }
  // The ceiling: the stage functions alone, in process, at saturation on the same cores.
  const ceilings: string[][] = [];
  for (const processes of [os.cpus().length, os.cpus().length + 1]) {
    progress(`throughput: in-process ceiling, ${processes} processes`);
    const c = await inProcessCeiling(pipeline, image, processes, options.quick ? 8000 : 15000);
    data[`ceiling${processes}`] = c;
    ceilings.push([String(processes), String(c.jobs), fixed(c.rate, 2), fixed(baseline / c.rate, 2)]);
  }
  const markdown = [
    `decode -> detect_objects(yolox) -> encode on a 1 MP JPEG, ${CONCURRENCY} jobs in flight (closed loop), ${jobs} jobs timed after ${warm} warm-up jobs; services as separate processes, FRAME_TRANSPORT=auto.`,
    'The slowest stage is detect_objects (see the step times); its replicas share one durable consumer. On 2 cores everything (three stage services, nats-server, the edge, the load generator) shares the same CPUs, and ONNX Runtime already uses both cores for one inference, so a second replica adds little: the limit is CPU, not the bus.',
    '',
    table(['detect_objects replicas', 'jobs', 'jobs/s', 'scaling vs 1', 'step p50 ms decode / detect / encode (under load)', 'end-to-end p50 / p95 ms (under load)', 'persisted writes / job', 'nats-server CPU ms / job'], rows),
    '',
    'Ceiling: the same three stage functions called back to back in process (bench/lib/inproc.ts: no HTTP, no bus, no blob or frame store, no digests, no events), in separate processes started together on the same cores, as many jobs as they finish in the time. What the system reaches of it is what its work around the models (upload, stores, hashes, events, the load generator) leaves.',
    '',
    table(['in-process pipelines (processes)', 'jobs', 'jobs/s', 'system with 1 replica / ceiling'], ceilings),
  ].join('\n');
  return { title: 'Throughput at saturation', markdown, data };
}

/** Runs the pipeline in `processes` processes at once for durationMs (bench/lib/saturate.ts). */
async function inProcessCeiling(pipeline: { step: string; params?: Record<string, unknown> }[], image: Buffer, processes: number, durationMs: number): Promise<{ jobs: number; rate: number }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'photolab-ceiling-'));
  try {
    const photoFile = path.join(dir, 'photo.jpg');
    writeFileSync(photoFile, image);
    // Far enough ahead for every process to load its models and warm up first.
    const env = withAllocatorDefaults({ ...process.env, START_AT: String(Date.now() + 15000), DURATION_MS: String(durationMs) });
    const counts = await Promise.all(Array.from({ length: processes }, () => new Promise<{ done: number; seconds: number }>((resolve, reject) => {
      const child = spawn(process.execPath, [path.join(DIST, 'bench/lib/saturate.js'), JSON.stringify(pipeline), photoFile], { env, stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      child.on('error', reject);
      child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').at(-1)!)) : reject(new Error(`ceiling process exited ${code}`))));
    })));
    const jobs = counts.reduce((a, c) => a + c.done, 0);
    return { jobs, rate: jobs / Math.max(...counts.map((c) => c.seconds)) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
