/**
 * The endpoints the PLAYE front end calls, called exactly as it does: multipart with the
 * image in field `file` named image.png (whatever its real format), options as their own form
 * fields with JSON-encoded values, no Accept header, the answer read by its Content-Type.
 * Real stages and models on a real nats-server.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { startEdge, type Edge } from '../../services/edge/server.js';
import { freePort } from '../../services/launcher/nats-server.js';
import { loadConfig } from '../../services/lib/shared/config.js';
import { createLogger } from '../../services/lib/shared/logger.js';
import type { JobView } from '../../services/lib/shared/schema-types.js';
import { assertError, assertSchema, bearer, multipart, request, type HttpAnswer } from '../helpers/edge-client.js';
import { fixture } from '../helpers/paths.js';
import { startSystem, waitFor, type TestSystem } from '../helpers/system.js';

describe('PLAYE endpoints (/api/ai/*)', () => {
  let system: TestSystem;
  let impatientEdge: Edge | undefined;
  let dog: Buffer;
  let smallJpeg: Buffer;

  /** What the PLAYE front end sends: FormData with file "image.png" and JSON.stringify'd options. */
  async function playe(endpoint: string, image: Buffer, options: Record<string, unknown> = {}, extra: { headers?: Record<string, string>; base?: string; query?: string } = {}): Promise<HttpAnswer> {
    const form = multipart([
      { name: 'file', value: image, filename: 'image.png', contentType: 'image/png' },
      ...Object.entries(options).map(([name, value]) => ({ name, value: JSON.stringify(value) })),
    ]);
    return request(`${extra.base ?? system.baseUrl}/api/ai/${endpoint}${extra.query ?? ''}`, {
      method: 'POST',
      body: form.body,
      headers: { ...bearer(await system.token('playe-user')), 'content-type': form.contentType, ...extra.headers },
    });
  }

  before(async () => {
    // denoise has no worker at first: the "not done in time" test needs a job that waits.
    // enhance_faces runs without a restoration model (none exists here): its presence says so.
    system = await startSystem({ steps: ['decode', 'encode', 'detect_objects', 'detect_faces', 'upscale', 'enhance_faces'] });
    dog = readFileSync(fixture('dog.jpg'));
    smallJpeg = await sharp(dog).resize(128, 96).jpeg({ quality: 90 }).toBuffer();
  });
  after(async () => {
    await impatientEdge?.close();
    await system?.stop();
  });

  test('GET /api/hello and /api/health answer without a token', async () => {
    const hello = await request(`${system.baseUrl}/api/hello`);
    assert.equal(hello.status, 200);
    assertSchema('http/hello.schema.json', hello.body);
    const health = await request(`${system.baseUrl}/api/health`);
    assert.ok([200].includes(health.status), health.bytes.toString());
    assertSchema('http/health.schema.json', health.body);
    assert.equal(health.body.nats.connected, true);
  });

  test('detect-objects: JSON {objects} with the dog found', async () => {
    const answer = await playe('detect-objects', dog, { minScore: 0.3 });
    assert.equal(answer.status, 200, answer.bytes.toString());
    assert.match(answer.headers['content-type']!, /^application\/json/);
    assertSchema('http/playe-detections.schema.json', answer.body);
    assert.ok(answer.body.objects.some((o: { label: string }) => o.label === 'dog'), JSON.stringify(answer.body.objects));
    assert.equal(answer.headers['x-task-id'], answer.body.task_id);
    // The job stays readable under the old names.
    const job = await request(`${system.baseUrl}/api/jobs/${answer.body.task_id}`, { headers: bearer(await system.token('playe-user')) });
    assert.equal(job.body.state, 'SUCCESS');
    assert.equal(job.body.task_id, answer.body.task_id);
    assert.deepEqual(job.body.result.objects, answer.body.objects);
  });

  test('detect-faces: JSON {faces} on a photo with a face', async () => {
    const answer = await playe('detect-faces', readFileSync(fixture('messi5.jpg')));
    assert.equal(answer.status, 200, answer.bytes.toString());
    assertSchema('http/playe-detections.schema.json', answer.body);
    assert.ok(answer.body.faces.length >= 1);
    assert.ok(answer.body.faces[0].score > 0.5);
  });

  test('upscale factor 2 (sent as `2`): the image back, twice the size, its real format in Content-Type', async () => {
    const answer = await playe('upscale', smallJpeg, { factor: 2 });
    assert.equal(answer.status, 200, answer.bytes.toString());
    assert.equal(answer.headers['content-type'], 'image/jpeg');
    const meta = await sharp(answer.bytes).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['jpeg', 256, 192]);
    // Plain values and query parameters work too; encoder options are accepted.
    const png = await playe('upscale', smallJpeg, {}, { query: '?factor=2&format=png' });
    assert.equal(png.status, 200, png.bytes.toString());
    assert.equal(png.headers['content-type'], 'image/png');
  });

  test('unknown options and bad values: 400 naming them', async () => {
    const unknown = await playe('upscale', smallJpeg, { factor: 2, sharpness: 3, colour: 'red' });
    assertError(unknown, 400, 'unknown_option');
    assert.deepEqual(unknown.body.details.unknown, ['sharpness', 'colour']);
    assert.match(unknown.body.message, /sharpness, colour/);
    const bad = await playe('upscale', smallJpeg, { factor: 20 });
    assertError(bad, 400, 'invalid_params');
    assert.match(bad.body.message, /factor/);
    const level = await playe('denoise', smallJpeg, { level: 'extreme' });
    assertError(level, 400, 'invalid_params');
    const noFile = multipart([{ name: 'factor', value: '2' }]);
    assertError(await request(`${system.baseUrl}/api/ai/upscale`, { method: 'POST', body: noFile.body, headers: { ...bearer(await system.token()), 'content-type': noFile.contentType } }), 400, 'image_required');
    assertError(await playe('sharpen', smallJpeg), 404, 'route_not_found');
    assertError(await request(`${system.baseUrl}/api/ai/upscale`, { method: 'POST', body: 'x', headers: { 'content-type': 'text/plain' } }), 401, 'auth_required');
  });

  test('face-enhance without a face-restoration model: 503 model_not_installed', async () => {
    const answer = await playe('face-enhance', readFileSync(fixture('messi5.jpg')));
    assertError(answer, 503, 'model_not_installed');
    assert.match(answer.body.message, /not installed/);
  });

  test('a bad image fails during the wait: 422 with the job\'s error code', async () => {
    const answer = await playe('detect-objects', Buffer.from('GIF89a but not really'));
    assertError(answer, 422, 'undecodable_image');
    assert.ok(answer.body.details.task_id);
    assert.equal(answer.body.details.step, 'decode');
    const job = await request(`${system.baseUrl}/api/jobs/${answer.body.details.task_id}`, { headers: bearer(await system.token('playe-user')) });
    assert.equal(job.body.state, 'FAILURE');
    assert.equal(job.body.error.code, 'undecodable_image');
  });

  test('Prefer: respond-async answers 202 {status: queued, task_id} at once; GET /api/jobs/{task_id} follows it', async () => {
    const answer = await playe('detect-objects', dog, {}, { headers: { prefer: 'respond-async' } });
    assert.equal(answer.status, 202, answer.bytes.toString());
    assertSchema('http/playe-queued.schema.json', answer.body);
    assert.equal(answer.body.status, 'queued');
    assert.equal(answer.headers.location, `/api/jobs/${answer.body.task_id}`);
    const job = await system.waitForJob(answer.body.task_id, { sub: 'playe-user' });
    assert.equal(job.state, 'SUCCESS');
    assert.ok(job.result?.objects?.some((o) => o.label === 'dog'));
  });

  test('not done within SYNC_WAIT_MS: 202 queued; the result is there later (denoise level sent as "light")', async () => {
    const env = { ...process.env, ...system.env, HTTP_PORT: String(await freePort()), SYNC_WAIT_MS: '300' };
    impatientEdge = await startEdge(loadConfig(env), createLogger('impatient-edge'));
    const base = `http://127.0.0.1:${impatientEdge.port}`;
    const answer = await playe('denoise', smallJpeg, { level: 'light' }, { base });
    assert.equal(answer.status, 202, answer.bytes.toString());
    assertSchema('http/playe-queued.schema.json', answer.body);
    await system.startWorker('denoise');
    const job = await system.waitForJob(answer.body.task_id, { sub: 'playe-user', timeoutMs: 60_000 });
    assert.equal(job.status, 'done', JSON.stringify(job.error));
    assert.equal(job.state, 'SUCCESS');
    const result = await request(`${system.baseUrl}${job.result!.url}`, { headers: bearer(await system.token('playe-user')) });
    assert.equal(result.headers['content-type'], 'image/jpeg');
    assert.deepEqual([(await sharp(result.bytes).metadata()).width, (await sharp(result.bytes).metadata()).height], [128, 96]);
  });

  test('denoise synchronously, level as JSON string and as a plain value', async () => {
    await waitFor(async () => (await request(`${system.baseUrl}/api/health`)).body.stages.denoise?.seen, 'denoise worker');
    for (const level of ['"light"', 'light']) {
      const form = multipart([{ name: 'file', value: smallJpeg, filename: 'image.png', contentType: 'image/png' }, { name: 'level', value: level }]);
      const answer = await request(`${system.baseUrl}/api/ai/denoise`, { method: 'POST', body: form.body, headers: { ...bearer(await system.token()), 'content-type': form.contentType } });
      assert.equal(answer.status, 200, answer.bytes.toString());
      assert.equal(answer.headers['content-type'], 'image/jpeg');
      const view = await request(`${system.baseUrl}/api/jobs/${answer.headers['x-task-id']}`, { headers: bearer(await system.token()) });
      assert.equal(((view.body as JobView).pipeline?.[1]?.params as { level?: string }).level, 'light');
    }
  });
});
