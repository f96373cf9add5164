/**
 * Limits on the real system: upload size (413 before the body is read when Content-Length
 * says so), pixel count from the image header (413), JSON size and depth, the per-caller rate
 * limit and concurrent-job quota (429 + Retry-After), and admission control on the stage
 * backlog (503 overloaded + Retry-After). No stage worker runs here: submitted jobs stay
 * unfinished, which is what the quota and the backlog need.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { assertError, bearer, multipart, request, type HttpAnswer } from '../helpers/edge-client.js';
import { fixture } from '../helpers/paths.js';
import { startSystem, waitFor, type TestSystem } from '../helpers/system.js';

const PIPELINE = [{ step: 'decode' }, { step: 'encode' }];
const MAX_UPLOAD = 200_000;

describe('limits', () => {
  let system: TestSystem;
  let small: Buffer;

  async function submit(sub: string, image: Buffer = small): Promise<HttpAnswer> {
    const form = multipart([{ name: 'file', value: image, filename: 'image.jpg', contentType: 'image/jpeg' }, { name: 'pipeline', value: JSON.stringify(PIPELINE) }]);
    return request(`${system.baseUrl}/api/jobs`, { method: 'POST', body: form.body, headers: { ...bearer(await system.token(sub)), 'content-type': form.contentType } });
  }

  before(async () => {
    system = await startSystem({
      steps: [],
      env: {
        MAX_UPLOAD_BYTES: String(MAX_UPLOAD), MAX_INPUT_PIXELS: '300000', MAX_JSON_BYTES: '4096', MAX_JSON_DEPTH: '8',
        RATE_LIMIT_PER_MINUTE: '5', MAX_CONCURRENT_JOBS: '2', MAX_BACKLOG: '6',
      },
    });
    small = await sharp(readFileSync(fixture('dog.jpg'))).resize(160, 120).jpeg().toBuffer();
  });
  after(async () => system?.stop());

  test('upload size: 413 payload_too_large as soon as Content-Length says so, without reading the body', async () => {
    const token = await system.token('uploader');
    // Declare 100 MB, send 1 KB, and wait: the answer comes without the rest of the body.
    const answer = await new Promise<HttpAnswer>((resolve, reject) => {
      const req = http.request(`${system.baseUrl}/api/jobs`, {
        method: 'POST',
        headers: { ...bearer(token), 'content-type': 'multipart/form-data; boundary=x', 'content-length': String(100 * 1024 * 1024) },
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const bytes = Buffer.concat(chunks);
          resolve({ status: res.statusCode!, headers: res.headers as Record<string, string>, bytes, body: JSON.parse(bytes.toString()) });
          req.destroy();
        });
      });
      req.on('error', reject);
      req.write(Buffer.alloc(1024));
    });
    assertError(answer, 413, 'payload_too_large');
    // A body without Content-Length (chunked) is cut off while it is read.
    const big = Buffer.alloc(MAX_UPLOAD + 200_000, 7);
    const chunked = await request(`${system.baseUrl}/api/blobs`, { method: 'POST', body: big, headers: { ...bearer(token), 'content-type': 'image/jpeg', 'transfer-encoding': 'chunked' } }).catch((e) => e);
    if (!(chunked instanceof Error)) assertError(chunked, 413, 'payload_too_large');
    // Just over the image limit, inside the form overhead allowance: refused after reading.
    const over = await request(`${system.baseUrl}/api/blobs`, { method: 'POST', body: Buffer.alloc(MAX_UPLOAD + 1, 1), headers: { ...bearer(token), 'content-type': 'image/jpeg' } });
    assertError(over, 413, 'payload_too_large');
  });

  test('pixel count: 413 image_too_large from the header, before any decode', async () => {
    const dog = readFileSync(fixture('dog.jpg')); // 768 x 576 = 442,368 pixels > 300,000
    const answer = await submit('pixels', dog);
    assertError(answer, 413, 'image_too_large');
    assert.deepEqual([answer.body.details.width, answer.body.details.height, answer.body.details.maxPixels], [768, 576, 300000]);
  });

  test('JSON: too deep -> 400 json_too_deep; too large without an image -> 413', async () => {
    const token = await system.token('jsoner');
    let deep: unknown = 1;
    for (let i = 0; i < 20; i++) deep = [deep];
    const tooDeep = await request(`${system.baseUrl}/api/jobs`, { method: 'POST', headers: { ...bearer(token), 'content-type': 'application/json' }, body: JSON.stringify({ pipeline: PIPELINE, image: 'AAAA', extra: deep }) });
    assertError(tooDeep, 400, 'json_too_deep');
    const padding = 'x'.repeat(6000);
    const tooBig = await request(`${system.baseUrl}/api/jobs`, { method: 'POST', headers: { ...bearer(token), 'content-type': 'application/json' }, body: JSON.stringify({ pipeline: [{ step: 'decode', params: { note: padding } }], blobId: 'x' }) });
    assertError(tooBig, 413, 'payload_too_large');
  });

  test('rate limit: the 6th request in a minute is 429 rate_limited with Retry-After; other callers are not affected', async () => {
    const token = await system.token('chatty');
    for (let i = 0; i < 5; i++) assert.equal((await request(`${system.baseUrl}/api/jobs`, { headers: bearer(token) })).status, 200, `request ${i + 1}`);
    const limited = await request(`${system.baseUrl}/api/jobs`, { headers: bearer(token) });
    assertError(limited, 429, 'rate_limited');
    const retryAfter = Number(limited.headers['retry-after']);
    assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `Retry-After ${limited.headers['retry-after']}`);
    assert.equal((await request(`${system.baseUrl}/api/jobs`, { headers: bearer(await system.token('quiet')) })).status, 200);
    // The WebSocket submit counts against the same budget.
    const { openSocket } = await import('../helpers/system.js');
    const socket = await openSocket(`${system.baseUrl.replace('http', 'ws')}/ws?token=${token}`);
    await socket.next((m) => m.type === 'ready');
    socket.ws.send(JSON.stringify({ type: 'submit', pipeline: PIPELINE, image: small.toString('base64') }));
    assert.equal((await socket.next((m) => m.type === 'error')).code, 'rate_limited');
    socket.ws.close();
  });

  test('concurrent jobs: the 3rd unfinished job is 429 too_many_jobs with Retry-After; a canceled one frees its slot', async () => {
    const first = await submit('busy');
    const second = await submit('busy');
    assert.deepEqual([first.status, second.status], [202, 202]);
    const third = await submit('busy');
    assertError(third, 429, 'too_many_jobs');
    assert.ok(Number(third.headers['retry-after']) >= 1);
    const canceled = await request(`${system.baseUrl}/api/jobs/${first.body.jobId}/cancel`, { method: 'POST', headers: bearer(await system.token('busy')) });
    assert.equal(canceled.status, 200);
    const fourth = await submit('busy');
    assert.equal(fourth.status, 202, fourth.bytes.toString());
  });

  test('concurrent jobs raced: of 5 submissions sent at once, exactly 2 get in', async () => {
    const answers = await Promise.all(Array.from({ length: 5 }, () => submit('racer')));
    const statuses = answers.map((a) => a.status).sort();
    assert.deepEqual(statuses, [202, 202, 429, 429, 429], answers.map((a) => a.bytes.toString()).join('\n'));
    for (const refused of answers.filter((a) => a.status === 429)) assertError(refused, 429, 'too_many_jobs');
  });

  test('admission control: past MAX_BACKLOG pending steps new jobs get 503 overloaded with Retry-After', async () => {
    // Each caller submits one job (no quota or rate limit in the way); nothing consumes them.
    let answer: HttpAnswer | undefined;
    let callers = 0;
    await waitFor(async () => {
      answer = await submit(`crowd-${callers++}`);
      return answer.status === 503 ? answer : undefined;
    }, 'a 503 once the backlog passes 6', 20_000);
    assertError(answer!, 503, 'overloaded');
    assert.ok(Number(answer!.headers['retry-after']) >= 1);
    assert.ok(answer!.body.details.backlog > 6);
    assert.ok(callers >= 4, `refused only after the backlog filled (${callers} submissions)`);
  });
});
