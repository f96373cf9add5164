/**
 * The jobs API against the real system (nats-server, edge, stage workers): create (multipart,
 * base64, blobId), validation errors with the failing path, idempotency (also concurrent),
 * status and step times, results and their 409s, cancel, listing with cursors, the deadline
 * sweep, error bodies and request ids, CORS preflight.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import pino from 'pino';
import { idempotencyKvKeyOf, JobsService } from '../../services/edge/jobs.js';
import { connectBus } from '../../services/lib/bus/bus.js';
import { loadManifests } from '../../services/lib/steps/registry.js';
import { BUCKETS, STREAMS } from '../../services/lib/bus/subjects.js';
import type { JobEvent, JobView } from '../../services/lib/shared/schema-types.js';
import { assertError, assertSchema, bearer, multipart, request, type HttpAnswer } from '../helpers/edge-client.js';
import { fixture } from '../helpers/paths.js';
import { startSystem, waitFor, type TestSystem } from '../helpers/system.js';

const DECODE_ENCODE = [{ step: 'decode' }, { step: 'encode', params: { format: 'png' } }];
/** upscale has no worker in this system: jobs wait in its queue. */
const STUCK = [{ step: 'decode' }, { step: 'upscale', params: { factor: 2 } }, { step: 'encode' }];
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('jobs API', () => {
  let system: TestSystem;
  let small: Buffer;
  const url = (path: string) => `${system.baseUrl}${path}`;
  const auth = async (sub = 'alice') => bearer(await system.token(sub));

  async function createJob(pipeline: unknown, options: { sub?: string; image?: Buffer; headers?: Record<string, string>; deadlineMs?: number } = {}): Promise<HttpAnswer> {
    const parts = [
      { name: 'file', value: options.image ?? small, filename: 'photo.jpg', contentType: 'image/jpeg' },
      { name: 'pipeline', value: JSON.stringify(pipeline) },
      ...(options.deadlineMs ? [{ name: 'deadlineMs', value: String(options.deadlineMs) }] : []),
    ];
    const form = multipart(parts);
    return request(url('/api/jobs'), { method: 'POST', body: form.body, headers: { ...(await auth(options.sub)), 'content-type': form.contentType, ...options.headers } });
  }

  async function eventsUntil(jobId: string, type: JobEvent['type']): Promise<JobEvent[]> {
    return waitFor(async () => {
      const events = await system.events(jobId);
      return events.some((e) => e.type === type) ? events : undefined;
    }, `${type} of ${jobId}`, 20_000);
  }

  before(async () => {
    system = await startSystem({ steps: ['decode', 'encode'], env: { DEADLINE_SWEEP_MS: '250', CORS_ORIGINS: 'https://playe.example', IDEMPOTENCY_STALE_MS: '4000' } });
    small = await sharp(readFileSync(fixture('dog.jpg'))).resize(160, 120).jpeg().toBuffer();
  });
  after(async () => system?.stop());

  test('multipart create -> 202 with Location; GET shows status, per-step progress and times; result bytes', async () => {
    const created = await createJob(DECODE_ENCODE);
    assert.equal(created.status, 202);
    assertSchema('http/job.schema.json', created.body);
    assert.equal(created.body.status, 'pending');
    assert.equal(created.body.task_id, created.body.jobId);
    assert.equal(created.headers.location, `/api/jobs/${created.body.jobId}`);
    assert.ok(created.headers['x-request-id']);
    const done = await system.waitForJob(created.body.jobId);
    const view = await request(url(`/api/jobs/${done.jobId}`), { headers: await auth() });
    assert.equal(view.status, 200);
    assertSchema('http/job.schema.json', view.body);
    const job = view.body as JobView;
    assert.equal(job.status, 'done');
    assert.equal(job.state, 'SUCCESS');
    for (const key of ['createdAt', 'startedAt', 'finishedAt'] as const) assert.ok(!Number.isNaN(Date.parse(job[key]!)), key);
    assert.ok(Date.parse(job.createdAt) <= Date.parse(job.startedAt!) && Date.parse(job.startedAt!) <= Date.parse(job.finishedAt!));
    for (const step of job.steps) {
      assert.equal(step.status, 'done');
      assert.ok(typeof step.ms === 'number' && step.startedAt! <= step.finishedAt!, JSON.stringify(step));
    }
    assert.equal(job.result?.url, `/api/jobs/${job.jobId}/result`);
    const result = await request(url(job.result!.url!), { headers: await auth() });
    assert.equal(result.status, 200);
    assert.equal(result.headers['content-type'], 'image/png');
    assert.equal(sha256(result.bytes), job.result?.sha256);
    assert.deepEqual([(await sharp(result.bytes).metadata()).width, (await sharp(result.bytes).metadata()).height], [160, 120]);
  });

  test('JSON body with a base64 image or a data URL', async () => {
    for (const image of [small.toString('base64'), `data:image/jpeg;base64,${small.toString('base64')}`]) {
      const created = await request(url('/api/jobs'), { method: 'POST', headers: { ...(await auth()), 'content-type': 'application/json' }, body: JSON.stringify({ pipeline: DECODE_ENCODE, image }) });
      assert.equal(created.status, 202, created.bytes.toString());
      assert.equal((await system.waitForJob(created.body.jobId)).status, 'done');
      assert.equal(created.body.input.sha256, sha256(small));
    }
  });

  test('blobs: upload raw or multipart, create jobs by blobId; another caller\'s blobId is 404', async () => {
    const raw = await request(url('/api/blobs'), { method: 'POST', headers: { ...(await auth()), 'content-type': 'image/jpeg' }, body: small });
    assert.equal(raw.status, 201, raw.bytes.toString());
    assertSchema('http/blob.schema.json', raw.body);
    assert.equal(raw.body.bytes, small.length);
    assert.equal(raw.body.sha256, sha256(small));
    const form = multipart([{ name: 'file', value: small, filename: 'x.jpg', contentType: 'image/jpeg' }]);
    const viaForm = await request(url('/api/blobs'), { method: 'POST', headers: { ...(await auth()), 'content-type': form.contentType }, body: form.body });
    assert.equal(viaForm.status, 201);
    assert.notEqual(viaForm.body.blobId, raw.body.blobId);

    const json = await request(url('/api/jobs'), { method: 'POST', headers: { ...(await auth()), 'content-type': 'application/json' }, body: JSON.stringify({ pipeline: DECODE_ENCODE, blobId: raw.body.blobId }) });
    assert.equal(json.status, 202, json.bytes.toString());
    assert.equal(json.body.input.sha256, sha256(small));
    assert.equal((await system.waitForJob(json.body.jobId)).status, 'done');
    const multi = multipart([{ name: 'pipeline', value: JSON.stringify(DECODE_ENCODE) }, { name: 'blobId', value: viaForm.body.blobId }]);
    const byForm = await request(url('/api/jobs'), { method: 'POST', headers: { ...(await auth()), 'content-type': multi.contentType }, body: multi.body });
    assert.equal(byForm.status, 202, byForm.bytes.toString());
    assert.equal((await system.waitForJob(byForm.body.jobId)).status, 'done');

    const stolen = await request(url('/api/jobs'), { method: 'POST', headers: { ...(await auth('mallory')), 'content-type': 'application/json' }, body: JSON.stringify({ pipeline: DECODE_ENCODE, blobId: raw.body.blobId }) });
    assertError(stolen, 404, 'blob_not_found');
    const unknown = await request(url('/api/jobs'), { method: 'POST', headers: { ...(await auth()), 'content-type': 'application/json' }, body: JSON.stringify({ pipeline: DECODE_ENCODE, blobId: '01ARZ3NDEKTSV4RRFFQ69G5FAV' }) });
    assertError(unknown, 404, 'blob_not_found');
  });

  test('validation: unknown step, bad parameter, bad order, bad JSON, no image, wrong media type -> 4xx naming the failing path', async () => {
    const unknownStep = await createJob([{ step: 'decode' }, { step: 'sharpen' }, { step: 'encode' }]);
    assertError(unknownStep, 400, 'unknown_step');
    assert.equal(unknownStep.body.details[0].path, '/pipeline/1/step');
    const badParam = await createJob([{ step: 'decode' }, { step: 'encode', params: { format: 'bmp' } }]);
    assertError(badParam, 400, 'invalid_params');
    assert.equal(badParam.body.details[0].path, '/pipeline/1/params/format');
    const extraParam = await createJob([{ step: 'decode' }, { step: 'encode', params: { colour: 'red' } }]);
    assertError(extraParam, 400, 'invalid_params');
    assert.match(extraParam.body.message, /colour/);
    const order = await createJob([{ step: 'encode' }]);
    assertError(order, 400, 'invalid_pipeline');
    const notJson = await request(url('/api/jobs'), { method: 'POST', headers: { ...(await auth()), 'content-type': 'application/json' }, body: '{"pipeline": [' });
    assertError(notJson, 400, 'invalid_json');
    const noImage = await request(url('/api/jobs'), { method: 'POST', headers: { ...(await auth()), 'content-type': 'application/json' }, body: JSON.stringify({ pipeline: DECODE_ENCODE }) });
    assertError(noImage, 400, 'image_required');
    const extraField = await request(url('/api/jobs'), { method: 'POST', headers: { ...(await auth()), 'content-type': 'application/json' }, body: JSON.stringify({ pipeline: DECODE_ENCODE, image: 'AAAA', priority: 1 }) });
    assertError(extraField, 400, 'invalid_request');
    assert.equal(extraField.body.details[0].path, '/');
    assert.match(extraField.body.details[0].message, /priority/);
    const text = await request(url('/api/jobs'), { method: 'POST', headers: { ...(await auth()), 'content-type': 'text/plain' }, body: 'hello' });
    assertError(text, 415, 'unsupported_media_type');
    const deadline = await createJob(DECODE_ENCODE, { deadlineMs: 10 * 3600_000 });
    assertError(deadline, 400, 'invalid_deadline');
  });

  test('Idempotency-Key: same caller and key give the same job, run once, also when sent concurrently', async () => {
    const sub = 'idem';
    const first = await createJob(DECODE_ENCODE, { sub, headers: { 'idempotency-key': 'k-1' } });
    assert.equal(first.status, 202);
    const again = await createJob(DECODE_ENCODE, { sub, headers: { 'idempotency-key': 'k-1' } });
    assert.equal(again.status, 200);
    assert.equal(again.body.jobId, first.body.jobId);
    assert.equal(again.body.idempotent, true);
    // Another caller with the same key gets its own job.
    const other = await createJob(DECODE_ENCODE, { sub: 'idem-other', headers: { 'idempotency-key': 'k-1' } });
    assert.equal(other.status, 202);
    assert.notEqual(other.body.jobId, first.body.jobId);

    const burst = await Promise.all(Array.from({ length: 6 }, () => createJob(DECODE_ENCODE, { sub, headers: { 'idempotency-key': 'k-2' } })));
    const ids = new Set(burst.map((a) => a.body.jobId));
    assert.equal(ids.size, 1, `one job for the key: ${burst.map((a) => `${a.status} ${a.body.jobId ?? a.body.code}`).join(', ')}`);
    assert.deepEqual(burst.map((a) => a.status).sort(), [200, 200, 200, 200, 200, 202]);
    const jobId = [...ids][0]!;
    await system.waitForJob(jobId, { sub });
    const events = system.liveEvents(jobId);
    assert.equal(events.filter((e) => e.type === 'job.accepted').length, 1);
    assert.equal(events.filter((e) => e.type === 'step.started' && e.step === 'decode').length, 1);
    assert.equal((await system.events(jobId)).filter((e) => e.type === 'step.finished' && e.step === 'decode').length, 1);
    const listed = await request(url('/api/jobs?limit=100'), { headers: await auth(sub) });
    assert.deepEqual(listed.body.jobs.map((j: JobView) => j.jobId).sort(), [first.body.jobId, jobId].sort());
  });

  test('Idempotency-Key left behind by a submission that died before its record: refused at first, taken over once stale', async () => {
    // What NATS going away in mid-submission leaves: the key names a job whose record was never
    // written, and the failed submission could not delete the key.
    const sub = 'idem-stale';
    const kv = await new Kvm(system.nc).open(BUCKETS.idempotency);
    const orphan = '01J0000000000000000000ORPH';
    await kv.create(idempotencyKvKeyOf({ sub }, 'k-stale'), orphan);
    const early = await createJob(DECODE_ENCODE, { sub, headers: { 'idempotency-key': 'k-stale' } });
    assertError(early, 409, 'idempotency_key_in_use'); // 2 s old after its wait for a record: younger than IDEMPOTENCY_STALE_MS (4 s here)
    await new Promise((r) => setTimeout(r, 2100));
    const taken = await createJob(DECODE_ENCODE, { sub, headers: { 'idempotency-key': 'k-stale' } });
    assert.equal(taken.status, 202, JSON.stringify(taken.body));
    assert.notEqual(taken.body.jobId, orphan);
    assert.equal((await kv.get(idempotencyKvKeyOf({ sub }, 'k-stale')))?.string(), taken.body.jobId, 'the key names the new job');
    await system.waitForJob(taken.body.jobId, { sub });
    const again = await createJob(DECODE_ENCODE, { sub, headers: { 'idempotency-key': 'k-stale' } });
    assert.equal(again.status, 200);
    assert.equal(again.body.jobId, taken.body.jobId, 'from then on the key gives that job');
    const listed = await request(url('/api/jobs?limit=100'), { headers: await auth(sub) });
    assert.deepEqual(listed.body.jobs.map((j: JobView) => j.jobId), [taken.body.jobId], 'one job for the key');
  });

  test('a submission stalled before its record while a retry took its key over gives way: nothing stored, the key stays the retry\'s', async () => {
    // JobsService itself, on the real bus: the stall is played by beforeStart, the last moment
    // before the first step would go out, where a retry writes the key over.
    const log = pino({ level: 'silent' });
    const bus = await connectBus(system.config, log, 'test-stalled-submission');
    try {
      const service = new JobsService(bus, await loadManifests(), system.config, log);
      const owner = { sub: 'idem-stalled' };
      const kvKey = idempotencyKvKeyOf(owner, 'k-stalled');
      const kv = await new Kvm(system.nc).open(BUCKETS.idempotency);
      let stalledJob = '';
      await assert.rejects(service.submit(owner, {
        pipeline: DECODE_ENCODE, image: small, idempotencyKey: 'k-stalled',
        beforeStart: async (job) => {
          stalledJob = job.jobId;
          const entry = await kv.get(kvKey);
          await kv.update(kvKey, 'THE-RETRY-JOB', entry!.revision);
        },
      }), (error: { code?: string }) => error.code === 'idempotency_key_in_use');
      assert.ok(stalledJob);
      assert.equal((await kv.get(kvKey))?.string(), 'THE-RETRY-JOB', 'the retry\'s key is not deleted by the clean-up');
      assert.equal(await bus.jobs.get(owner, stalledJob).catch(() => null), null, 'the stalled job\'s record is withdrawn');
      assert.equal((await system.events(stalledJob)).length, 0, 'and it never ran');
    } finally {
      await bus.close();
    }
  });

  test('result: 409 job_not_completed while queued; cancel skips the remaining steps; 409 job_canceled, job_not_cancelable', async () => {
    const created = await createJob(STUCK);
    const jobId = created.body.jobId as string;
    await eventsUntil(jobId, 'step.finished'); // decode done; upscale has no worker
    assertError(await request(url(`/api/jobs/${jobId}/result`), { headers: await auth() }), 409, 'job_not_completed');
    // ?wait=: a bad value is a 400; another caller's job is a 404 at once, before any wait.
    assertError(await request(url(`/api/jobs/${jobId}/result?wait=soon`), { headers: await auth() }), 400, 'invalid_request');
    assertError(await request(url(`/api/jobs/${jobId}/result?wait=30`), { headers: await auth('mallory') }), 404, 'job_not_found');
    const canceled = await request(url(`/api/jobs/${jobId}/cancel`), { method: 'POST', headers: await auth() });
    assert.equal(canceled.status, 200);
    assert.equal(canceled.body.status, 'canceled');
    assert.equal(canceled.body.state, 'REVOKED');
    assert.deepEqual(canceled.body.steps.map((s: { status: string }) => s.status), ['done', 'canceled', 'canceled']);
    const result = await request(url(`/api/jobs/${jobId}/result`), { headers: await auth() });
    assertError(result, 409, 'job_canceled');
    assertError(await request(url(`/api/jobs/${jobId}/cancel`), { method: 'POST', headers: await auth() }), 409, 'job_not_cancelable');
    const events = await eventsUntil(jobId, 'job.canceled');
    assert.equal(events.filter((e) => e.type === 'job.canceled').length, 1);
    const failed = await createJob(DECODE_ENCODE, { image: Buffer.from('not an image') });
    await system.waitForJob(failed.body.jobId);
    const failedResult = await request(url(`/api/jobs/${failed.body.jobId}/result`), { headers: await auth() });
    assertError(failedResult, 409, 'job_failed');
    assert.equal(failedResult.body.details.error.code, 'undecodable_image');
  });

  test('cancel while a step runs: its output is discarded and later steps never start', async () => {
    const slow = system.spawnWorker('upscale', {}, { at: 'afterRun', ms: 2500 });
    const tiny = await sharp(small).resize(64, 48).jpeg().toBuffer();
    // The queue may hold upscale messages of earlier (canceled) jobs: they are skipped.
    const created = await createJob(STUCK, { image: tiny, sub: 'canceler' });
    const jobId = created.body.jobId as string;
    await waitFor(() => system.liveEvents(jobId).some((e) => e.type === 'step.started' && e.step === 'upscale'), 'upscale to start', 30_000);
    const canceled = await request(url(`/api/jobs/${jobId}/cancel`), { method: 'POST', headers: await auth('canceler') });
    assert.equal(canceled.status, 200);
    // Wait until the upscale worker acked the message (it finished its pause and discarded the output).
    const jsm = await jetstreamManager(system.nc);
    await waitFor(async () => {
      const info = await jsm.consumers.info(STREAMS.stages, 'stage-upscale');
      return info.num_ack_pending === 0 && info.num_pending === 0;
    }, 'the upscale message to be acked', 30_000);
    const events = await system.events(jobId);
    assert.equal(events.filter((e) => e.type === 'step.finished' && e.step === 'upscale').length, 0, 'no upscale output');
    assert.equal(events.filter((e) => e.step === 'encode').length, 0, 'encode never started');
    const job = (await request(url(`/api/jobs/${jobId}`), { headers: await auth('canceler') })).body as JobView;
    assert.equal(job.status, 'canceled');
    assert.equal(job.result, undefined);
    assert.deepEqual(job.steps.map((s) => s.status), ['done', 'canceled', 'canceled']);
    slow.kill('SIGTERM');
    await system.stopSpawned();
  });

  test('GET /api/jobs: own jobs only, newest first, cursor pagination, status filter, 400s', async () => {
    const sub = 'lister';
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await createJob(DECODE_ENCODE, { sub })).body.jobId);
    await Promise.all(ids.map((id) => system.waitForJob(id, { sub })));
    const newestFirst = [...ids].reverse();
    const seen: string[] = [];
    let cursor: string | undefined;
    const pages: number[] = [];
    do {
      const page = await request(url(`/api/jobs?limit=2${cursor ? `&cursor=${cursor}` : ''}`), { headers: await auth(sub) });
      assert.equal(page.status, 200, page.bytes.toString());
      assertSchema('http/job-list.schema.json', page.body);
      pages.push(page.body.jobs.length);
      seen.push(...page.body.jobs.map((j: JobView) => j.jobId));
      cursor = page.body.nextCursor;
    } while (cursor);
    assert.deepEqual(seen, newestFirst);
    assert.deepEqual(pages, [2, 2, 1]);
    const done = await request(url('/api/jobs?status=done&limit=100'), { headers: await auth(sub) });
    assert.equal(done.body.jobs.length, 5);
    const failed = await request(url('/api/jobs?status=failed'), { headers: await auth(sub) });
    assert.deepEqual(failed.body.jobs, []);
    const stranger = await request(url('/api/jobs'), { headers: await auth('stranger') });
    assert.deepEqual(stranger.body.jobs, []);
    assertError(await request(url('/api/jobs?cursor=bogus!!'), { headers: await auth(sub) }), 400, 'invalid_cursor');
    assertError(await request(url(`/api/jobs?cursor=${Buffer.from('v2:xyz').toString('base64url')}`), { headers: await auth(sub) }), 400, 'invalid_cursor');
    assertError(await request(url('/api/jobs?limit=0'), { headers: await auth(sub) }), 400, 'invalid_pagination');
    assertError(await request(url('/api/jobs?limit=1000'), { headers: await auth(sub) }), 400, 'invalid_pagination');
    assertError(await request(url('/api/jobs?limit=two'), { headers: await auth(sub) }), 400, 'invalid_pagination');
    assertError(await request(url('/api/jobs?status=sleeping'), { headers: await auth(sub) }), 400, 'invalid_pagination');
  });

  test('deadline: a job stuck in a queue nobody consumes ends as timeout by the edge sweep, with job.timeout', async () => {
    const jsm = await jetstreamManager(system.nc);
    const before = await jsm.consumers.info(STREAMS.stages, 'stage-upscale');
    assert.equal(before.num_waiting, 0, 'no upscale worker is pulling');
    const created = await createJob(STUCK, { deadlineMs: 1500, sub: 'late' });
    const jobId = created.body.jobId as string;
    // Only the event stream is watched: a GET would time the job out lazily and prove nothing about the sweep.
    const events = await eventsUntil(jobId, 'job.timeout');
    assert.equal(events.filter((e) => e.type === 'job.timeout').length, 1);
    assert.equal(events.at(-1)!.error?.code, 'job_timeout');
    const job = (await request(url(`/api/jobs/${jobId}`), { headers: await auth('late') })).body as JobView;
    assert.equal(job.status, 'timeout');
    assert.equal(job.error?.code, 'job_timeout');
    assert.ok(Date.parse(job.finishedAt!) >= Date.parse(job.deadline));
    assertError(await request(url(`/api/jobs/${jobId}/result`), { headers: await auth('late') }), 409, 'job_timeout');
  });

  test('every answer has x-request-id (echoed when given); errors are {code, message, requestId, details?}', async () => {
    const ok = await request(url('/api/health'), { headers: { 'x-request-id': 'trace-123' } });
    assert.equal(ok.headers['x-request-id'], 'trace-123');
    const missing = await request(url('/api/nothing-here'), { headers: await auth() });
    assertError(missing, 404, 'route_not_found');
    const noToken = await request(url('/api/jobs'));
    assertError(noToken, 401, 'auth_required');
    const badToken = await request(url('/api/jobs'), { headers: bearer('not.a.jwt') });
    assertError(badToken, 401, 'token_invalid');
    const notFound = await request(url('/api/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV'), { headers: { ...(await auth()), 'x-request-id': 'trace-404' } });
    assertError(notFound, 404, 'job_not_found');
    assert.equal(notFound.body.requestId, 'trace-404');
    const malformedId = await request(url('/api/jobs/..%2F..%2Fetc'), { headers: await auth() });
    assertError(malformedId, 404, 'job_not_found');
  });

  test('CORS: OPTIONS preflight answers 204 with the CORS headers for an allowed origin, none for others', async () => {
    const preflight = await request(url('/api/jobs'), { method: 'OPTIONS', headers: { origin: 'https://playe.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' } });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers['access-control-allow-origin'], 'https://playe.example');
    assert.match(preflight.headers['access-control-allow-methods']!, /POST/);
    assert.match(preflight.headers['access-control-allow-headers']!, /authorization/);
    assert.ok(preflight.headers['access-control-max-age']);
    const aiPreflight = await request(url('/api/ai/upscale'), { method: 'OPTIONS', headers: { origin: 'https://playe.example', 'access-control-request-method': 'POST' } });
    assert.equal(aiPreflight.status, 204);
    assert.equal(aiPreflight.headers['access-control-allow-origin'], 'https://playe.example');
    const foreign = await request(url('/api/jobs'), { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } });
    assert.equal(foreign.status, 204);
    assert.equal(foreign.headers['access-control-allow-origin'], undefined);
    const normal = await request(url('/api/jobs'), { headers: { ...(await auth()), origin: 'https://playe.example' } });
    assert.equal(normal.headers['access-control-allow-origin'], 'https://playe.example');
    assert.match(normal.headers['access-control-expose-headers']!, /x-request-id/);
  });
});
