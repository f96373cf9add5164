/**
 * The authenticator's memory of tokens that passed: it never outlives the token's exp (plus
 * the leeway), a changed token is checked afresh, and each token keeps its own owner.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SignJWT } from 'jose';
import { createAuthenticator } from '../../services/edge/auth.js';
import { loadConfig } from '../../services/lib/shared/config.js';
import { AppError } from '../../services/lib/shared/errors.js';

const SECRET = 'unit-test-secret';
const config = loadConfig({ JWT_SECRET: SECRET, JWT_CLOCK_TOLERANCE_S: '30' });
const sign = (sub: string, expS: number, tenant?: string) =>
  new SignJWT(tenant ? { tenant } : {}).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setIssuedAt(expS - 300).setExpirationTime(expS)
    .sign(new TextEncoder().encode(SECRET));

async function refused(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => error instanceof AppError && error.status === 401 && error.code === code);
}

test('a remembered token stops working when it expires (plus the leeway), not when the memory does', async () => {
  let now = Date.UTC(2026, 0, 1);
  const auth = createAuthenticator(config, () => now);
  const token = await sign('alice', now / 1000 + 120);
  assert.deepEqual(await auth.verify(token), { sub: 'alice' });
  now += 100_000;
  assert.deepEqual(await auth.verify(token), { sub: 'alice' });
  now += 20_000 + 29_000; // 149 s: exp + 29 s, inside the 30 s leeway
  assert.deepEqual(await auth.verify(token), { sub: 'alice' });
  now += 2000; // exp + 31 s
  await refused(auth.verify(token), 'token_expired');
});

test('each token keeps its own owner; a changed signature is checked afresh and refused', async () => {
  const now = Date.now();
  const auth = createAuthenticator(config, () => now);
  const alice = await sign('alice', now / 1000 + 600);
  const bob = await sign('bob', now / 1000 + 600, 'lab-2');
  assert.deepEqual(await auth.verify(alice), { sub: 'alice' });
  assert.deepEqual(await auth.verify(bob), { sub: 'bob', tenant: 'lab-2' });
  assert.deepEqual(await auth.verify(alice), { sub: 'alice' });
  const tampered = `${alice.slice(0, -2)}${alice.endsWith('AA') ? 'BB' : 'AA'}`;
  await refused(auth.verify(tampered), 'token_invalid');
  await refused(auth.verify(undefined), 'auth_required');
});
