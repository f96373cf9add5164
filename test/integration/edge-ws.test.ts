/**
 * The WebSocket protocol on the real system: the three ways to authenticate (and 4001 for a
 * bad token), submitting by binary frame and by blobId, events as they happen with findings
 * on step.finished, results as URL or binary, subscribe/unsubscribe, cancel, re-attaching
 * after a reconnect (every event exactly once, in order), and backpressure against a client
 * that stops reading.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { SignJWT } from 'jose';
import { startEdge, type Edge } from '../../services/edge/server.js';
import { freePort } from '../../services/launcher/nats-server.js';
import { loadConfig } from '../../services/lib/shared/config.js';
import { createLogger } from '../../services/lib/shared/logger.js';
import type { JobEvent } from '../../services/lib/shared/schema-types.js';
import { assertSchema, bearer, request } from '../helpers/edge-client.js';
import { fixture } from '../helpers/paths.js';
import { JWT_SECRET, openSocket, startSystem, waitFor, type TestSystem } from '../helpers/system.js';

type Socket = Awaited<ReturnType<typeof openSocket>>;

const DECODE_ENCODE = [{ step: 'decode' }, { step: 'encode', params: { format: 'png' } }];
const STUCK = [{ step: 'decode' }, { step: 'upscale', params: { factor: 2 } }, { step: 'encode' }];

function submitFrame(header: object, image: Buffer): Buffer {
  const json = Buffer.from(JSON.stringify({ type: 'submit', ...header }));
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32BE(json.length);
  return Buffer.concat([prefix, json, image]);
}

function readResultFrame(frame: Buffer): { header: any; image: Buffer } {
  const length = frame.readUInt32BE(0);
  return { header: JSON.parse(frame.subarray(4, 4 + length).toString('utf8')), image: frame.subarray(4 + length) };
}

const eventsOf = (socket: Socket, jobId: string): JobEvent[] =>
  socket.messages.filter((m: any) => m.type === 'event' && m.event.jobId === jobId).map((m: any) => m.event);

describe('WebSocket protocol', () => {
  let system: TestSystem;
  let wsUrl: string;
  let small: Buffer;
  const sockets: Socket[] = [];

  async function connect(options: { query?: string; headers?: Record<string, string> } = {}): Promise<Socket> {
    const socket = await openSocket(`${wsUrl}${options.query ?? ''}`, options.headers);
    sockets.push(socket);
    return socket;
  }

  async function ready(sub = 'alice'): Promise<Socket> {
    const socket = await connect({ query: `?token=${await system.token(sub)}` });
    await socket.next((m) => m.type === 'ready');
    return socket;
  }

  before(async () => {
    system = await startSystem({ steps: ['decode', 'encode'] });
    wsUrl = `${system.baseUrl.replace('http', 'ws')}/ws`;
    small = await sharp(readFileSync(fixture('dog.jpg'))).resize(192, 144).jpeg().toBuffer();
  });
  after(async () => {
    for (const s of sockets) s.ws.terminate();
    await system?.stop();
  });

  test('authenticates by Authorization header, ?token= or a first auth message', async () => {
    const token = await system.token('alice');
    const byHeader = await connect({ headers: bearer(token) });
    assert.deepEqual(await byHeader.next((m) => m.type === 'ready'), { type: 'ready', sub: 'alice' });
    const byQuery = await connect({ query: `?token=${token}` });
    assert.equal((await byQuery.next((m) => m.type === 'ready')).sub, 'alice');
    const byMessage = await connect();
    byMessage.ws.send(JSON.stringify({ type: 'subscribe', jobId: '01ARZ3NDEKTSV4RRFFQ69G5FAV' }));
    const early = await byMessage.next((m) => m.type === 'error');
    assert.equal(early.code, 'auth_required');
    byMessage.ws.send(JSON.stringify({ type: 'auth', token }));
    assert.equal((await byMessage.next((m) => m.type === 'ready')).sub, 'alice');
    for (const m of byMessage.messages) assertSchema('ws/server-message.schema.json', m);
  });

  test('a bad token: an error message, then close 4001 (query, header, message, expired)', async () => {
    const expired = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('alice').setIssuedAt(Math.floor(Date.now() / 1000) - 7200)
      .setExpirationTime(Math.floor(Date.now() / 1000) - 3600).sign(new TextEncoder().encode(JWT_SECRET));
    const cases: [string, () => Promise<Socket>, string][] = [
      ['query', () => connect({ query: '?token=garbage' }), 'token_invalid'],
      ['header', () => connect({ headers: bearer('a.b.c') }), 'token_invalid'],
      ['expired', () => connect({ query: `?token=${expired}` }), 'token_expired'],
      ['message', async () => {
        const s = await connect();
        s.ws.send(JSON.stringify({ type: 'auth', token: 'nope' }));
        return s;
      }, 'token_invalid'],
    ];
    for (const [name, open, code] of cases) {
      const socket = await open();
      const error = await socket.next((m) => m.type === 'error');
      assert.equal(error.code, code, name);
      assert.equal(error.status, 401, name);
      const closed = await socket.closed;
      assert.equal(closed.code, 4001, name);
    }
  });

  test('binary-frame submit: submitted, events as they happen, then the result URL', async () => {
    const socket = await ready();
    socket.ws.send(submitFrame({ pipeline: DECODE_ENCODE, clientRef: 'mine-1' }, small));
    const submitted = await socket.next((m) => m.type === 'submitted');
    assert.equal(submitted.clientRef, 'mine-1');
    const result = await socket.next((m) => m.type === 'result' && m.jobId === submitted.jobId);
    const events = eventsOf(socket, submitted.jobId);
    assert.deepEqual(events.map((e) => e.type), ['job.accepted', 'step.started', 'step.finished', 'step.started', 'step.finished', 'job.done']);
    for (const finished of events.filter((e) => e.type === 'step.finished')) assert.ok(typeof finished.ms === 'number');
    for (const m of socket.messages) assertSchema('ws/server-message.schema.json', m);
    assert.equal(result.url, `/api/jobs/${submitted.jobId}/result`);
    assert.equal(result.contentType, 'image/png');
    const fetched = await request(`${system.baseUrl}${result.url}`, { headers: bearer(await system.token('alice')) });
    assert.equal(fetched.status, 200);
    assert.equal(fetched.bytes.length, result.bytes);
  });

  test('a submit sent again with its idempotencyKey (its connection dropped before the answer) gets the same job, once, with its events from the start', async () => {
    const key = `ws-key-${randomBytes(6).toString('hex')}`;
    const first = await ready();
    first.ws.send(submitFrame({ pipeline: DECODE_ENCODE, clientRef: 'try-1', idempotencyKey: key }, small));
    const submitted = await first.next((m) => m.type === 'submitted');
    assert.equal(submitted.idempotent, undefined, 'a new job');
    first.ws.terminate();
    const again = await ready();
    again.ws.send(submitFrame({ pipeline: DECODE_ENCODE, clientRef: 'try-2', idempotencyKey: key }, small));
    const resubmitted = await again.next((m) => m.type === 'submitted');
    assertSchema('ws/server-message.schema.json', resubmitted);
    assert.deepEqual([resubmitted.jobId, resubmitted.clientRef, resubmitted.idempotent], [submitted.jobId, 'try-2', true]);
    await again.next((m) => m.type === 'result' && m.jobId === submitted.jobId);
    const events = eventsOf(again, submitted.jobId);
    assert.deepEqual(events.map((e) => e.type).filter((t) => t !== 'step.started'), ['job.accepted', 'step.finished', 'step.finished', 'job.done'], 'every stored event once');
    // The same key is another caller's own: a job of its own.
    const bob = await ready('bob');
    bob.ws.send(submitFrame({ pipeline: DECODE_ENCODE, idempotencyKey: key }, small));
    const bobs = await bob.next((m) => m.type === 'submitted');
    assert.notEqual(bobs.jobId, submitted.jobId);
    assert.equal(bobs.idempotent, undefined);
    bob.ws.send(submitFrame({ pipeline: DECODE_ENCODE, idempotencyKey: '' }, small));
    const refused = await bob.next((m) => m.type === 'error' && m.code === 'invalid_message');
    assert.match(refused.message, /idempotencyKey/);
  });

  test('submit by blobId with the result as a binary frame', async () => {
    const upload = await request(`${system.baseUrl}/api/blobs`, { method: 'POST', headers: { ...bearer(await system.token('alice')), 'content-type': 'image/jpeg' }, body: small });
    const socket = await ready();
    socket.ws.send(JSON.stringify({ type: 'submit', pipeline: DECODE_ENCODE, blobId: upload.body.blobId, result: 'binary' }));
    const submitted = await socket.next((m) => m.type === 'submitted');
    await socket.next((m) => m.type === 'event' && m.event.type === 'job.done');
    await waitFor(() => socket.binary.length > 0, 'the binary result');
    const { header, image } = readResultFrame(socket.binary[0]!);
    assertSchema('ws/result-frame.schema.json', header);
    assert.equal(header.jobId, submitted.jobId);
    assert.equal(header.bytes, image.length);
    const meta = await sharp(image).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['png', 192, 144]);
    // Someone else's blob cannot be used.
    const bob = await ready('bob');
    bob.ws.send(JSON.stringify({ type: 'submit', pipeline: DECODE_ENCODE, blobId: upload.body.blobId }));
    const refused = await bob.next((m) => m.type === 'error');
    assert.equal(refused.code, 'blob_not_found');
    assert.equal(refused.status, 404);
  });

  test('subscribe to a finished job replays its events; unsubscribe; cancel a waiting job', async () => {
    const done = await system.waitForJob((await system.submit(small, DECODE_ENCODE)).jobId);
    const socket = await ready();
    socket.ws.send(JSON.stringify({ type: 'subscribe', jobId: done.jobId }));
    await socket.next((m) => m.type === 'subscribed' && m.jobId === done.jobId);
    await socket.next((m) => m.type === 'result' && m.jobId === done.jobId);
    const replayed = socket.messages.filter((m: any) => m.type === 'event' && m.event.jobId === done.jobId);
    // job.accepted (from the record), the stored facts; live progress is not replayed.
    assert.deepEqual(replayed.map((m: any) => m.event.type), ['job.accepted', 'step.finished', 'step.finished', 'job.done']);
    assert.ok(replayed.every((m: any) => m.replayed === true));
    // Each stored fact carries its stream sequence, increasing (job.accepted, from the record,
    // has none); subscribing with afterSeq resumes after it.
    assert.equal((replayed[0] as { seq?: number }).seq, undefined);
    const seqs = replayed.slice(1).map((m: any) => m.seq as number);
    assert.ok(seqs.every((n, i) => Number.isInteger(n) && (i === 0 || n > seqs[i - 1]!)), `seqs ${seqs}`);
    const resumed = await ready();
    resumed.ws.send(JSON.stringify({ type: 'subscribe', jobId: done.jobId, afterSeq: seqs[0] }));
    await resumed.next((m) => m.type === 'result' && m.jobId === done.jobId);
    assert.deepEqual(resumed.messages.filter((m: any) => m.type === 'event').map((m: any) => m.seq), seqs.slice(1), 'only the facts after afterSeq, once each, no job.accepted again');
    resumed.ws.close();
    // Two subscribes for one job sent at once (a client re-subscribing while reconnecting): one subscription, every event once.
    const twice = await ready();
    twice.ws.send(JSON.stringify({ type: 'subscribe', jobId: done.jobId }));
    twice.ws.send(JSON.stringify({ type: 'subscribe', jobId: done.jobId }));
    await twice.next((m) => m.type === 'result' && m.jobId === done.jobId);
    twice.ws.send(JSON.stringify({ type: 'subscribe', jobId: 'not-a-job' })); // a round trip, so anything duplicated has arrived
    await twice.next((m) => m.type === 'error' && m.jobId === 'not-a-job');
    assert.deepEqual(twice.messages.filter((m: any) => m.type === 'event').map((m: any) => m.seq), [undefined, ...seqs], 'each event once');
    assert.equal(twice.messages.filter((m: any) => m.type === 'result').length, 1);
    twice.ws.close();

    const stuck = await system.submit(small, STUCK);
    socket.ws.send(JSON.stringify({ type: 'subscribe', jobId: stuck.jobId }));
    await socket.next((m) => m.type === 'event' && m.event.jobId === stuck.jobId && m.event.type === 'step.finished');
    socket.ws.send(JSON.stringify({ type: 'unsubscribe', jobId: stuck.jobId }));
    await socket.next((m) => m.type === 'unsubscribed' && m.jobId === stuck.jobId);
    socket.ws.send(JSON.stringify({ type: 'subscribe', jobId: stuck.jobId }));
    await waitFor(() => socket.messages.filter((m: any) => m.type === 'subscribed' && m.jobId === stuck.jobId).length === 2, 'second subscription');
    socket.ws.send(JSON.stringify({ type: 'cancel', jobId: stuck.jobId }));
    await socket.next((m) => m.type === 'canceled' && m.jobId === stuck.jobId);
    const canceled = await socket.next((m) => m.type === 'event' && m.event.jobId === stuck.jobId && m.event.type === 'job.canceled');
    assert.equal(canceled.event.error.code, 'job_canceled');
    socket.ws.send(JSON.stringify({ type: 'cancel', jobId: stuck.jobId }));
    const again = await socket.next((m) => m.type === 'error' && m.jobId === stuck.jobId);
    assert.equal(again.code, 'job_not_cancelable');
    socket.ws.send(JSON.stringify({ type: 'subscribe', jobId: 'not-a-job' }));
    assert.equal((await socket.next((m) => m.type === 'error' && m.jobId === 'not-a-job')).code, 'job_not_found');
    socket.ws.send(JSON.stringify({ type: 'launch', jobId: 'x' }));
    assert.equal((await socket.next((m) => m.type === 'error' && m.code === 'invalid_message')).status, 400);
  });

  test('re-attach: disconnect mid-job, reconnect, subscribe: every event exactly once, in order; detections on step.finished', async () => {
    const dog = readFileSync(fixture('dog.jpg'));
    const first = await ready();
    // detect_objects has no worker yet: the job waits after decode.
    first.ws.send(submitFrame({ pipeline: [{ step: 'decode' }, { step: 'detect_objects' }, { step: 'encode', params: { format: 'webp' } }] }, dog));
    const { jobId } = await first.next((m) => m.type === 'submitted');
    await first.next((m) => m.type === 'event' && m.event.type === 'step.finished' && m.event.step === 'decode');
    first.ws.close();
    await first.closed;

    const second = await connect({ headers: bearer(await system.token('alice')) });
    await second.next((m) => m.type === 'ready');
    second.ws.send(JSON.stringify({ type: 'subscribe', jobId }));
    await waitFor(() => eventsOf(second, jobId).length >= 2, 'the replayed events');
    await system.startWorker('detect_objects');
    await second.next((m) => m.type === 'result' && m.jobId === jobId, 60_000);
    const received = eventsOf(second, jobId);
    const stored = await system.events(jobId);
    // The stored facts, once each and in order; live progress (step.started) in between for the
    // steps that ran after the re-attach; job.accepted from the job's record.
    assert.deepEqual(received.filter((e) => e.type !== 'step.started' && e.type !== 'job.accepted'), stored, 'the same facts as in JetStream, once each, in order');
    assert.deepEqual(received.map((e) => `${e.type}${e.step ? `:${e.step}` : ''}`), [
      'job.accepted', 'step.finished:decode', 'step.started:detect_objects', 'step.finished:detect_objects',
      'step.started:encode', 'step.finished:encode', 'job.done',
    ]);
    const replayFlags = second.messages.filter((m: any) => m.type === 'event').map((m: any) => m.replayed === true);
    assert.deepEqual(replayFlags, [true, true, false, false, false, false, false]);
    const detected = received.find((e) => e.type === 'step.finished' && e.step === 'detect_objects')!;
    assert.ok(detected.findings?.objects?.some((o) => o.label === 'dog'), 'the detections come with step.finished, before the job ends');
  });

  describe('backpressure', () => {
    let edge: Edge;
    const SOFT = 256 * 1024;
    const HARD = 12 * 1024 * 1024;

    before(async () => {
      const env = { ...process.env, ...system.env, HTTP_PORT: String(await freePort()), WS_SOFT_BUFFER_BYTES: String(SOFT), WS_HARD_BUFFER_BYTES: String(HARD) };
      edge = await startEdge(loadConfig(env), createLogger('backpressure-edge'));
    });
    after(async () => edge?.close());

    test('a client that stops reading: progress events dropped past the soft limit, socket closed 4008 past the hard one, buffer bounded', async () => {
      // Noise does not compress: each result is a ~7 MB PNG.
      const side = 1536;
      const noise = await sharp(randomBytes(side * side * 3), { raw: { width: side, height: side, channels: 3 } }).jpeg({ quality: 95 }).toBuffer();
      const pipeline = [{ step: 'decode' }, { step: 'encode', params: { format: 'png', compressionLevel: 0 } }];
      const jobs = [];
      for (let i = 0; i < 4; i++) jobs.push((await system.submit(noise, pipeline)).jobId);
      await Promise.all(jobs.map((id) => system.waitForJob(id, { timeoutMs: 60_000 })));
      const resultBytes = (await request(`${system.baseUrl}/api/jobs/${jobs[0]}`, { headers: bearer(await system.token('alice')) })).body.result.bytes as number;
      assert.ok(resultBytes > 6_000_000, `result is ${resultBytes} bytes`);

      const socket = await openSocket(`ws://127.0.0.1:${edge.port}/ws?token=${await system.token('alice')}`);
      sockets.push(socket);
      await socket.next((m) => m.type === 'ready');
      (socket.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket.pause();
      const subscribe = (jobId: string, result: 'url' | 'binary') => socket.ws.send(JSON.stringify({ type: 'subscribe', jobId, result }));

      subscribe(jobs[0]!, 'binary');
      await waitFor(() => edge.wsStats().bufferedBytes > SOFT, 'unsent data past the soft limit');
      subscribe(jobs[1]!, 'url');
      subscribe(jobs[2]!, 'url');
      // Each replay starts with job.accepted, which is progress: dropped, while the facts still go.
      await waitFor(() => edge.wsStats().droppedMessages >= 2, 'progress events dropped');
      for (const jobId of jobs.slice(1)) subscribe(jobId, 'binary');
      await waitFor(() => edge.wsStats().slowConsumerCloses >= 1, 'the slow socket closed');
      const stats = edge.wsStats();
      if (process.env.DEBUG_EDGE_TESTS) console.log('backpressure stats', stats);
      assert.ok(stats.maxBufferedBytes <= HARD + resultBytes + 64 * 1024, `buffered at most ${stats.maxBufferedBytes}`);
      await waitFor(() => edge.wsStats().connections === 0 && edge.wsStats().bufferedBytes === 0, 'the socket gone with its buffer');

      (socket.ws as unknown as { _socket: { resume(): void } })._socket.resume();
      const closed = await socket.closed;
      assert.equal(closed.code, 4008);
      for (const jobId of jobs.slice(1, 3)) {
        const events = eventsOf(socket, jobId).map((e) => e.type);
        assert.ok(!events.includes('job.accepted'), `progress of ${jobId} dropped: ${events}`);
        assert.ok(events.includes('job.done'), `but not its end: ${events}`);
      }
      assert.ok(socket.binary.length < jobs.length, 'not every result was queued');
    });
  });
});
