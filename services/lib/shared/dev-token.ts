/**
 * Development tokens for the embedded default: `npm start` without JWT_SECRET generates a
 * secret per session and keeps it in DATA_DIR/dev-jwt-secret (mode 0600) so that the CLI,
 * run by the same user on the same machine, can sign tokens without copying one by hand.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { SignJWT } from 'jose';

export const devSecretPath = (dataDir: string) => path.join(dataDir, 'dev-jwt-secret');

/** The secret to sign development tokens with: JWT_SECRET when set, else the session's file. */
export function devSecret(jwtSecret: string, dataDir: string): string | undefined {
  if (jwtSecret) return jwtSecret;
  try {
    return readFileSync(devSecretPath(dataDir), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

export interface DevTokenOptions {
  sub?: string;
  /** Lifetime in seconds (default 12 h). */
  ttlS?: number;
  /** JWT_ISSUER / JWT_AUDIENCE: an edge configured with them checks them, so its tokens carry them. */
  issuer?: string;
  audience?: string;
  /** Issued-at, seconds (default now). */
  now?: number;
}

/** An HS256 token for `sub` (the launcher's, the CLI's, the playground's, the load tool's). */
export function signDevToken(secret: string, options: DevTokenOptions = {}): Promise<string> {
  const now = options.now ?? Math.floor(Date.now() / 1000);
  const jwt = new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(options.sub ?? 'dev').setIssuedAt(now).setExpirationTime(now + (options.ttlS ?? 12 * 3600));
  if (options.issuer) jwt.setIssuer(options.issuer);
  if (options.audience) jwt.setAudience(options.audience);
  return jwt.sign(new TextEncoder().encode(secret));
}
