/**
 * One process hosting several steps (STAGE_LAYOUT=fused): a job's consecutive steps run there
 * with the frame in memory, still with every event, record and provenance entry, and a job
 * killed mid-chain is re-run from its first step after redelivery, with one result.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { jetstreamManager } from '@nats-io/jetstream';
import { STREAMS } from '../../services/lib/bus/subjects.js';
import type { JobMessage } from '../../services/lib/shared/schema-types.js';
import { BusFrames } from '../../services/lib/bus/frames/bus-frames.js';
import { fixture } from '../helpers/paths.js';
import { startSystem, waitFor, type TestSystem } from '../helpers/system.js';
import { stepContext } from '../helpers/steps.js';

let system: TestSystem;
before(async () => {
  system = await startSystem();
});
after(async () => system?.stop());

const PIPELINE = [{ step: 'decode' }, { step: 'detect_objects' }, { step: 'encode', params: { format: 'png' } }];

test('a fused worker runs decode -> detect_objects -> encode in one process, with full events and provenance', async () => {
  const worker = await system.startWorker('decode,detect_objects,encode');
  const job = await system.waitForJob((await system.submit(readFileSync(fixture('dog.jpg')), PIPELINE)).jobId, { timeoutMs: 30_000 });
  assert.equal(job.status, 'done', JSON.stringify(job.error));
  const events = await system.events(job.jobId);
  assert.deepEqual(events.map((e) => e.type), ['step.finished', 'step.finished', 'step.finished', 'job.done']);
  assert.deepEqual(job.steps.map((s) => s.status), ['done', 'done', 'done']);
  const workers = new Set(job.result!.provenance!.map((p) => p.worker));
  assert.equal(workers.size, 1, 'all three steps ran in the same process');
  assert.ok(job.result!.findings!.objects!.some((o) => o.label === 'dog'));
  const meta = await sharp(Buffer.from(await (await fetch(`${system.baseUrl}${job.result!.url}`, { headers: { authorization: `Bearer ${await system.token()}` } })).arrayBuffer())).metadata();
  assert.deepEqual([meta.width, meta.height], [768, 576]);
  // Only the first step went through the stages stream; nothing waits there.
  const jsm = await jetstreamManager(system.nc);
  for (const step of ['detect_objects', 'encode']) {
    const info = await jsm.consumers.info(STREAMS.stages, `stage-${step}`);
    assert.equal(info.delivered.consumer_seq, 0, `${step} never received a step message`);
  }
  await worker.stop();
});

test('killed in the middle of a fused chain: redelivery re-runs it from its first step, one result', async () => {
  const dying = system.spawnWorker('decode,detect_objects,encode', {}, { at: 'afterRun', ms: 60000 });
  const { jobId } = await system.submit(readFileSync(fixture('dog.jpg')), PIPELINE);
  await waitFor(() => system.liveEvents(jobId).some((e) => e.type === 'step.started' && e.step === 'decode'), 'decode to start', 30_000);
  dying.kill('SIGKILL');
  system.spawnWorker('decode,detect_objects,encode');
  const job = await system.waitForJob(jobId, { timeoutMs: 40_000 });
  assert.equal(job.status, 'done', JSON.stringify(job.error));
  const events = await system.events(jobId);
  assert.equal(events.filter((e) => e.type === 'job.done').length, 1);
  assert.equal(events.filter((e) => e.type === 'step.finished' && e.step === 'encode').length, 1);
  await system.stopSpawned();
});

/** Direct gets of jobs' uploads (what a first step without the host's copy does to read one), by subject. */
function watchUploadReads(): { of(jobId: string): number; stop(): void } {
  const subjects: string[] = [];
  const sub = system.nc.subscribe(`$JS.API.DIRECT.GET.${STREAMS.blobs}.>`, { callback: (_error, m) => { subjects.push(m.subject); } });
  return { of: (jobId) => subjects.filter((s) => s.includes(`uploads.${jobId}`)).length, stop: () => sub.unsubscribe() };
}

test('the edge leaves the upload for a first step on its host, which reads it from the host cache; a first step elsewhere reads the stored blob', async () => {
  const reads = watchUploadReads();
  await system.nc.flush();
  const rest = [await system.startWorker('detect_objects'), await system.startWorker('encode')];
  // decode on another host (its own tmpfs): no copy is left, decode reads the blob through nats-server.
  const otherCache = mkdtempSync(path.join(os.tmpdir(), 'another-host-'));
  system.spawnWorker('decode', { HOST_ID: 'another-host', FRAME_CACHE_DIR: otherCache });
  await waitFor(() => system.edge.presence.hostsOf('decode').some((s) => s.host === 'another-host'), 'the edge to see decode on another host');
  let jobId = (await system.submit(readFileSync(fixture('dog.jpg')), PIPELINE)).jobId;
  let job = await system.waitForJob(jobId, { timeoutMs: 30_000 });
  assert.equal(job.status, 'done', JSON.stringify(job.error));
  assert.notEqual(job.result!.provenance![0]!.worker, job.result!.provenance![1]!.worker, 'decode ran in the other process');
  await system.nc.flush();
  assert.ok(reads.of(jobId) >= 1, 'decode on another host read the upload from the blobs stream');
  await system.stopSpawned();
  rmSync(otherCache, { recursive: true, force: true });
  // decode on this host: it reads the edge's copy, the blob is never read while the job runs.
  const decode = await system.startWorker('decode');
  jobId = (await system.submit(readFileSync(fixture('dog.jpg')), PIPELINE)).jobId;
  job = await system.waitForJob(jobId, { timeoutMs: 30_000 });
  assert.equal(job.status, 'done', JSON.stringify(job.error));
  await system.nc.flush();
  assert.equal(reads.of(jobId), 0, 'decode on the edge\'s host read no chunk of the upload from the bus');
  assert.ok(job.result!.findings!.objects!.some((o) => o.label === 'dog'), 'and decoded the real photo');
  reads.stop();
  for (const worker of [decode, ...rest]) await worker.stop();
});

