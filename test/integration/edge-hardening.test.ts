/**
 * The findings of the hostile-user review (issue 14), one test each, on the real system:
 * malformed percent-encoding in path parameters, deep JSON on WebSocket frames, bodies shorter
 * than their Content-Length, oversized URLs and headers, and what uWS itself refuses. After
 * each, the edge still answers (it runs in this process: had a handler thrown out of a uWS
 * callback, this test process would have died with it).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { assertError, bearer, rawBody, rawRequest, request, type HttpAnswer } from '../helpers/edge-client.js';
import { openSocket, startSystem, type TestSystem } from '../helpers/system.js';

describe('edge hardening (issue 14 findings)', () => {
  let system: TestSystem;
  let port: number;
  const alive = async () => assert.equal((await request(`${system.baseUrl}/api/health`)).status, 200, 'the edge still answers');

  before(async () => {
    system = await startSystem({ steps: [], env: { BODY_TIMEOUT_MS: '1500', MAX_JSON_DEPTH: '32' } });
    port = system.edge.port;
  });
  after(async () => system?.stop());

  test('malformed percent-encoding in any path parameter: 400 invalid_path with the envelope, no token needed, the edge lives', async () => {
    const token = await system.token('pct');
    const cases: [string, string, Record<string, string>][] = [
      ['GET', '/api/jobs/%ff', {}],
      ['GET', '/api/jobs/%ff', bearer(token)],
      ['POST', '/api/jobs/%E0%A4%A/cancel', {}],
      ['GET', '/api/jobs/%C0%AF/result', bearer(token)],
      ['POST', '/api/ai/%c0', {}],
      ['GET', '/api/blobs/%', bearer(token)],
      ['GET', '/api/jobs/%zz', {}],
    ];
    for (const [method, path, headers] of cases) {
      const answer = await request(`${system.baseUrl}${path}`, { method, headers });
      if (answer.status === 404) assertError(answer, 404, 'route_not_found'); // a pattern without a parameter there
      else assertError(answer, 400, 'invalid_path');
    }
    assertError(await request(`${system.baseUrl}/api/jobs/%ff`), 400, 'invalid_path');
    await alive();
  });

  test('WebSocket frames have the HTTP depth limit: 50,000 levels deep is 400 json_too_deep, not a stack overflow', async () => {
    const socket = await openSocket(`${system.baseUrl.replace('http', 'ws')}/ws?token=${await system.token('deep')}`);
    await socket.next((m) => m.type === 'ready');
    const deep = '['.repeat(50_000) + ']'.repeat(50_000);
    socket.ws.send(`{"type":"submit","pipeline":[{"step":"decode","params":{"x":${deep}}}],"image":"AAAA"}`);
    const error = await socket.next((m) => m.type === 'error');
    assert.deepEqual([error.code, error.status], ['json_too_deep', 400]);
    // The JSON header of a binary frame too.
    const header = Buffer.from(`{"type":"submit","pipeline":${'['.repeat(40)}${']'.repeat(40)}}`);
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(header.length);
    socket.ws.send(Buffer.concat([prefix, header, Buffer.from('image')]));
    const second = await socket.next((m) => m.type === 'error' && m !== error);
    assert.equal(second.code, 'json_too_deep');
    socket.ws.close();
    await alive();
  });

  test('a body shorter than its Content-Length is answered 408 body_timeout (BODY_TIMEOUT_MS) and the connection closed', async () => {
    const token = await system.token('slow');
    const head = `POST /api/blobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\nContent-Type: image/jpeg\r\nContent-Length: 5000\r\n\r\n`;
    const answer = await rawRequest(port, Buffer.concat([Buffer.from(head), Buffer.alloc(100, 1)]), 5000);
    assert.match(answer.text, /^HTTP\/1\.1 408 /);
    const body = rawBody(answer.text);
    assert.equal(body.code, 'body_timeout');
    assert.ok(body.requestId);
    assert.ok(answer.closed, 'connection closed after the 408');
    await alive();
  });

  test('Content-Length together with Transfer-Encoding: chunked gets an answer (uWS refuses it as request smuggling)', async () => {
    const token = await system.token('smuggle');
    const answer = await rawRequest(port, `POST /api/blobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\nContent-Type: image/jpeg\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`, 5000);
    // uWS answers this in its parser, before any route (its own 400, without the envelope).
    assert.match(answer.text, /^HTTP\/1\.1 4\d\d /);
    assert.ok(answer.closed);
    await alive();
  });

  test('long URLs and huge headers: 431 with the envelope from the edge (MAX_URL_BYTES, MAX_HEADER_BYTES)', async () => {
    const token = await system.token('big');
    const checks: HttpAnswer[] = [
      await request(`${system.baseUrl}/api/jobs/${'a'.repeat(8200)}`, { headers: bearer(token) }),
      await request(`${system.baseUrl}/api/jobs?x=${'a'.repeat(100_000)}`, { headers: bearer(token) }),
    ];
    for (const answer of checks) assertError(answer, 431, 'url_too_long');
    assertError(await request(`${system.baseUrl}/api/jobs`, { headers: bearer('a'.repeat(60_000)) }), 431, 'headers_too_large');
    assertError(await request(`${system.baseUrl}/api/jobs`, { headers: { ...bearer(token), 'x-filler': 'b'.repeat(20_000) } }), 431, 'headers_too_large');
    await alive();
  });

  test('what uWS refuses in its parser (1,000 headers, HTTP/1.0 without Host, not HTTP) is answered and closed; the edge lives', async () => {
    const many = `GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n${Array.from({ length: 1000 }, (_, i) => `x-h${i}: v\r\n`).join('')}\r\n`;
    for (const raw of [many, 'GET /api/health HTTP/1.0\r\n\r\n', 'hello there\r\n\r\n']) {
      const answer = await rawRequest(port, raw, 5000);
      assert.match(answer.text, /^HTTP\/1\.1 (4|5)\d\d /);
      assert.ok(answer.closed);
    }
    await alive();
  });
});
