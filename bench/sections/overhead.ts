/**
 * Section "overhead": the same pipeline (a) in one process calling the stage functions and
 * (b) through edge + NATS + stage services (separate processes, this machine), end to end:
 * (b) is timed from the HTTP POST to the job's terminal event reaching the client, so it
 * includes the upload, the blob store, every bus hop, the job record and the events.
 *
 * Overhead per hop = (p50 of b - p50 of a) / steps: every step is one hop (a message on
 * photolab.stage.<step>, its input loaded, its output stored, job record and events written).
 * A second estimate comes from the events alone: (end-to-end - sum of the steps' run times
 * as step.finished reports them) / steps.
 *
 * Both (a) and (b) use the machine's two cores; (b) also runs nats-server and the edge on them.
 */
import { STREAMS } from '../../services/lib/bus/subjects.js';
import { jetstreamManager } from '@nats-io/jetstream';
import { busCost, costPerJob, multipartBody, startCluster, type Cluster, type JobOutcome } from '../lib/cluster.js';
import { closeAll, prepare, runInProcess, type PipelineStep } from '../lib/inproc.js';
import { cpuMs, fixed, ms, photo, progress, sleep, summarize, table } from '../lib/util.js';
import type { SectionResult } from './types.js';

interface Case {
  name: string;
  pipeline: PipelineStep[];
  megapixels: number;
  runs: number;
  warmups: number;
  /** Transports to run (b) with; the first is the default. */
  transports: string[];
}

interface Row {
  name: string;
  transport: string;
  megapixels: number;
  a: ReturnType<typeof summarize>;
  b: ReturnType<typeof summarize>;
  steps: number;
  eventOverhead: ReturnType<typeof summarize>;
  submit: ReturnType<typeof summarize>;
  /** Per job over the timed runs: stored messages (all streams, KV included) and nats-server CPU. */
  bus: ReturnType<typeof costPerJob>;
  stepA: number[];
  stepB: number[];
}

/** Pause between two timed runs: a job's tail (acks, clean-up, events, GC) is over by then. */
const SETTLE_MS = 200;

const describe = (p: PipelineStep[]) => p.map((s) => (s.params && Object.keys(s.params).length ? `${s.step}(${Object.values(s.params).join(',')})` : s.step)).join(' -> ');

