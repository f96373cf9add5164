/**
 * Issue 2's acceptance tests, against a real nats-server: a decode -> encode job end to end
 * (HTTP and WebSocket), a stage worker SIGKILLed mid-step, two replicas sharing a batch,
 * and undecodable bytes failing one job while the services keep serving.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { jetstreamManager } from '@nats-io/jetstream';
import { STREAMS, stageConsumer, subjects } from '../../services/lib/bus/subjects.js';
import type { DeadLetter, JobEvent } from '../../services/lib/shared/schema-types.js';
import { fixture } from '../helpers/paths.js';
import { openSocket, startSystem, waitFor, type TestSystem } from '../helpers/system.js';

const DECODE_ENCODE = [{ step: 'decode' }, { step: 'encode', params: { format: 'png' } }];
const dog = readFileSync(fixture('dog.jpg'));

async function resultOf(system: TestSystem, jobId: string): Promise<{ status: number; type: string | null; bytes: Buffer }> {
  const response = await fetch(`${system.baseUrl}/api/jobs/${jobId}/result`, { headers: { authorization: `Bearer ${await system.token()}` } });
  return { status: response.status, type: response.headers.get('content-type'), bytes: Buffer.from(await response.arrayBuffer()) };
}

const count = (events: JobEvent[], type: JobEvent['type'], step?: string) => events.filter((e) => e.type === type && (!step || e.step === step)).length;

describe('decode -> encode on the real bus', () => {
  let system: TestSystem;
  before(async () => {
    system = await startSystem({ steps: ['decode', 'encode'] });
  });
  after(async () => system?.stop());

  test('a job flows decode -> encode and the result has the same dimensions', async () => {
    const accepted = await system.submit(dog, DECODE_ENCODE);
    assert.equal(accepted.status, 'pending');
    const job = await system.waitForJob(accepted.jobId);
    assert.equal(job.status, 'done', JSON.stringify(job.error));
    assert.deepEqual(job.steps.map((s) => s.status), ['done', 'done']);
    const result = await resultOf(system, job.jobId);
    assert.equal(result.status, 200);
    assert.equal(result.type, 'image/png');
    const meta = await sharp(result.bytes).metadata();
    assert.equal(meta.format, 'png');
    assert.deepEqual([meta.width, meta.height], [768, 576]);
    // Lossless round trip: the PNG holds exactly the decoded pixels.
    const original = await sharp(dog).rotate().raw().toBuffer();
    const roundTrip = await sharp(result.bytes).raw().toBuffer();
    assert.ok(original.equals(roundTrip), 'pixels changed between decode and encode');
    assert.equal(job.result?.sha256, (await import('node:crypto')).createHash('sha256').update(result.bytes).digest('hex'));
    assert.equal(job.result?.provenance?.length, 2);
    // Stored: the facts, once each. Live on the wire as well: the progress.
    const events = await system.events(job.jobId);
    assert.deepEqual(events.map((e) => e.type), ['step.finished', 'step.finished', 'job.done']);
    for (const finished of events.filter((e) => e.type === 'step.finished')) assert.ok(typeof finished.ms === 'number' && finished.ms >= 0 && finished.run?.status === 'ok');
    await waitFor(() => system.liveEvents(job.jobId).some((e) => e.type === 'job.done'), 'job.done on the wire');
    assert.deepEqual(system.liveEvents(job.jobId).map((e) => e.type), ['job.accepted', 'step.started', 'step.finished', 'step.started', 'step.finished', 'job.done']);
  });

  test('the encoder keeps the input format by default and honours quality', async () => {
    const job = await system.waitForJob((await system.submit(dog, [{ step: 'decode' }, { step: 'encode' }])).jobId);
    const result = await resultOf(system, job.jobId);
    assert.equal(result.type, 'image/jpeg');
    const webp = await system.waitForJob((await system.submit(dog, [{ step: 'decode' }, { step: 'encode', params: { format: 'webp', quality: 50 } }])).jobId);
    assert.equal((await resultOf(system, webp.jobId)).type, 'image/webp');
  });

  test('a WebSocket client sees the events as they happen, then the result', async () => {
    const socket = await openSocket(`${system.baseUrl.replace('http', 'ws')}/ws?token=${await system.token()}`);
    await socket.next((m) => m.type === 'ready');
    const header = Buffer.from(JSON.stringify({ type: 'submit', pipeline: DECODE_ENCODE, result: 'binary' }));
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(header.length);
    socket.ws.send(Buffer.concat([prefix, header, dog]));
    const submitted = await socket.next((m) => m.type === 'submitted');
    const done = await socket.next((m) => m.type === 'event' && m.event.type === 'job.done');
    assert.equal(done.event.jobId, submitted.jobId);
    const types = socket.messages.filter((m: any) => m.type === 'event').map((m: any) => m.event.type);
    assert.deepEqual(types, ['job.accepted', 'step.started', 'step.finished', 'step.started', 'step.finished', 'job.done']);
    await waitFor(() => socket.binary.length > 0, 'binary result');
    const frame = socket.binary[0]!;
    const headerLength = frame.readUInt32BE(0);
    const resultHeader = JSON.parse(frame.subarray(4, 4 + headerLength).toString());
    assert.equal(resultHeader.contentType, 'image/png');
    const meta = await sharp(frame.subarray(4 + headerLength)).metadata();
    assert.deepEqual([meta.width, meta.height], [768, 576]);
    socket.ws.close();
  });

  test('undecodable bytes fail the job with a clear error, and the services keep serving', async () => {
    const broken = await system.submit(Buffer.from('this is not an image at all'), DECODE_ENCODE);
    const failed = await system.waitForJob(broken.jobId);
    assert.equal(failed.status, 'failed');
    assert.equal(failed.error?.code, 'undecodable_image');
    assert.equal(failed.error?.step, 'decode');
    assert.match(failed.error?.message ?? '', /not a readable image|could not be decoded/);
    const result = await resultOf(system, broken.jobId);
    assert.equal(result.status, 409);
    assert.equal(JSON.parse(result.bytes.toString()).code, 'job_failed');
    const events = await system.events(broken.jobId);
    assert.equal(count(events, 'job.failed'), 1);
    // Dead-lettered with the original message, for an operator to inspect.
    const jsm = await jetstreamManager(system.nc);
    const letter = await jsm.streams.getMessage(STREAMS.deadLetters, { last_by_subj: subjects.deadLetter('decode') });
    const dead = letter!.json<DeadLetter>();
    assert.equal(dead.jobId, broken.jobId);
    assert.equal(dead.error.code, 'undecodable_image');
    // A truncated JPEG is refused the same way.
    const truncated = await system.waitForJob((await system.submit(dog.subarray(0, 2000), DECODE_ENCODE)).jobId);
    assert.equal(truncated.status, 'failed');
    // And the next good job still goes through.
    const good = await system.waitForJob((await system.submit(dog, DECODE_ENCODE)).jobId);
    assert.equal(good.status, 'done');
  });
});

describe('crashes and replicas (workers as separate processes)', () => {
  let system: TestSystem;
  before(async () => {
    system = await startSystem();
  });
  after(async () => system?.stop());

  test('a stage worker killed with SIGKILL mid-step: the job completes after redelivery, one result, one done event', async () => {
    system.spawnWorker('decode');
    const slowEncode = system.spawnWorker('encode', {}, { at: 'afterRun', ms: 60000 });
    const { jobId } = await system.submit(dog, DECODE_ENCODE);
    await waitFor(() => count(system.liveEvents(jobId), 'step.started', 'encode') > 0, 'encode to start', 30_000);
    slowEncode.kill('SIGKILL');
    system.spawnWorker('encode');
    const job = await system.waitForJob(jobId, { timeoutMs: 30_000 });
    assert.equal(job.status, 'done');
    const events = await system.events(jobId);
    assert.equal(count(events, 'job.done'), 1);
    assert.equal(count(events, 'step.finished', 'encode'), 1);
    assert.equal(job.steps[1]!.attempt, 2, 'encode ran a second time after redelivery');
    const meta = await sharp((await resultOf(system, jobId)).bytes).metadata();
    assert.deepEqual([meta.width, meta.height], [768, 576]);
    await system.stopSpawned();
  });

  test('killed after publishing the next step but before its ack: the re-run does not fork the job', async () => {
    const dying = system.spawnWorker('decode', {}, { at: 'beforeAck', ms: 60000 });
    system.spawnWorker('encode');
    const { jobId } = await system.submit(dog, DECODE_ENCODE);
    await waitFor(async () => count(await system.events(jobId), 'step.finished', 'decode') > 0, 'decode to finish', 30_000);
    dying.kill('SIGKILL');
    system.spawnWorker('decode');
    const job = await system.waitForJob(jobId, { timeoutMs: 30_000 });
    assert.equal(job.status, 'done');
    // The killed decode's message is redelivered after ack_wait and re-run: wait until both
    // consumers have nothing pending or unacked, so a forked duplicate, if any, would be stored.
    const jsm = await jetstreamManager(system.nc);
    await waitFor(async () => {
      for (const step of ['decode', 'encode']) {
        const info = await jsm.consumers.info(STREAMS.stages, stageConsumer(step));
        if (info.num_pending > 0 || info.num_ack_pending > 0) return false;
      }
      return true;
    }, 'the redelivered decode to be re-run and both consumers settled', 30_000);
    const events = await system.events(jobId);
    assert.equal(count(events, 'job.done'), 1);
    assert.equal(count(system.liveEvents(jobId), 'step.started', 'encode'), 1, 'encode ran once: the re-published step was deduplicated');
    assert.equal(count(events, 'step.finished', 'decode'), 1, 'the re-run decode stored its fact once');
    await system.stopSpawned();
  });

  test('two replicas of a stage share a batch of jobs', async () => {
    const replicas = [system.spawnWorker('decode'), system.spawnWorker('decode')];
    system.spawnWorker('encode');
    await waitFor(async () => {
      const jsm = await jetstreamManager(system.nc);
      const info = await jsm.consumers.info(STREAMS.stages, 'stage-decode');
      return info.num_waiting >= 2;
    }, 'both decode replicas to pull');
    const big = await sharp(dog).resize(1536, 1152).jpeg().toBuffer(); // slower decode: work overlaps
    const submitted = await Promise.all(Array.from({ length: 12 }, () => system.submit(big, DECODE_ENCODE)));
    const jobs = await Promise.all(submitted.map((s) => system.waitForJob(s.jobId, { timeoutMs: 60_000 })));
    assert.ok(jobs.every((j) => j.status === 'done'));
    const workers = new Map<string, number>();
    for (const job of jobs) {
      const worker = job.result!.provenance!.find((p) => p.step === 'decode')!.worker!;
      workers.set(worker, (workers.get(worker) ?? 0) + 1);
    }
    const pids = replicas.map((r) => String(r.pid));
    assert.equal(workers.size, 2, `decode ran on ${[...workers.keys()].join(', ')}`);
    for (const worker of workers.keys()) assert.ok(pids.includes(worker.split('/')[1]!), `${worker} is one of the replicas`);
  });
});
