/** ANONYMOUS_SUBJECT's guards and CORS origin matching (services/edge/anonymous.ts, cors.ts). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { anonymousOwner, checkAnonymousSetting, isLoopbackHost } from '../../services/edge/anonymous.js';
import { originAllowed } from '../../services/edge/cors.js';
import { loadConfig } from '../../services/lib/shared/config.js';
import { createLogger } from '../../services/lib/shared/logger.js';

const log = createLogger('test');
const cfg = (env: Record<string, string>) => loadConfig({ JWT_SECRET: 'x', ...env });

test('ANONYMOUS_SUBJECT is refused on a non-loopback listener unless ANONYMOUS_ANY_HOST', () => {
  assert.throws(() => checkAnonymousSetting(cfg({ ANONYMOUS_SUBJECT: 'desk', HTTP_HOST: '0.0.0.0' }), log), /loopback/);
  assert.throws(() => checkAnonymousSetting(cfg({ ANONYMOUS_SUBJECT: 'desk', HTTP_HOST: '192.168.1.5' }), log), /ANONYMOUS_ANY_HOST/);
  checkAnonymousSetting(cfg({ ANONYMOUS_SUBJECT: 'desk', HTTP_HOST: '0.0.0.0', ANONYMOUS_ANY_HOST: 'true' }), log);
  checkAnonymousSetting(cfg({ ANONYMOUS_SUBJECT: 'desk', HTTP_HOST: '127.0.0.1' }), log);
  checkAnonymousSetting(cfg({ HTTP_HOST: '0.0.0.0' }), log); // off: nothing to check
  for (const host of ['127.0.0.1', '127.1.2.3', '::1', 'localhost']) assert.ok(isLoopbackHost(host), host);
  for (const host of ['0.0.0.0', '::', '10.0.0.1', 'localhost.example.com']) assert.ok(!isLoopbackHost(host), host);
});

test('only a request with no Authorization header, and no foreign browser origin, acts as the subject', () => {
  const on = cfg({ ANONYMOUS_SUBJECT: 'desk', HTTP_HOST: '127.0.0.1', CORS_ORIGINS: 'http://localhost:*' });
  assert.deepEqual(anonymousOwner(on, {}), { sub: 'desk' });
  assert.deepEqual(anonymousOwner(on, { origin: 'http://localhost:5500' }), { sub: 'desk' });
  assert.equal(anonymousOwner(on, { origin: 'http://evil.example' }), undefined);
  assert.equal(anonymousOwner(on, { authorization: 'Bearer nonsense' }), undefined, 'a bad token stays a 401');
  assert.equal(anonymousOwner(on, { authorization: '' }), undefined);
  assert.equal(anonymousOwner(cfg({}), {}), undefined, 'off by default');
});

test('CORS origins: exact, *, and any port with :*', () => {
  assert.ok(originAllowed(['http://localhost:*'], 'http://localhost:5500'));
  assert.ok(originAllowed(['http://localhost:*'], 'http://localhost:8080'));
  assert.ok(!originAllowed(['http://localhost:*'], 'http://localhost.evil.example:80'));
  assert.ok(!originAllowed(['http://localhost:*'], 'http://localhost:80/x'));
  assert.ok(!originAllowed(['http://localhost:*'], 'https://localhost:5500'));
  assert.ok(originAllowed(['http://a.example'], 'http://a.example'));
  assert.ok(!originAllowed(['http://a.example'], 'http://b.example'));
  assert.ok(originAllowed(['*'], 'null'));
});