export async function overheadSection(options: { quick: boolean }): Promise<SectionResult> {
  const q = options.quick;
  const cases: Case[] = [
    { name: 'restore', pipeline: [{ step: 'decode' }, { step: 'denoise', params: { level: 'light' } }, { step: 'upscale', params: { factor: 2 } }, { step: 'encode' }], megapixels: 1, runs: q ? 1 : 3, warmups: 0, transports: ['auto', 'fused'] },
    { name: 'detect', pipeline: [{ step: 'decode' }, { step: 'detect_objects', params: { model: 'yolox' } }, { step: 'encode' }], megapixels: 1, runs: q ? 8 : 25, warmups: 3, transports: ['auto', 'local', 'bus', 'fused'] },
    { name: 'decode-encode', pipeline: [{ step: 'decode' }, { step: 'encode' }], megapixels: 1, runs: q ? 8 : 25, warmups: 3, transports: ['auto', 'local', 'bus', 'fused'] },
    { name: 'decode-encode-12mp', pipeline: [{ step: 'decode' }, { step: 'encode' }], megapixels: 12, runs: q ? 3 : 6, warmups: 1, transports: ['auto', 'local', 'bus', 'fused'] },
  ];
  // BENCH_CASES=detect,decode-encode runs only those cases (for a quick look).
  const only = (process.env.BENCH_CASES ?? '').split(',').filter(Boolean);
  if (only.length) cases.splice(0, cases.length, ...cases.filter((c) => only.includes(c.name)));
  const photos = new Map<number, Buffer>();
  for (const c of cases) if (!photos.has(c.megapixels)) photos.set(c.megapixels, (await photo(c.megapixels)).bytes);
  const small = (await photo(0.05)).bytes;

  // (a) and (b) alternate job by job: this machine drifts by 30-100% within an hour (the
  // in-process side read 36 to 55 ms in one afternoon when it ran as a block before each
  // transport's (b)), so each pair of runs sees the same machine. The services sit idle while
  // (a) runs; the bench process holds only an idle NATS connection then. Each run starts
  // SETTLE_MS after the one before, so that neither side pays for the other's tail (a job's
  // clean-up, its last events, collections in five processes).
  await prepare(['decode', 'denoise', 'upscale', 'encode', 'detect_objects']);
  const rows: Row[] = [];
  const transports = [...new Set(cases.flatMap((c) => c.transports))];
  for (const transport of transports) {
    const here = cases.filter((c) => c.transports.includes(transport));
    const steps = [...new Set(here.flatMap((c) => c.pipeline.map((p) => p.step)))];
    progress(`overhead (b) starting nats-server, edge and ${steps.length} stage services, FRAME_TRANSPORT=${transport}`);
    // 'fused': one stage process hosting every step (STAGE_LAYOUT=fused), frames in memory between them.
    const workers = transport === 'fused' ? { [steps.join(',')]: 1 } : Object.fromEntries(steps.map((s) => [s, 1]));
    const cluster = await startCluster({ workers, env: { FRAME_TRANSPORT: transport === 'fused' ? 'local' : transport } });
    try {
      for (const c of here) {
        progress(`overhead ${transport}: ${c.name} x ${c.runs}, (a) and (b) in turns`);
        const image = photos.get(c.megapixels)!;
        const body = multipartBody(image, c.pipeline);
        await runInProcess(c.pipeline, small);
        await checked(cluster, multipartBody(small, c.pipeline));
        for (let i = 0; i < c.warmups; i++) {
          await runInProcess(c.pipeline, image);
          await checked(cluster, body);
        }
        const outcomes: JobOutcome[] = [];
        const a = { totals: [] as number[], steps: [] as number[][] };
        // Writes over all the timed runs (nothing but the stages' heartbeats is stored while (a)
        // runs or the bench pauses); nats-server's CPU over (b)'s jobs only, as it idles at
        // ~2 ms per second meanwhile (the pauses alone would add ~1 ms per job).
        const before = await busCost(cluster);
        const natsPid = cluster.nats.process.pid!;
        let natsCpuMs = 0;
        for (let i = 0; i < c.runs; i++) {
          const r = await runInProcess(c.pipeline, image);
          a.totals.push(r.totalMs);
          a.steps.push(r.stepMs);
          await sleep(SETTLE_MS);
          const cpuBefore = cpuMs(natsPid);
          outcomes.push(await checked(cluster, body));
          natsCpuMs += cpuMs(natsPid) - cpuBefore;
          await sleep(SETTLE_MS);
        }
        const bus = { ...costPerJob(before, await busCost(cluster), c.runs), natsCpuMs: natsCpuMs / c.runs };
        await purge(cluster);
        const hops = c.pipeline.length;
        rows.push({
          name: c.name, transport, megapixels: c.megapixels, steps: hops,
          a: summarize(a.totals),
          b: summarize(outcomes.map((o) => o.e2eMs)),
          eventOverhead: summarize(outcomes.map((o) => (o.e2eMs - Object.values(o.stepMs).reduce((x, y) => x + y, 0)) / hops)),
          submit: summarize(outcomes.map((o) => o.submitMs)),
          bus,
          stepA: c.pipeline.map((_, i) => summarize(a.steps.map((s) => s[i]!)).p50),
          stepB: c.pipeline.map((p, i) => summarize(outcomes.map((o) => o.stepMs[`${i}:${p.step}`] ?? NaN)).p50),
        });
      }
    } finally {
      await cluster.stop();
    }
  }
  await closeAll();

  const pipelineOf = (name: string) => cases.find((c) => c.name === name)!;
  const main = table(
    ['pipeline', 'photo', 'FRAME_TRANSPORT', 'n', '(a) in-process p50 / p95 ms', '(b) edge+NATS+services p50 / p95 ms', 'ratio b/a (p50)', 'overhead per hop p50 ms', 'per hop from events ms', 'upload (POST->202) p50 ms', 'persisted writes / job', 'nats-server CPU ms / job'],
    rows.map((r) => [
      describe(pipelineOf(r.name).pipeline), `${r.megapixels} MP JPEG`, r.transport, r.b.n,
      `${ms(r.a.p50)} / ${ms(r.a.p95)}`, `${ms(r.b.p50)} / ${ms(r.b.p95)}`, fixed(r.b.p50 / r.a.p50, 3),
      ms((r.b.p50 - r.a.p50) / r.steps), ms(r.eventOverhead.p50), ms(r.submit.p50), fixed(r.bus.writes, 1), ms(r.bus.natsCpuMs),
    ]),
  );
  const writes = table(
    ['pipeline', 'FRAME_TRANSPORT', 'persisted writes per job, by stream'],
    rows.map((r) => [r.name, r.transport, Object.entries(r.bus.byStream).map(([name, n]) => `${name} ${fixed(n, 1)}`).join(', ')]),
  );
  const perStep = table(
    ['pipeline', 'FRAME_TRANSPORT', 'step', '(a) stage function p50 ms', '(b) step.finished ms p50 (input load + function)'],
    rows.filter((r) => r.transport === 'auto').flatMap((r) => pipelineOf(r.name).pipeline.map((p, i) => [r.name, r.transport, p.step, ms(r.stepA[i]!), ms(r.stepB[i]!)])),
  );
  const markdown = [
    'Same steps, same photo (fixtures/dog.jpg resized to the size shown, JPEG q90), same parameters. (a): the stage functions called one after another in the bench process, frame handed over in memory, under the allocator settings the services get (MALLOC_MMAP_THRESHOLD_, README); (a) and (b) run in turns, one job each, so that both see the machine in the same state, each ' + SETTLE_MS + ' ms after the run before it (a job\'s tail is over by then). (b): `POST /api/jobs` to the edge (uWebSockets.js, own process), NATS JetStream, one process per stage service (`dist/services/stage-worker/main.js <step>`), timed until the terminal job event reaches the client. One job at a time; warm-ups first. p95 is the nearest-rank p95 (of 3 runs: the largest).',
    'Fairness: both use the same 2 cores; (a) has them to itself, (b) shares them with nats-server, the edge and idle services. ONNX Runtime uses its default intra-op threads (2) in both.',
    'Hop = one step through the bus: the step message, its input loaded (the upload blob for decode, a frame for the others), step.started (live, core NATS), its output stored (frame, or the result blob for encode), its step event (which carries the stage metric), publish of the next step, ack. The edge\'s upload (blob and job record, written together, then the first publish) and the terminal event are spread over the hops too.',
    '',
    main,
    '',
    'Persisted writes: the growth of every stream\'s last sequence number (KV buckets are streams too) over the timed runs, per job; nats-server CPU: user + system time of its process over (b)\'s jobs (/proc, read before and after each), per job.',
    '',
    writes,
    '',
    'Per step, default transport:',
    '',
    perStep,
  ].join('\n');
  return { title: 'Overhead: in-process vs edge + NATS + stage services', markdown, data: rows };
}

async function checked(cluster: Cluster, body: { body: Buffer; contentType: string }): Promise<JobOutcome> {
  const outcome = await cluster.client.run(body);
  if (outcome.status !== 'done') throw new Error(`job ${outcome.jobId} ended ${outcome.status}: ${JSON.stringify(outcome.events.at(-1))}`);
  return outcome;
}

/** Keeps the store small between cases (results and uploads of finished jobs). */
async function purge(cluster: Cluster): Promise<void> {
  const jsm = await jetstreamManager(cluster.nc);
  await jsm.streams.purge(STREAMS.blobs).catch(() => undefined);
}
