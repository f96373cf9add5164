/**
 * The PLAYE front end, unchanged, against the edge in the configuration the README documents
 * for it (ANONYMOUS_SUBJECT on a loopback listener, CORS_ORIGINS for its origin): each request
 * is made exactly as its code makes it, and each assertion is on what its screens read.
 *
 * - src/api/client.js ApiClient: postImage = FormData with `file` (a PNG blob from a canvas,
 *   named image.png) and each option JSON.stringify'd; post = JSON; get; no Authorization, no
 *   Accept; the answer read by Content-Type (JSON, image/* as ImageData, else a blob), any
 *   non-2xx is `{success: false}`.
 * - src/router.js SmartRouter: GET <base>/health; POST <base>/ai/<task> with the camelCase task
 *   names, multipart when the data is an image, JSON {...data, ...options} otherwise.
 * - src/blueprints/ai.js: the face screen draws `boxes` and prints faces[i].boundingBox's
 *   width x height; the object screen prints x, y, width, height, label, score of each object.
 * - src/main.js: faceEnhance / upscale / denoise of a captured frame, shown when the answer is
 *   an image.
 *
 * FACE_RESTORE_FALLBACK is read when the stage module loads, so it is set before any import.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';

process.env.FACE_RESTORE_FALLBACK = 'sr-nomos-compact-x2';
const { default: sharp } = await import('sharp');
const { startEdge } = await import('../../services/edge/server.js');
const { freePort } = await import('../../services/launcher/nats-server.js');
const { loadConfig } = await import('../../services/lib/shared/config.js');
const { createLogger } = await import('../../services/lib/shared/logger.js');
const { assertError, assertSchema, multipart, request } = await import('../helpers/edge-client.js');
type HttpAnswer = Awaited<ReturnType<typeof request>>;
const { fixture } = await import('../helpers/paths.js');
const { startSystem } = await import('../helpers/system.js');

/** The page's origin (a local static server, as the front end is served in development). */
const ORIGIN = 'http://localhost:5500';
const SUBJECT = 'playe-desk';

