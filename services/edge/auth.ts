/**
 * JWT checks with jose. HS256 with JWT_SECRET by default; RS256/ES256 through a JWKS file or
 * URL. Each key type accepts only its own algorithms, so a token cannot switch an RSA public
 * key into an HMAC secret (algorithm confusion), and jose refuses alg "none". Tokens must carry
 * exp (JWT_REQUIRE_EXP, on by default): one without it would be valid forever.
 *
 * A token that passed is remembered (by its exact text) until it expires, for at most
 * VERIFIED_TTL_MS: clients send the same token with every request, and the signature check was
 * ~10% of the edge's CPU per small upload (bench: ingest profile). Every claim checked once stays
 * true until exp, which is re-checked on each use; the short cap bounds how long a key removed
 * from the JWKS keeps working for tokens it already signed.
 */
import { readFileSync } from 'node:fs';
import { createLocalJWKSet, createRemoteJWKSet, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import type { Config } from '../lib/shared/config.js';
import { appError } from '../lib/shared/errors.js';
import type { Owner } from '../lib/shared/schema-types.js';

export interface Authenticator {
  verify(token: string | undefined): Promise<Owner>;
}

const VERIFIED_TTL_MS = 60_000;
const VERIFIED_MAX = 10_000;

export function createAuthenticator(config: Config, now: () => number = Date.now): Authenticator {
  let key: Uint8Array | JWTVerifyGetKey;
  let algorithms: string[];
  if (config.jwksFile) {
    key = createLocalJWKSet(JSON.parse(readFileSync(config.jwksFile, 'utf8')));
    algorithms = ['RS256', 'ES256'];
  } else if (config.jwksUrl) {
    key = createRemoteJWKSet(new URL(config.jwksUrl));
    algorithms = ['RS256', 'ES256'];
  } else {
    if (!config.jwtSecret) throw new Error('JWT_SECRET (or JWKS_FILE / JWKS_URL) must be set for the edge');
    key = new TextEncoder().encode(config.jwtSecret);
    algorithms = ['HS256'];
  }
  const passed = new Map<string, { owner: Owner; until: number }>();
  return {
    async verify(token) {
      if (!token) throw appError('auth_required', 'a bearer token is required (Authorization: Bearer <JWT>)');
      const known = passed.get(token);
      if (known && now() < known.until) return known.owner;
      passed.delete(token);
      const { owner, expiresAt } = await check(token);
      if (passed.size >= VERIFIED_MAX) passed.delete(passed.keys().next().value!); // oldest first
      passed.set(token, { owner, until: Math.min(now() + VERIFIED_TTL_MS, expiresAt) });
      return owner;
    },
  };

  async function check(token: string): Promise<{ owner: Owner; expiresAt: number }> {
    let payload: JWTPayload;
    try {
      const verified = await jwtVerify(token, key as Uint8Array, {
        algorithms,
        clockTolerance: config.jwtClockToleranceS,
        currentDate: new Date(now()),
        // A token without exp never expires; refused unless JWT_REQUIRE_EXP=false (legacy tokens).
        ...(config.jwtRequireExp ? { requiredClaims: ['exp'] } : {}),
        ...(config.jwtIssuer ? { issuer: config.jwtIssuer } : {}),
        ...(config.jwtAudience ? { audience: config.jwtAudience } : {}),
      });
      payload = verified.payload;
    } catch (error) {
      if (error instanceof errors.JWTExpired) throw appError('token_expired', 'the token has expired');
      if (error instanceof errors.JWTClaimValidationFailed && error.claim === 'exp' && error.reason === 'missing') {
        throw appError('token_invalid', 'the token has no expiry (exp); tokens must expire (JWT_REQUIRE_EXP)');
      }
      if (error instanceof errors.JWTClaimValidationFailed) throw appError('token_invalid', `token claim check failed: ${error.message}`);
      if (error instanceof errors.JOSEAlgNotAllowed) throw appError('token_invalid', 'the token\'s algorithm is not accepted');
      throw appError('token_invalid', 'the token is not valid');
    }
    if (typeof payload.sub !== 'string' || payload.sub.length === 0) throw appError('token_invalid', 'the token has no subject (sub)');
    const owner: Owner = { sub: payload.sub.slice(0, 256) };
    const tenant = payload[config.jwtTenantClaim];
    if (typeof tenant === 'string' && tenant) owner.tenant = tenant.slice(0, 256);
    // Valid until exp plus the leeway jwtVerify allowed; no exp: only the cache's own cap.
    const expiresAt = typeof payload.exp === 'number' ? (payload.exp + config.jwtClockToleranceS) * 1000 : Infinity;
    return { owner, expiresAt };
  }
}

/** The bearer token of an Authorization header, if any. */
export function bearerToken(header: string | undefined): string | undefined {
  const match = /^Bearer\s+(\S+)$/i.exec(header ?? '');
  return match?.[1];
}

export const sameOwner = (a: Owner, b: Owner) => a.sub === b.sub && (a.tenant ?? '') === (b.tenant ?? '');
