/**
 * Bad input, generated here (nothing large is committed), across HTTP, the PLAYE routes and
 * the WebSocket: broken and hostile images, malformed multipart, oversize and chunked bodies,
 * malformed percent-encoding in every path parameter, deep and huge JSON, invalid pipelines
 * and parameters, invalid UTF-8 headers and every JWT fault. Each must get a clear 4xx with
 * the error envelope (a few valid-but-unusual images may succeed instead: CMYK, 16-bit,
 * animated, extreme aspect ratios), never a 5xx; afterwards every process is still the same
 * one (the edge is this process; the stage workers keep their PIDs) and the edge's memory is
 * back near where it started.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { deflateSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { exportSPKI, generateKeyPair, SignJWT } from 'jose';
import sharp from 'sharp';
import { assertSchema, bearer, multipart, rawBody, rawRequest, request, type HttpAnswer } from '../helpers/edge-client.js';
import { JWT_SECRET, openSocket, startSystem, type TestSystem } from '../helpers/system.js';

const MAX_UPLOAD = 2 * 1024 * 1024;
const nowS = () => Math.floor(Date.now() / 1000);

/** A PNG built by hand: any header, any (compressed) data. */
function png(width: number, height: number, idat: Buffer, bitDepth = 8, colorType = 0): Buffer {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (b: Buffer) => {
    let c = 0xffffffff;
    for (const x of b) c = crcTable[(c ^ x) & 0xff]! ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const sum = Buffer.alloc(4);
    sum.writeUInt32BE(crc(body));
    return Buffer.concat([len, body, sum]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = bitDepth;
  ihdr[9] = colorType;
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', idat), chunk('IEND', Buffer.alloc(0))]);
}

interface Case {
  name: string;
  run(): Promise<HttpAnswer | WsAnswer>;
  /** Valid but unusual input: success is a fine answer too. */
  maySucceed?: boolean;
}
interface WsAnswer { ws: true; status: number; code: string }

describe('bad input', () => {
  let system: TestSystem;
  let workers: ChildProcess[];
  let token: string;
  let small: Buffer;
  const cases: Case[] = [];
  const results: { name: string; status: number; code?: string }[] = [];

  const post = (path: string, body: Buffer | string, headers: Record<string, string>) => request(`${system.baseUrl}${path}`, { method: 'POST', body, headers });
  const playe = (image: Buffer, name = 'upscale', query = '?factor=2') => {
    const form = multipart([{ name: 'file', value: image, filename: 'image.png', contentType: 'image/png' }]);
    return post(`/api/ai/${name}${query}`, form.body, { ...bearer(token), 'content-type': form.contentType });
  };
  const jobJson = (body: unknown) => post('/api/jobs', typeof body === 'string' ? body : JSON.stringify(body), { ...bearer(token), 'content-type': 'application/json' });
  const jobMultipart = (image: Buffer, pipeline: string) => {
    const form = multipart([{ name: 'file', value: image, filename: 'x.jpg', contentType: 'image/jpeg' }, { name: 'pipeline', value: pipeline }]);
    return post('/api/jobs', form.body, { ...bearer(token), 'content-type': form.contentType });
  };
  const withToken = (jwt: string) => request(`${system.baseUrl}/api/jobs?limit=1`, { headers: bearer(jwt) });
  async function ws(frames: (string | Buffer)[], opts: { auth?: boolean } = {}): Promise<WsAnswer> {
    const socket = await openSocket(`${system.baseUrl.replace('http', 'ws')}/ws${opts.auth === false ? '' : `?token=${token}`}`);
    if (opts.auth !== false) await socket.next((m) => m.type === 'ready');
    for (const f of frames) socket.ws.send(f);
    const error = await socket.next((m) => m.type === 'error');
    assertSchema('ws/server-message.schema.json', error);
    socket.ws.close();
    return { ws: true, status: error.status, code: error.code };
  }
  const add = (name: string, run: Case['run'], maySucceed = false) => cases.push({ name, run, maySucceed });

  before(async () => {
    system = await startSystem({ steps: [], env: { MAX_UPLOAD_BYTES: String(MAX_UPLOAD), MAX_INPUT_PIXELS: '4000000', MAX_JSON_BYTES: '65536', BODY_TIMEOUT_MS: '2000', SYNC_WAIT_MS: '60000' } });
    workers = ['decode', 'upscale', 'encode'].map((step) => system.spawnWorker(step));
    token = await system.token('hostile');
    small = await sharp({ create: { width: 48, height: 32, channels: 3, background: '#808040' } }).jpeg().toBuffer();
    const smallPng = await sharp(small).png().toBuffer();
    const hs = (claims: Record<string, unknown>, secret: string = JWT_SECRET) => new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(secret));
    const rsa = await generateKeyPair('RS256', { extractable: true });

    // Images, through the PLAYE route (synchronous: the job's failure is the answer).
    add('zero bytes', () => playe(Buffer.alloc(0)));
    add('truncated JPEG', () => playe(small.subarray(0, Math.floor(small.length / 3))));
    add('truncated PNG', () => playe(smallPng.subarray(0, 60)));
    add('wrong magic: random bytes', () => playe(Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) & 0xff))));
    add('JPEG magic, then garbage', () => playe(Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(2000, 0x41)])));
    add('PNG magic, then garbage', () => playe(Buffer.concat([smallPng.subarray(0, 8), Buffer.alloc(500, 0x42)])));
    add('declared bomb: PNG header says 60000 x 60000', () => playe(png(60_000, 60_000, deflateSync(Buffer.alloc(100)))));
    add('real zlib bomb: 5000 x 5000 grey PNG, ~25 MB inflated from a few KB', () => playe(png(5000, 5000, deflateSync(Buffer.alloc(5001 * 5000)))));
    add('bomb on /api/jobs (multipart)', () => jobMultipart(png(5000, 5000, deflateSync(Buffer.alloc(5001 * 5000))), JSON.stringify([{ step: 'decode' }, { step: 'encode' }])));
    add('extreme aspect ratio 1 x 3000', async () => playe(await sharp({ create: { width: 1, height: 3000, channels: 3, background: '#fff' } }).png().toBuffer()), true);
    add('extreme aspect ratio 3000 x 1', async () => playe(await sharp({ create: { width: 3000, height: 1, channels: 3, background: '#000' } }).png().toBuffer()), true);
    add('CMYK JPEG', async () => playe(await sharp(small).toColourspace('cmyk').jpeg().toBuffer()), true);
    add('16-bit PNG', async () => playe(await sharp(small).toColourspace('rgb16').png().toBuffer()), true);
    add('animated GIF', async () => {
      const frames = await Promise.all(['#f00', '#0f0', '#00f'].map((c) => sharp({ create: { width: 32, height: 32, channels: 3, background: c } }).png().toBuffer()));
      return playe(await sharp(frames, { join: { animated: true } }).gif().toBuffer());
    }, true);
    add('SVG with nested entities (billion laughs)', () => {
      let doctype = '<!ENTITY a0 "lol">';
      for (let i = 1; i < 10; i++) doctype += `<!ENTITY a${i} "${`&a${i - 1};`.repeat(10)}">`;
      return playe(Buffer.from(`<?xml version="1.0"?><!DOCTYPE svg [${doctype}]><svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><text>&a9;</text></svg>`));
    });
    add('SVG with an external entity', () => playe(Buffer.from('<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]><svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><text>&x;</text></svg>')));
    // Multipart.
    add('multipart without boundary', () => post('/api/jobs', 'whatever', { ...bearer(token), 'content-type': 'multipart/form-data' }));
    add('multipart unterminated', () => post('/api/jobs', '--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\nabc', { ...bearer(token), 'content-type': 'multipart/form-data; boundary=xyz' }));
    add('multipart with two files, no pipeline', () => {
      const form = multipart([{ name: 'file', value: small, filename: 'a.jpg' }, { name: 'file', value: small, filename: 'b.jpg' }]);
      return post('/api/jobs', form.body, { ...bearer(token), 'content-type': form.contentType });
    });
    add('PLAYE multipart without the file field', () => {
      const form = multipart([{ name: 'factor', value: '2' }]);
      return post('/api/ai/upscale', form.body, { ...bearer(token), 'content-type': form.contentType });
    });
    add('PLAYE unknown option', () => playe(small, 'upscale', '?bogus=1'));
    add('PLAYE absurd factor', () => playe(small, 'upscale', '?factor=1e308'));
    add('PLAYE negative factor', () => playe(small, 'upscale', '?factor=-2'));
    add('PLAYE unknown endpoint', () => playe(small, 'make-coffee', ''));
    // Sizes and framing.
    add('oversize body with Content-Length', () => post('/api/blobs', Buffer.alloc(MAX_UPLOAD + 100_000, 1), { ...bearer(token), 'content-type': 'image/jpeg' }));
    add('oversize body, chunked (no Content-Length)', () => post('/api/blobs', Buffer.alloc(MAX_UPLOAD + 100_000, 1), { ...bearer(token), 'content-type': 'image/jpeg', 'transfer-encoding': 'chunked' }).catch(() => ({ status: 413, headers: {}, bytes: Buffer.alloc(0), body: { code: 'payload_too_large', message: 'reset while sending', requestId: 'x' } })));
    // Blobs are opaque bytes (checked when a job uses them): a chunked body within the limit is stored.
    add('chunked body within the limit', () => post('/api/blobs', Buffer.alloc(100, 0), { ...bearer(token), 'content-type': 'text/plain', 'transfer-encoding': 'chunked' }), true);
    add('Content-Length not a number', async (): Promise<HttpAnswer> => {
      const raw = await rawRequest(system.edge.port, `POST /api/blobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Length: -5\r\n\r\n`, 3000);
      return raw.text.startsWith('HTTP/1.1 4') && raw.text.includes('{') ? { status: Number(raw.text.slice(9, 12)), headers: { 'x-request-id': rawBody(raw.text).requestId }, bytes: Buffer.from(raw.text), body: rawBody(raw.text) } : { status: Number(raw.text.slice(9, 12)) || 0, headers: {} as Record<string, string>, bytes: Buffer.from(raw.text), body: { code: 'uws', message: 'uWS parser refusal', requestId: 'uws' } };
    });
    // Malformed percent-encoding in every path parameter.
    for (const [method, path] of [['GET', '/api/jobs/%ff'], ['GET', '/api/jobs/%E0%A4%A/result'], ['POST', '/api/jobs/%E0%A4%A/cancel'], ['POST', '/api/ai/%c0'], ['GET', '/api/jobs/%']] as const) {
      add(`malformed percent-encoding: ${method} ${path}`, () => request(`${system.baseUrl}${path}`, { method, headers: bearer(token) }));
    }
    // JSON bodies.
    add('deep JSON (200 levels)', () => jobJson(`{"pipeline":[{"step":"decode"}],"image":"AAAA","x":${'['.repeat(200)}${']'.repeat(200)}}`));
    add('huge JSON without image (200 KB)', () => jobJson({ pipeline: [{ step: 'decode', params: { pad: 'x'.repeat(200_000) } }], blobId: 'b' }));
    add('invalid JSON', () => jobJson('{"pipeline": ['));
    add('unknown step', () => jobJson({ pipeline: [{ step: 'decode' }, { step: 'teleport' }, { step: 'encode' }], image: small.toString('base64') }));
    add('wrong types: pipeline a string', () => jobJson({ pipeline: 'decode', image: small.toString('base64') }));
    add('wrong types: params an array', () => jobJson({ pipeline: [{ step: 'decode' }, { step: 'upscale', params: [2] }, { step: 'encode' }], image: small.toString('base64') }));
    add('NaN parameter', () => jobJson({ pipeline: [{ step: 'decode' }, { step: 'upscale', params: { factor: 'NaN' } }, { step: 'encode' }], image: small.toString('base64') }));
    add('negative parameter', () => jobJson({ pipeline: [{ step: 'decode' }, { step: 'upscale', params: { factor: -2 } }, { step: 'encode' }], image: small.toString('base64') }));
    add('absurd parameter', () => jobJson({ pipeline: [{ step: 'decode' }, { step: 'upscale', params: { factor: 1e308 } }, { step: 'encode' }], image: small.toString('base64') }));
    add('empty pipeline', () => jobJson({ pipeline: [], image: small.toString('base64') }));
    add('10,000-step pipeline', () => jobJson({ pipeline: [{ step: 'decode' }, ...Array.from({ length: 9998 }, () => ({ step: 'upscale', params: { factor: 2 } })), { step: 'encode' }], image: small.toString('base64') }));
    add('image not base64', () => jobJson({ pipeline: [{ step: 'decode' }, { step: 'encode' }], image: '!!!not base64!!!' }));
    add('negative deadline', () => jobJson({ pipeline: [{ step: 'decode' }, { step: 'encode' }], image: small.toString('base64'), deadlineMs: -1 }));
    add('unsupported media type', () => post('/api/jobs', 'hello', { ...bearer(token), 'content-type': 'text/plain' }));
    // Headers.
    for (const [label, header] of [['invalid UTF-8 in a header value', 'X-Note: \xff\xfe\xc0'], ['invalid UTF-8 in Authorization', 'Authorization: Bearer \xff\xfe\xc0\x80']] as const) {
      add(label, async () => {
        const raw = await rawRequest(system.edge.port, Buffer.from(`GET /api/jobs HTTP/1.1\r\nHost: x\r\n${header}\r\n\r\n`, 'latin1'), 300);
        const body = rawBody(raw.text);
        return { status: Number(raw.text.slice(9, 12)), headers: { 'x-request-id': body.requestId }, bytes: Buffer.from(raw.text), body };
      });
    }
    // Every JWT fault.
    add('JWT alg none', () => withToken(`${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify({ sub: 'x', exp: nowS() + 60 })).toString('base64url')}.`));
    add('JWT expired', async () => withToken(await hs({ sub: 'x', exp: nowS() - 3600 })));
    add('JWT not yet valid', async () => withToken(await hs({ sub: 'x', nbf: nowS() + 3600, exp: nowS() + 7200 })));
    add('JWT wrong key', async () => withToken(await hs({ sub: 'x', exp: nowS() + 60 }, 'not-the-secret')));
    add('JWT HS/RS confusion: RS256 token at an HS256 edge', async () => withToken(await new SignJWT({ sub: 'x', exp: nowS() + 60 }).setProtectedHeader({ alg: 'RS256' }).sign(rsa.privateKey)));
    add('JWT HS256 signed with an RSA public key', async () => withToken(await hs({ sub: 'x', exp: nowS() + 60 }, await exportSPKI(rsa.publicKey))));
    add('JWT without sub', async () => withToken(await hs({ exp: nowS() + 60 })));
    add('JWT without exp', async () => withToken(await hs({ sub: 'x' })));
    add('JWT garbage', () => withToken('eyJ.garbage.here'));
    add('JWT in the query (HTTP takes it only in the header)', () => request(`${system.baseUrl}/api/jobs?token=${token}`));
    // WebSocket.
    add('WS deep JSON', () => ws([`{"type":"subscribe","jobId":${'['.repeat(5000)}${']'.repeat(5000)}}`]));
    add('WS invalid JSON', () => ws(['{"type":']));
    add('WS unknown message type', () => ws([JSON.stringify({ type: 'explode' })]));
    add('WS submit with an unknown step', () => ws([JSON.stringify({ type: 'submit', pipeline: [{ step: 'decode' }, { step: 'teleport' }], image: small.toString('base64') })]));
    add('WS submit with a bad base64 image', () => ws([JSON.stringify({ type: 'submit', pipeline: [{ step: 'decode' }, { step: 'encode' }], image: '%%%' })]));
    add('WS binary frame too short', () => ws([Buffer.from([0, 0])]));
    add('WS binary frame header length past the end', () => ws([Buffer.from([0, 0, 0x10, 0, 1, 2, 3])]));
    add('WS submit before auth', () => ws([JSON.stringify({ type: 'submit', pipeline: [{ step: 'decode' }], image: 'AAAA' })], { auth: false }));
    add('WS subscribe to a job that does not exist', () => ws([JSON.stringify({ type: 'subscribe', jobId: 'nope' })]));
    add('WS auth with a garbage token', () => ws([JSON.stringify({ type: 'auth', token: 'garbage' })], { auth: false }));
  });

  after(async () => {
    console.log(`bad input: ${results.length} cases\n${results.map((r) => `  ${r.status} ${r.code ?? ''}  ${r.name}`).join('\n')}`);
    await system?.stop();
  });

  test('every case gets a clear 4xx with the envelope (or success for valid unusual images); every process survives; memory returns near baseline', async () => {
    assert.ok(cases.length >= 40, `${cases.length} cases`);
    const pids = workers.map((w) => w.pid);
    global.gc?.();
    const baseline = process.memoryUsage().rss;
    for (const c of cases) {
      const answer = await c.run();
      if ('ws' in answer) {
        results.push({ name: c.name, status: answer.status, code: answer.code });
        assert.ok(answer.status >= 400 && answer.status < 500, `${c.name}: ${answer.status} ${answer.code}`);
        continue;
      }
      results.push({ name: c.name, status: answer.status, code: answer.body?.code });
      if (c.maySucceed && answer.status < 300) continue;
      assert.ok(answer.status >= 400 && answer.status < 500, `${c.name}: ${answer.status} ${answer.bytes.toString().slice(0, 300)}`);
      if (answer.body?.code === 'uws') continue; // refused in uWS' parser (documented: no envelope possible)
      assertSchema('http/error.schema.json', answer.body);
      if (answer.headers['x-request-id']) assert.equal(answer.body.requestId, answer.headers['x-request-id'], c.name);
    }
    assert.equal((await request(`${system.baseUrl}/api/health`)).status, 200, 'the edge (this process) still answers');
    for (const [i, w] of workers.entries()) assert.ok(w.pid === pids[i] && w.exitCode === null && w.signalCode === null, `worker ${i} alive with its PID`);
    global.gc?.();
    const growth = process.memoryUsage().rss - baseline;
    assert.ok(growth < 256 * 1024 * 1024, `resident memory grew ${Math.round(growth / 1048576)} MiB over the cases`);
  });
});
