/** Pure parts of the edge: token bucket, cursors, JSON depth, PLAYE option mapping, error statuses. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeBase64Image, nestingDepth } from '../../services/edge/http/body.js';
import { formValue } from '../../services/edge/http/multipart.js';
import { decodeCursor, encodeCursor } from '../../services/edge/jobs.js';
import { BacklogGate, RateLimiter } from '../../services/edge/limits.js';
import type { JetStreamManager } from '@nats-io/jetstream';
import { PLAYE_ENDPOINTS, playeEndpoint, playePipeline } from '../../services/edge/playe.js';
import { AppError, fromErrorInfo } from '../../services/lib/shared/errors.js';
import type { StageDefinition } from '../../services/lib/pipeline/stage.js';

test('RateLimiter: a full bucket of perMinute, refilled continuously, Retry-After in whole seconds', () => {
  let now = 0;
  const limiter = new RateLimiter(60, () => now);
  for (let i = 0; i < 60; i++) limiter.take('a');
  assert.throws(() => limiter.take('a'), (e: AppError) => e.status === 429 && e.code === 'rate_limited' && (e.details as { retryAfterS: number }).retryAfterS === 1);
  limiter.take('b'); // callers are independent
  now += 1000; // one token back
  limiter.take('a');
  assert.throws(() => limiter.take('a'));
  now += 120_000;
  limiter.prune();
  assert.equal(limiter.size, 0, 'full buckets are forgotten');
  new RateLimiter(0).take('x'); // 0 disables the limit
});

test('BacklogGate: a submission never waits for a recount while the last count is recent; refuses past the limit', async () => {
  // The consumer listing, counted and held until released, standing in for nats-server's answer.
  let pending = 3;
  let listings = 0;
  let release: () => void = () => undefined;
  const jsm = { consumers: { list: () => ({ async *[Symbol.asyncIterator]() {
    listings++;
    await new Promise<void>((resolve) => { release = resolve; });
    yield { name: 'stage-decode', num_pending: pending };
    yield { name: 'stage-other', num_pending: 1000 };
  } }) } } as unknown as JetStreamManager;
  const gate = new BacklogGate(jsm, ['decode'], 5, 0, 60_000);
  const first = gate.backlog();
  release();
  assert.equal(await first, 3, 'the first count is awaited; other consumers are not counted');
  pending = 9;
  const second = gate.backlog(); // cacheMs 0: a recount starts, the last count answers at once
  assert.equal(await second, 3);
  assert.equal(listings, 2);
  release();
  await new Promise((resolve) => setImmediate(resolve));
  await assert.rejects(gate.admit(), (error: AppError) => error.code === 'overloaded' && error.status === 503, 'the recount refuses once it is in');
  release();
});

test('cursors round-trip; anything else is invalid_cursor', () => {
  const id = '01ARZ3NDEKTSV4RRFFQ69G5FAV';
  assert.equal(decodeCursor(encodeCursor(id)), id);
  for (const bad of ['', 'abc', Buffer.from('v1:nope').toString('base64url'), 'a'.repeat(200), '%%%']) {
    assert.throws(() => decodeCursor(bad), (e: AppError) => e.code === 'invalid_cursor', bad);
  }
});

test('nestingDepth counts brackets outside strings', () => {
  assert.equal(nestingDepth('1'), 0);
  assert.equal(nestingDepth('{"a":[1,{"b":2}]}'), 3);
  assert.equal(nestingDepth('{"a":"[[[[{{{{\\"]]"}'), 1);
  assert.equal(nestingDepth('['.repeat(50) + ']'.repeat(50)), 50);
});

test('formValue takes JSON-encoded and plain values; base64 images with or without a data URL', () => {
  assert.equal(formValue('2'), 2);
  assert.equal(formValue('"medium"'), 'medium');
  assert.equal(formValue('medium'), 'medium');
  assert.equal(formValue('true'), true);
  assert.deepEqual(decodeBase64Image('data:image/png;base64,AAEC'), Buffer.from([0, 1, 2]));
  assert.deepEqual(decodeBase64Image('AAEC'), Buffer.from([0, 1, 2]));
  assert.throws(() => decodeBase64Image('not base64!'), /base64/);
});

test('PLAYE options map onto the step\'s params schema and the encoder; unknown ones are named', () => {
  const stage = (step: string) => ({ step } as StageDefinition);
  const stages = new Map(['decode', 'upscale', 'encode', 'detect_objects', 'detect_faces'].map((s) => [s, stage(s)]));
  const upscale = playePipeline(PLAYE_ENDPOINTS.upscale!, new Map([['factor', '2'], ['model', '"compact"'], ['format', 'png']]), stages);
  assert.deepEqual(upscale, [{ step: 'decode' }, { step: 'upscale', params: { factor: 2, model: 'compact' } }, { step: 'encode', params: { format: 'png' } }]);
  const detect = playePipeline(PLAYE_ENDPOINTS['detect-objects']!, new Map([['minScore', '0.5']]), stages);
  assert.deepEqual(detect, [{ step: 'decode' }, { step: 'detect_objects', params: { minScore: 0.5 } }]);
  assert.throws(() => playePipeline(PLAYE_ENDPOINTS['detect-objects']!, new Map([['format', 'png']]), stages), (e: AppError) => e.code === 'unknown_option');
  assert.throws(() => playePipeline(PLAYE_ENDPOINTS.upscale!, new Map([['zoom', '2'], ['factor', '2']]), stages),
    (e: AppError) => e.code === 'unknown_option' && JSON.stringify((e.details as { unknown: string[] }).unknown) === '["zoom"]');
  // A step that is not installed at all: 503, before anything else.
  assert.throws(() => playePipeline(PLAYE_ENDPOINTS['face-enhance']!, new Map(), stages), (e: AppError) => e.status === 503 && e.code === 'model_not_installed');
});

test('PLAYE names: the router\'s camelCase tasks are aliases; old option values map to ours; JSON values stay typed', () => {
  assert.equal(playeEndpoint('detectFaces'), PLAYE_ENDPOINTS['detect-faces']);
  assert.equal(playeEndpoint('faceEnhance'), PLAYE_ENDPOINTS['face-enhance']);
  assert.equal(playeEndpoint('detect-objects'), PLAYE_ENDPOINTS['detect-objects']);
  assert.equal(playeEndpoint('detectScenes'), undefined);
  assert.equal(playeEndpoint('constructor'), undefined, 'no prototype names');
  const stages = new Map(['decode', 'denoise', 'encode'].map((s) => [s, { step: s } as StageDefinition]));
  for (const level of ['"heavy"', 'heavy']) {
    assert.deepEqual(playePipeline(PLAYE_ENDPOINTS.denoise!, new Map([['level', level]]), stages)[1], { step: 'denoise', params: { level: 'strong' } });
  }
  // From a JSON body the values are already typed: they are taken as they are.
  assert.deepEqual(playePipeline(PLAYE_ENDPOINTS.denoise!, new Map<string, unknown>([['tileSize', 64]]), stages)[1], { step: 'denoise', params: { tileSize: 64 } });
});

test('a job\'s error code gives the status of the synchronous answer: the catalogue\'s, 500 for a code it lacks', () => {
  const status = (code: string) => fromErrorInfo({ code, message: 'the job failed' }).status;
  assert.equal(status('undecodable_image'), 422);
  assert.equal(status('unsupported_format'), 422);
  assert.equal(status('image_too_large'), 413);
  assert.equal(status('model_not_installed'), 503);
  assert.equal(status('job_timeout'), 409, 'as GET /api/jobs/{id}/result answers a timed-out job');
  assert.equal(status('internal_error'), 500);
  assert.equal(status('code_of_a_newer_stage'), 500);
  assert.equal(fromErrorInfo({ code: 'code_of_a_newer_stage', message: '', status: 418 }).status, 418, 'a peer\'s status is kept for a code this build lacks');
});
