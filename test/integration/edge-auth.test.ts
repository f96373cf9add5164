/**
 * Authentication and ownership on the real system. HS256 with JWT_SECRET (exp/nbf leeway,
 * alg none, wrong secret), RS256/ES256 through JWKS_FILE with iss/aud required (and the
 * HS256-with-the-public-key confusion refused), JWKS_URL served by a local HTTP server, and
 * that nobody but the owner (sub + tenant) can read, list, cancel, fetch or watch a job: 404.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type JWK, type CryptoKey } from 'jose';
import { startEdge, type Edge } from '../../services/edge/server.js';
import { freePort } from '../../services/launcher/nats-server.js';
import { loadConfig } from '../../services/lib/shared/config.js';
import { createLogger } from '../../services/lib/shared/logger.js';
import { assertError, bearer, request } from '../helpers/edge-client.js';
import { JWT_SECRET, openSocket, startSystem, type TestSystem } from '../helpers/system.js';

const now = () => Math.floor(Date.now() / 1000);
const hs256 = (claims: Record<string, unknown>, secret: string | Uint8Array = JWT_SECRET) =>
  new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).sign(typeof secret === 'string' ? new TextEncoder().encode(secret) : secret);
/** An unsigned token (alg none), built by hand: jose will not make one. */
const unsigned = (claims: Record<string, unknown>) =>
  `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.`;

