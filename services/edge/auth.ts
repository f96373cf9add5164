/**
 * JWT checks with jose. HS256 with JWT_SECRET by default; RS256/ES256 through a JWKS file or
 * URL. Each key type accepts only its own algorithms, so a token cannot switch an RSA public
 * key into an HMAC secret (algorithm confusion), and jose refuses alg "none".
 */
import { readFileSync } from 'node:fs';
import { createLocalJWKSet, createRemoteJWKSet, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import type { Config } from '../shared/config.js';
import { AppError } from '../shared/errors.js';
import type { Owner } from '../shared/schema-types.js';

export interface Authenticator {
  verify(token: string | undefined): Promise<Owner>;
}

const unauthorized = (code: string, message: string) => new AppError(401, code, message, { retryable: false });

export function createAuthenticator(config: Config): Authenticator {
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
  return {
    async verify(token) {
      if (!token) throw unauthorized('auth_required', 'a bearer token is required (Authorization: Bearer <JWT>)');
      let payload: JWTPayload;
      try {
        const verified = await jwtVerify(token, key as Uint8Array, {
          algorithms,
          clockTolerance: config.jwtClockToleranceS,
          ...(config.jwtIssuer ? { issuer: config.jwtIssuer } : {}),
          ...(config.jwtAudience ? { audience: config.jwtAudience } : {}),
        });
        payload = verified.payload;
      } catch (error) {
        if (error instanceof errors.JWTExpired) throw unauthorized('token_expired', 'the token has expired');
        if (error instanceof errors.JWTClaimValidationFailed) throw unauthorized('token_invalid', `token claim check failed: ${error.message}`);
        if (error instanceof errors.JOSEAlgNotAllowed) throw unauthorized('token_invalid', 'the token\'s algorithm is not accepted');
        throw unauthorized('token_invalid', 'the token is not valid');
      }
      if (typeof payload.sub !== 'string' || payload.sub.length === 0) throw unauthorized('token_invalid', 'the token has no subject (sub)');
      const owner: Owner = { sub: payload.sub.slice(0, 256) };
      const tenant = payload[config.jwtTenantClaim];
      if (typeof tenant === 'string' && tenant) owner.tenant = tenant.slice(0, 256);
      return owner;
    },
  };
}

/** The bearer token of an Authorization header, if any. */
export function bearerToken(header: string | undefined): string | undefined {
  const match = /^Bearer\s+(\S+)$/i.exec(header ?? '');
  return match?.[1];
}

export const sameOwner = (a: Owner, b: Owner) => a.sub === b.sub && (a.tenant ?? '') === (b.tenant ?? '');