test('one process per step: a step that hands back its input frame (detect_objects) passes the stored frame on, no second copy', async () => {
  const workers = [];
  for (const step of ['decode', 'detect_objects', 'encode']) workers.push(await system.startWorker(step));
  const jsm = await jetstreamManager(system.nc);
  const framesBefore = (await jsm.streams.info(STREAMS.frames)).state.last_seq;
  const job = await system.waitForJob((await system.submit(readFileSync(fixture('dog.jpg')), PIPELINE)).jobId, { timeoutMs: 30_000 });
  assert.equal(job.status, 'done', JSON.stringify(job.error));
  assert.equal(new Set(job.result!.provenance!.map((p) => p.worker)).size, 1, 'in-process workers share a pid');
  assert.ok(job.result!.findings!.objects!.some((o) => o.label === 'dog'));
  // FRAME_TRANSPORT=auto writes every stored frame to the bus too: only decode's frame was.
  const written = (await jsm.streams.info(STREAMS.frames)).state.last_seq - framesBefore;
  const oneFrame = new BusFrames(system.js, jsm, system.nc.info!.max_payload).chunksFor(768 * 576 * 3);
  assert.equal(written, oneFrame, `frame chunks written: ${written}, one frame takes ${oneFrame}`);
  const meta = await sharp(Buffer.from(await (await fetch(`${system.baseUrl}${job.result!.url}`, { headers: { authorization: `Bearer ${await system.token()}` } })).arrayBuffer())).metadata();
  assert.deepEqual([meta.width, meta.height], [768, 576]);
  for (const worker of workers) await worker.stop();
});

test('the output digests do not depend on where the steps ran: one fused process, or a process per step that hashes each frame once', async () => {
  const photo = readFileSync(fixture('dog.jpg'));
  const fused = await system.startWorker('decode,detect_objects,encode');
  const inOne = await system.waitForJob((await system.submit(photo, PIPELINE)).jobId, { timeoutMs: 30_000 });
  await fused.stop();
  // Separate processes: the detector gets decode's frame by reference, with its pixel digest.
  const spawned = ['decode', 'detect_objects', 'encode'].map((step) => system.spawnWorker(step));
  await waitFor(() => ['decode', 'detect_objects', 'encode'].every((s) => system.edge.presence.hostsOf(s).length > 0), 'the three stage processes');
  const handOffs: JobMessage[] = [];
  const tap = system.nc.subscribe('photolab.stage.detect_objects', { callback: (_e, m) => { handOffs.push(m.json<JobMessage>()); } });
  const apart = await system.waitForJob((await system.submit(photo, PIPELINE)).jobId, { timeoutMs: 60_000 });
  tap.unsubscribe();
  assert.equal(apart.status, 'done', JSON.stringify(apart.error));
  assert.equal(new Set(apart.result!.provenance!.map((p) => p.worker)).size, 3, 'three processes');
  const digests = (job: typeof inOne) => job.result!.provenance!.map((p) => [p.step, p.outputSha256, p.digestVersion]);
  assert.deepEqual(digests(apart), digests(inOne));
  // And they are what digest version 2 says, from the pixels decode makes here.
  const decode = await (await import('../../services/lib/steps/decode.js')).stage.prepare({ log: stepContext().log, modelsDir: '' });
  const frame = (await decode.run({ encoded: { bytes: photo, format: '', contentType: 'image/jpeg' } } as never, {} as never, stepContext())).frame!;
  const pixels = createHash('sha256').update(`frame:${frame.width}x${frame.height}x${frame.channels}\n`).update(frame.data).digest('hex');
  const handOff = handOffs.find((m) => m.jobId === apart.jobId)!;
  assert.equal(handOff.input.kind === 'frame' && handOff.input.sha256, pixels, 'decode\'s frame reference carries its pixel digest');
  const detected = (await system.events(apart.jobId)).find((e) => e.type === 'step.finished' && e.step === 'detect_objects')!;
  assert.equal(apart.result!.provenance![1]!.outputSha256,
    createHash('sha256').update(`frame-sha256:${pixels}\nfindings:`).update(JSON.stringify(detected.findings)).digest('hex'), 'detect_objects: its boxes over decode\'s pixel digest');
  assert.equal(apart.result!.provenance![2]!.outputSha256, apart.result!.sha256, 'encode: the result file');
  await system.stopSpawned();
});
