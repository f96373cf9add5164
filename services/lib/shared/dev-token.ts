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

export function signDevToken(secret: string, sub = 'dev', ttl = '12h'): Promise<string> {
  return new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setIssuedAt().setExpirationTime(ttl)
    .sign(new TextEncoder().encode(secret));
}
