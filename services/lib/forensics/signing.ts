/**
 * The Ed25519 key that signs job reports (JWS, alg EdDSA, via jose), and the signature format.
 *
 * The key pair is a private JWK in REPORT_SIGNING_KEY_FILE, or by default in
 * DATA_DIR/report-signing-key.jwk.json, generated on first use (created with O_EXCL, so two
 * edges starting on the same DATA_DIR end up with the same key). kid = its RFC 7638 thumbprint.
 *
 * A report is signed over its canonical JSON (keys sorted at every level, no spaces) with the
 * `signature` member left out; the signature is a flattened JWS with a detached payload:
 *   signature: { protected, signature, kid }
 * A verifier recomputes the canonical JSON of the report it holds and checks the JWS over it, so
 * any change of one byte of the report's content fails, as does any change of the signature.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { FlattenedSign, calculateJwkThumbprint, exportJWK, flattenedVerify, generateKeyPair, importJWK, type JWK, type CryptoKey, type KeyObject } from 'jose';

export interface ReportSignature {
  protected: string;
  signature: string;
  kid: string;
}

export interface SigningKey {
  kid: string;
  publicJwk: JWK;
  sign(payload: Uint8Array): Promise<ReportSignature>;
}

/** JSON with keys sorted at every level: the bytes a report's signature covers. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v === undefined ? null : v)).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

/** The bytes a signed report's signature covers: its canonical JSON without `signature`. */
export function signedBytes(report: Record<string, unknown>): Uint8Array {
  const { signature: _s, ...content } = report;
  return new TextEncoder().encode(canonicalJson(content));
}

async function readOrCreateJwk(file: string): Promise<JWK> {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as JWK;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`report signing key ${file} cannot be read: ${(error as Error).message}`);
  }
  const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const jwk = await exportJWK(privateKey);
  mkdirSync(path.dirname(file), { recursive: true });
  try {
    writeFileSync(file, JSON.stringify(jwk), { flag: 'wx', mode: 0o600 });
    return jwk;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return JSON.parse(readFileSync(file, 'utf8')) as JWK; // another process made it first
  }
}

export async function loadSigningKey(options: { keyFile: string; dataDir: string }): Promise<SigningKey> {
  const file = options.keyFile || path.join(options.dataDir, 'report-signing-key.jwk.json');
  const jwk = await readOrCreateJwk(file);
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || !jwk.d) throw new Error(`report signing key ${file} is not an Ed25519 private JWK`);
  const { d: _d, ...publicPart } = jwk;
  const kid = await calculateJwkThumbprint(publicPart);
  const publicJwk: JWK = { ...publicPart, kid, alg: 'EdDSA', use: 'sig' };
  const privateKey = await importJWK({ ...jwk, alg: 'EdDSA' }, 'EdDSA');
  return {
    kid,
    publicJwk,
    async sign(payload) {
      const jws = await new FlattenedSign(payload).setProtectedHeader({ alg: 'EdDSA', kid, typ: 'photolab-report+json' }).sign(privateKey as CryptoKey | KeyObject);
      return { protected: jws.protected!, signature: jws.signature, kid };
    },
  };
}

/**
 * Checks a signed report against a set of public keys (a JWKS): true only when the signature's
 * kid is in the set and the JWS verifies over the report's canonical JSON.
 */
export async function verifyReport(report: Record<string, unknown>, jwks: { keys: JWK[] }): Promise<{ ok: boolean; kid?: string; reason?: string }> {
  const signature = report.signature as ReportSignature | undefined;
  if (!signature?.protected || !signature.signature) return { ok: false, reason: 'the report has no signature' };
  let header: { alg?: string; kid?: string };
  try {
    header = JSON.parse(Buffer.from(signature.protected, 'base64url').toString('utf8'));
  } catch {
    return { ok: false, reason: 'the signature header is not JSON' };
  }
  if (header.alg !== 'EdDSA') return { ok: false, reason: `unexpected algorithm ${header.alg}` };
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  if (!jwk) return { ok: false, kid: header.kid, reason: `no key ${header.kid} in the key set` };
  try {
    const key = await importJWK({ ...jwk, alg: 'EdDSA' }, 'EdDSA');
    const payload = Buffer.from(signedBytes(report)).toString('base64url');
    await flattenedVerify({ protected: signature.protected, signature: signature.signature, payload }, key, { algorithms: ['EdDSA'] });
    return { ok: true, kid: header.kid };
  } catch (error) {
    return { ok: false, kid: header.kid, reason: `signature does not verify: ${(error as Error).message}` };
  }
}