describe('authentication and ownership', () => {
  let system: TestSystem;
  const edges: Edge[] = [];
  let tmp: string;
  let jwksServer: http.Server | undefined;

  async function extraEdge(env: Record<string, string>): Promise<string> {
    const edge = await startEdge(loadConfig({ ...process.env, ...system.env, HTTP_PORT: String(await freePort()), ...env }), createLogger('auth-edge'));
    edges.push(edge);
    return `http://127.0.0.1:${edge.port}`;
  }
  const status = async (base: string, token: string) => (await request(`${base}/api/jobs?limit=1`, { headers: bearer(token) }));

  before(async () => {
    system = await startSystem({ steps: ['decode', 'encode'] });
    tmp = mkdtempSync(path.join(os.tmpdir(), 'photolab-auth-'));
  });
  after(async () => {
    for (const edge of edges) await edge.close();
    jwksServer?.close();
    await system?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  test('HS256: valid tokens pass; missing, garbage, wrong secret, alg none and no sub are 401 token_invalid / auth_required', async () => {
    const base = system.baseUrl;
    assert.equal((await status(base, await hs256({ sub: 'alice', exp: now() + 60 }))).status, 200);
    assertError(await request(`${base}/api/jobs`), 401, 'auth_required');
    assertError(await request(`${base}/api/jobs`, { headers: { authorization: 'Basic YWxpY2U6cHc=' } }), 401, 'auth_required');
    assertError(await status(base, 'garbage'), 401, 'token_invalid');
    assertError(await status(base, await hs256({ sub: 'alice' }, 'some-other-secret')), 401, 'token_invalid');
    assertError(await status(base, unsigned({ sub: 'alice', exp: now() + 60 })), 401, 'token_invalid');
    assertError(await status(base, await hs256({ exp: now() + 60 })), 401, 'token_invalid');
  });

  test('exp and nbf are checked with the configured leeway (30 s)', async () => {
    const base = system.baseUrl;
    assert.equal((await status(base, await hs256({ sub: 'alice', exp: now() - 10 }))).status, 200, 'expired 10 s ago: within leeway');
    const expired = await status(base, await hs256({ sub: 'alice', exp: now() - 120 }));
    assertError(expired, 401, 'token_expired');
    assert.equal((await status(base, await hs256({ sub: 'alice', nbf: now() + 10, exp: now() + 600 }))).status, 200, 'valid in 10 s: within leeway');
    assertError(await status(base, await hs256({ sub: 'alice', nbf: now() + 600, exp: now() + 1200 })), 401, 'token_invalid');
  });

  test('a token without exp is refused by default (it would never expire); JWT_REQUIRE_EXP=false accepts it for legacy clients', async () => {
    const legacy = await hs256({ sub: 'alice', iat: now() }); // what the old backend's README recipe made
    const refused = await status(system.baseUrl, legacy);
    assertError(refused, 401, 'token_invalid');
    assert.match(refused.body.message, /exp/);
    // Refused on the WebSocket too: the same authenticator.
    const socket = await openSocket(`${system.baseUrl.replace('http', 'ws')}/ws?token=${legacy}`);
    assert.equal((await socket.next((m) => m.type === 'error')).code, 'token_invalid');
    assert.equal((await socket.closed).code, 4001);
    const relaxed = await extraEdge({ JWT_REQUIRE_EXP: 'false' });
    assert.equal((await status(relaxed, legacy)).status, 200);
  });

  test('JWKS_FILE: RS256 and ES256 accepted with iss/aud; wrong iss/aud, HS256 (also with the RSA public key as secret) and alg none refused', async () => {
    const rsa = await generateKeyPair('RS256', { extractable: true });
    const ec = await generateKeyPair('ES256', { extractable: true });
    const jwks = { keys: [{ ...(await exportJWK(rsa.publicKey)), kid: 'rsa-1', alg: 'RS256', use: 'sig' }, { ...(await exportJWK(ec.publicKey)), kid: 'ec-1', alg: 'ES256', use: 'sig' }] };
    const file = path.join(tmp, 'jwks.json');
    writeFileSync(file, JSON.stringify(jwks));
    const base = await extraEdge({ JWKS_FILE: file, JWT_ISSUER: 'https://idp.example', JWT_AUDIENCE: 'photolab' });
    const sign = (alg: string, kid: string, key: CryptoKey, claims: Record<string, unknown> = {}) =>
      new SignJWT({ iss: 'https://idp.example', aud: 'photolab', sub: 'carol', exp: now() + 60, ...claims }).setProtectedHeader({ alg, kid }).sign(key);

    assert.equal((await status(base, await sign('RS256', 'rsa-1', rsa.privateKey))).status, 200);
    assert.equal((await status(base, await sign('ES256', 'ec-1', ec.privateKey))).status, 200);
    assertError(await status(base, await sign('RS256', 'rsa-1', rsa.privateKey, { iss: 'https://evil.example' })), 401, 'token_invalid');
    assertError(await status(base, await sign('RS256', 'rsa-1', rsa.privateKey, { aud: 'someone-else' })), 401, 'token_invalid');
    assertError(await status(base, await sign('RS256', 'rsa-1', rsa.privateKey, { exp: now() - 3600 })), 401, 'token_expired');
    // JWT_SECRET is still set in this environment: with a JWKS it must not be accepted.
    assertError(await status(base, await hs256({ iss: 'https://idp.example', aud: 'photolab', sub: 'carol', exp: now() + 60 })), 401, 'token_invalid');
    // Algorithm confusion: HS256 "signed" with the RSA public key (PEM) as the HMAC secret.
    const pem = await exportSPKI(rsa.publicKey);
    const confused = await new SignJWT({ iss: 'https://idp.example', aud: 'photolab', sub: 'carol', exp: now() + 60 }).setProtectedHeader({ alg: 'HS256', kid: 'rsa-1' }).sign(new TextEncoder().encode(pem));
    assertError(await status(base, confused), 401, 'token_invalid');
    assertError(await status(base, unsigned({ iss: 'https://idp.example', aud: 'photolab', sub: 'carol', exp: now() + 60 })), 401, 'token_invalid');
  });

  test('JWKS_URL: keys fetched from a JWKS endpoint; a key that is not in it is refused', async () => {
    const rsa = await generateKeyPair('RS256', { extractable: true });
    const stranger = await generateKeyPair('RS256', { extractable: true });
    const jwk: JWK = { ...(await exportJWK(rsa.publicKey)), kid: 'url-1', alg: 'RS256', use: 'sig' };
    let fetched = 0;
    jwksServer = http.createServer((_req, res) => {
      fetched++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((resolve) => jwksServer!.listen(0, '127.0.0.1', resolve));
    const port = (jwksServer.address() as AddressInfo).port;
    const base = await extraEdge({ JWKS_URL: `http://127.0.0.1:${port}/.well-known/jwks.json` });
    const good = await new SignJWT({ sub: 'dave', exp: now() + 60 }).setProtectedHeader({ alg: 'RS256', kid: 'url-1' }).sign(rsa.privateKey);
    assert.equal((await status(base, good)).status, 200);
    assert.ok(fetched >= 1, 'the JWKS was fetched');
    const bad = await new SignJWT({ sub: 'dave', exp: now() + 60 }).setProtectedHeader({ alg: 'RS256', kid: 'url-1' }).sign(stranger.privateKey);
    assertError(await status(base, bad), 401, 'token_invalid');
  });

  test('only the owner (sub + tenant) can read, list, cancel, fetch or watch a job: everyone else gets 404', async () => {
    const accepted = await system.submit(Buffer.from('not an image'), [{ step: 'decode' }, { step: 'upscale', params: { factor: 2 } }, { step: 'encode' }], { sub: 'owner' });
    const jobId = accepted.jobId;
    const owner = await system.token('owner');
    const intruders = { bob: await system.token('bob'), sameSubOtherTenant: await system.token('owner', 'tenant-b') };
    for (const [who, token] of Object.entries(intruders)) {
      for (const [method, path] of [['GET', `/api/jobs/${jobId}`], ['GET', `/api/jobs/${jobId}/result`], ['POST', `/api/jobs/${jobId}/cancel`]] as const) {
        const answer = await request(`${system.baseUrl}${path}`, { method, headers: bearer(token) });
        assertError(answer, 404, 'job_not_found');
        assert.ok(!answer.bytes.toString().includes('owner'), `${who} ${method} ${path} says nothing about the owner`);
      }
      const list = await request(`${system.baseUrl}/api/jobs?limit=100`, { headers: bearer(token) });
      assert.ok(!list.body.jobs.some((j: { jobId: string }) => j.jobId === jobId), `${who} does not list it`);
      const socket = await openSocket(`${system.baseUrl.replace('http', 'ws')}/ws?token=${token}`);
      await socket.next((m) => m.type === 'ready');
      socket.ws.send(JSON.stringify({ type: 'subscribe', jobId }));
      const refused = await socket.next((m) => m.type === 'error');
      assert.deepEqual([refused.code, refused.status, refused.jobId], ['job_not_found', 404, jobId]);
      socket.ws.send(JSON.stringify({ type: 'cancel', jobId }));
      assert.equal((await socket.next((m) => m.type === 'error' && m.code === 'job_not_found' && m !== refused)).status, 404);
      assert.ok(!socket.messages.some((m: any) => m.type === 'event'), `${who} saw no event`);
      socket.ws.close();
    }
    // The owner still can: the job was neither canceled nor touched.
    const own = await request(`${system.baseUrl}/api/jobs/${jobId}`, { headers: bearer(owner) });
    assert.equal(own.status, 200);
    const list = await request(`${system.baseUrl}/api/jobs`, { headers: bearer(owner) });
    assert.ok(list.body.jobs.some((j: { jobId: string }) => j.jobId === jobId));
  });
});