describe('the PLAYE front end, unchanged, end to end', () => {
  let system: Awaited<ReturnType<typeof startSystem>>;
  let slowEdge: Awaited<ReturnType<typeof startEdge>> | undefined;
  let messiPng: Buffer;
  let dogPng: Buffer;
  let smallPng: Buffer;

  /** What ApiClient._request hands back: {success, data} with data read by Content-Type. */
  async function clientResult(answer: HttpAnswer): Promise<{ success: boolean; data?: any; error?: string; answer: HttpAnswer }> {
    if (answer.status < 200 || answer.status > 299) return { success: false, error: `HTTP ${answer.status}: ${answer.bytes.toString()}`, answer };
    const contentType = answer.headers['content-type'] ?? '';
    if (contentType.includes('application/json')) return { success: true, data: JSON.parse(answer.bytes.toString('utf8')), answer };
    if (contentType.startsWith('image/')) {
      const { data, info } = await sharp(answer.bytes).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
      return { success: true, data: { imageData: true, width: info.width, height: info.height, length: data.length }, answer };
    }
    return { success: true, data: { blob: answer.bytes }, answer };
  }

  /** apiClient.postImage(endpoint, blob, {params}): as the browser sends a FormData from a page on ORIGIN. */
  async function postImage(endpoint: string, png: Buffer, params: Record<string, unknown> = {}, base = system.baseUrl) {
    const form = multipart([
      { name: 'file', value: png, filename: 'image.png', contentType: 'image/png' },
      ...Object.entries(params).map(([name, value]) => ({ name, value: JSON.stringify(value) })),
    ]);
    return clientResult(await request(`${base}/api${endpoint}`, { method: 'POST', body: form.body, headers: { 'content-type': form.contentType, origin: ORIGIN } }));
  }

  /** apiClient.post(endpoint, data): JSON. */
  async function postJson(endpoint: string, data: unknown) {
    return clientResult(await request(`${system.baseUrl}/api${endpoint}`, { method: 'POST', body: JSON.stringify(data), headers: { 'content-type': 'application/json', origin: ORIGIN } }));
  }

  /** apiClient.get(endpoint). */
  async function get(endpoint: string, base = system.baseUrl) {
    return clientResult(await request(`${base}/api${endpoint}`, { headers: { origin: ORIGIN } }));
  }

  /** What the face screen prints for each face: `${Math.round(box.width)}x${Math.round(box.height)} px`. */
  const faceLine = (face: { boundingBox: { width: number; height: number } }) => `${Math.round(face.boundingBox.width)}x${Math.round(face.boundingBox.height)} px`;

  before(async () => {
    system = await startSystem({
      steps: ['decode', 'encode', 'detect_objects', 'detect_faces', 'upscale', 'enhance_faces'],
      // The old backend's root at / (no playground there), as a PLAYE user would run it.
      env: { ANONYMOUS_SUBJECT: SUBJECT, CORS_ORIGINS: 'http://localhost:*', FACE_RESTORE_FALLBACK: 'sr-nomos-compact-x2', WEB_PLAYGROUND: 'false' },
    });
    // The front end sends canvas.toBlob(..., 'image/png') of the current frame: PNG bytes.
    messiPng = await sharp(readFileSync(fixture('messi5.jpg'))).png().toBuffer();
    dogPng = await sharp(readFileSync(fixture('dog.jpg'))).png().toBuffer();
    smallPng = await sharp(readFileSync(fixture('dog.jpg'))).resize(128, 96).png().toBuffer();
  });
  after(async () => {
    await slowEdge?.close();
    await system?.stop();
  });

  test('a preflight from the page\'s origin is allowed; another origin is not', async () => {
    const preflight = await request(`${system.baseUrl}/api/ai/detectFaces`, {
      method: 'OPTIONS', headers: { origin: ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers['access-control-allow-origin'], ORIGIN);
    assert.match(preflight.headers['access-control-allow-methods']!, /POST/);
    assert.match(preflight.headers['access-control-allow-headers']!, /content-type/);
    const other = await request(`${system.baseUrl}/api/ai/detectFaces`, { method: 'OPTIONS', headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST' } });
    assert.equal(other.headers['access-control-allow-origin'], undefined);
  });

  test('SmartRouter.checkBackendAvailability: GET <base>/health is ok, with the old cuda_available and device; GET / describes the service', async () => {
    const health = await get('/health');
    assert.equal(health.success, true, health.error);
    assert.equal(health.answer.headers['access-control-allow-origin'], ORIGIN);
    assertSchema('http/health.schema.json', health.data);
    assert.equal(typeof health.data.cuda_available, 'boolean');
    assert.equal(health.data.device, health.data.cuda_available ? 'cuda' : 'cpu');
    const root = await request(`${system.baseUrl}/`);
    assert.equal(root.status, 200);
    assertSchema('http/service.schema.json', root.body);
    assert.equal(root.body.status, 'running');
    assert.match(root.body.version, /^\d+\.\d+\.\d+/);
    // And at /api whether or not a playground takes /.
    assert.deepEqual((await request(`${system.baseUrl}/api`)).body, root.body);
  });

  test('requests without a token: the configured subject from the page\'s origin; 401 from an origin CORS does not allow', async () => {
    const refused = await request(`${system.baseUrl}/api/jobs`, { headers: { origin: 'http://evil.example' } });
    assertError(refused, 401, 'auth_required');
    const own = await get('/jobs');
    assert.equal(own.success, true, own.error);
    assertSchema('http/job-list.schema.json', own.data);
  });

  test('detectFaces (router, camelCase) and detect-faces (client): boxes and faces[i].boundingBox, as the face screen reads them', async () => {
    for (const endpoint of ['/ai/detectFaces', '/ai/detect-faces']) {
      const result = await postImage(endpoint, messiPng);
      assert.equal(result.success, true, result.error);
      assertSchema('http/playe-detections.schema.json', result.data);
      const { faces, boxes } = result.data;
      assert.ok(faces.length >= 1, JSON.stringify(result.data));
      assert.equal(boxes.length, faces.length);
      for (const [i, face] of faces.entries()) {
        assert.deepEqual(boxes[i], face.boundingBox);
        for (const key of ['x', 'y', 'width', 'height']) assert.equal(typeof face.boundingBox[key], 'number');
        assert.match(faceLine(face), /^\d+x\d+ px$/);
      }
      assert.equal(result.data.status, 'success');
      assert.equal(result.data.filename, 'image.png');
      // The job polled as the front end would (apiClient.get('/jobs/<task_id>')) reads the same way.
      const job = await get(`/jobs/${result.data.task_id}`);
      assert.equal(job.data.state, 'SUCCESS');
      assert.deepEqual(job.data.result.faces, faces);
      assert.deepEqual(job.data.result.boxes, boxes);
    }
  });

  test('detectObjects: flat x, y, width, height, label and score on each object, as the object screen reads them', async () => {
    const result = await postImage('/ai/detectObjects', dogPng);
    assert.equal(result.success, true, result.error);
    assertSchema('http/playe-detections.schema.json', result.data);
    const lines = result.data.objects.map((box: any, index: number) => {
      const size = `${Math.round(box.width)}x${Math.round(box.height)} px`;
      return `Объект ${index + 1}: ${box.label} (${Math.round(box.score * 100)}%), ${size}`;
    });
    assert.ok(lines.some((line: string) => /: dog \(\d+%\), \d+x\d+ px$/.test(line)), lines.join('\n'));
    for (const object of result.data.objects) assert.deepEqual({ x: object.x, y: object.y, width: object.width, height: object.height }, object.box);
  });

  test('upscale (router, no options, as main.js sends it; client with factor 2): an image the result canvas shows', async () => {
    const byRouter = await postImage('/ai/upscale', smallPng);
    assert.equal(byRouter.success, true, byRouter.error);
    assert.equal(byRouter.answer.headers['content-type'], 'image/png');
    assert.equal(byRouter.data.imageData, true);
    const byClient = await postImage('/ai/upscale', smallPng, { factor: 2 });
    assert.deepEqual([byClient.data.width, byClient.data.height], [256, 192]);
  });

  test('faceEnhance (router, camelCase): the enhanced image, same size', async () => {
    const result = await postImage('/ai/faceEnhance', messiPng);
    assert.equal(result.success, true, result.error);
    assert.equal(result.data.imageData, true);
    assert.deepEqual([result.data.width, result.data.height], [548, 342]);
  });

  test('the router\'s JSON form (ai.js posts {} when it has no frame): 400 image_required; detectScenes: 501 task_unavailable, not 404', async () => {
    const preflight = await request(`${system.baseUrl}/api/ai/detectScenes`, {
      method: 'OPTIONS', headers: { origin: ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
    });
    assert.equal(preflight.headers['access-control-allow-origin'], ORIGIN);
    const noFrame = await postJson('/ai/detectFaces', {});
    assert.equal(noFrame.success, false);
    assertError(noFrame.answer, 400, 'image_required');
    const withFrame = await postJson('/ai/detectFaces', { image: `data:image/png;base64,${messiPng.toString('base64')}` });
    assert.equal(withFrame.success, true, withFrame.error);
    assert.ok(withFrame.data.boxes.length >= 1);
    const scenes = await postJson('/ai/detectScenes', {});
    assert.equal(scenes.success, false);
    assertError(scenes.answer, 501, 'task_unavailable');
    assert.match(scenes.answer.body.message, /scene/);
    assert.equal(scenes.answer.body.detail, scenes.answer.body.message, 'the old backend\'s {detail}');
    assert.equal(scenes.answer.headers['access-control-allow-origin'], ORIGIN, 'the page can read why');
  });

  test('a repeat never joins a job that failed: the same bad frame twice is two jobs, each a 422', async () => {
    const bad = Buffer.from('\x89PNG\r\n\x1a\n but not really');
    const first = await postImage('/ai/detectObjects', bad);
    assertError(first.answer, 422, 'undecodable_image');
    const second = await postImage('/ai/detectObjects', bad);
    assertError(second.answer, 422, 'undecodable_image');
    assert.notEqual(second.answer.body.details.task_id, first.answer.body.details.task_id);
  });

  test('a 720p denoise on a slow pipeline still reaches the client: 202 with Retry-After before its timeout, the job polled at /jobs/<task_id>, and the repeat of the request answers the image', async () => {
    // "Slow": the edge waits 300 ms and no denoise process runs yet, so the answer is
    // certainly the not-done one, whatever this machine's speed.
    const env = { ...process.env, ...system.env, HTTP_PORT: String(await freePort()), SYNC_WAIT_MS: '300' };
    slowEdge = await startEdge(loadConfig(env), createLogger('slow-edge'));
    const slowBase = `http://127.0.0.1:${slowEdge.port}`;
    const frame = await sharp(readFileSync(fixture('baboon.jpg'))).resize(1280, 720, { fit: 'fill' }).png().toBuffer();
    const first = await postImage('/ai/denoise', frame, {}, slowBase);
    assert.equal(first.answer.status, 202, first.answer.bytes.toString());
    assertSchema('http/playe-queued.schema.json', first.data);
    assert.ok(Number(first.answer.headers['retry-after']) >= 1);
    const taskId = first.data.task_id as string;
    assert.equal(first.data.result_url, `/api/jobs/${taskId}/result`);
    const pending = await get(`/jobs/${taskId}`, slowBase);
    assert.ok(['PENDING', 'STARTED'].includes(pending.data.state), pending.data.state); // decode may have run already

    await system.startWorker('denoise');
    const done = await system.waitForJob(taskId, { sub: SUBJECT, timeoutMs: 300_000 });
    assert.equal(done.status, 'done', JSON.stringify(done.error));
    // The poll path: the job view, then its result URL (relative to the front end's base /api).
    const polled = await get(`/jobs/${taskId}`, slowBase);
    assert.equal(polled.data.state, 'SUCCESS');
    const image = await get(polled.data.result.url.replace(/^\/api/, ''), slowBase);
    assert.deepEqual([image.data.width, image.data.height], [1280, 720]);
    // The unchanged front end never polls: the user's next click on the same frame joins the
    // job and gets its image at once, with no second run.
    const again = await postImage('/ai/denoise', frame, {}, slowBase);
    assert.equal(again.success, true, again.error);
    assert.equal(again.answer.headers['x-task-id'], taskId);
    assert.equal(again.answer.headers['content-type'], 'image/png');
    assert.deepEqual([again.data.width, again.data.height], [1280, 720]);
  });

  test('denoise with the old level names: "heavy" runs as strong', async () => {
    const result = await postImage('/ai/denoise', smallPng, { level: 'heavy' });
    assert.equal(result.success, true, result.error);
    assert.deepEqual([result.data.width, result.data.height], [128, 96]);
    const job = await get(`/jobs/${result.answer.headers['x-task-id']}`);
    assert.equal(job.data.pipeline[1].params.level, 'strong');
  });
});
