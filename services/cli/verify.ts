/**
 * npm run verify -- report.json result.png [--jwks jwks.json]
 *
 * Offline check of a job report: its signature (EdDSA over the report's canonical JSON) and
 * that the file is the report's result (or its original) by sha256. The public key comes from
 * --jwks (the lab's /.well-known/jwks.json saved beside the report), or else from
 * DATA_DIR/report-signing-key.jwk.json of this installation (its public half). Exit status 0
 * when both hold, 1 when either fails, 2 on a usage error.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { JWK } from 'jose';
import { loadConfig } from '../lib/shared/config.js';
import { verifyReport } from '../lib/forensics/signing.js';

function usage(message: string): never {
  console.error(`${message}\nusage: npm run verify -- report.json <result-or-original-file> [--jwks jwks.json]`);
  process.exit(2);
}

function localKeys(): { keys: JWK[] } | undefined {
  const config = loadConfig();
  const file = config.reportSigningKeyFile || path.join(config.dataDir, 'report-signing-key.jwk.json');
  if (!existsSync(file)) return undefined;
  const { d: _d, ...publicPart } = JSON.parse(readFileSync(file, 'utf8')) as JWK;
  return { keys: [publicPart] };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const jwksAt = args.indexOf('--jwks');
  const jwksFile = jwksAt >= 0 ? args[jwksAt + 1] : undefined;
  if (jwksAt >= 0 && !jwksFile) usage('--jwks needs a file');
  const files = args.filter((_, i) => jwksAt < 0 || (i !== jwksAt && i !== jwksAt + 1));
  if (files.length !== 2) usage('give the report and the image file');
  const [reportFile, imageFile] = files as [string, string];
  const report = JSON.parse(readFileSync(reportFile, 'utf8')) as Record<string, any>;
  let jwks = jwksFile ? (JSON.parse(readFileSync(jwksFile, 'utf8')) as { keys: JWK[] }) : localKeys();
  if (!jwks) usage('no public key: pass --jwks with the lab\'s /.well-known/jwks.json');
  // Keys of a JWKS carry their kid; a bare local key gets its thumbprint as kid.
  if (!jwksFile) {
    const { calculateJwkThumbprint } = await import('jose');
    jwks = { keys: await Promise.all(jwks.keys.map(async (k) => ({ ...k, kid: await calculateJwkThumbprint(k) }))) };
  }
  const signature = await verifyReport(report, jwks);
  const digest = createHash('sha256').update(readFileSync(imageFile)).digest('hex');
  const matches = digest === report.result?.sha256 ? 'result' : digest === report.original?.sha256 ? 'original' : undefined;
  console.log(`signature: ${signature.ok ? `valid (key ${signature.kid})` : `INVALID: ${signature.reason}`}`);
  console.log(`file:      ${matches ? `matches the report's ${matches} (sha256 ${digest})` : `DOES NOT MATCH: sha256 ${digest}, the report's result is ${report.result?.sha256 ?? 'none'}`}`);
  console.log(`job:       ${report.job?.jobId ?? '?'}${report.job?.caseId ? ` in case ${report.job.caseId}` : ''}`);
  process.exit(signature.ok && matches ? 0 : 1);
}

main().catch((error) => {
  console.error(`verify failed: ${(error as Error).message}`);
  process.exit(2);
});
