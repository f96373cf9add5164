/**
 * `npm run load -- --jobs 500 --concurrency 20 --pipeline upscale [--mode http|ws]`: loads a
 * running edge (loopback by default) and prints throughput, latency percentiles and what
 * every job came to. The token: --token, $TOKEN, or minted per caller from $JWT_SECRET.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { runLoad, type LoadReport } from './load.js';

export const PRESETS: Record<string, unknown> = {
  copy: [{ step: 'decode' }, { step: 'encode' }],
  upscale: [{ step: 'decode' }, { step: 'upscale', params: { factor: 2 } }, { step: 'encode' }],
  detect: [{ step: 'decode' }, { step: 'detect_objects' }, { step: 'encode' }],
};

const HELP = `npm run load -- [options]
  --url URL            edge base URL (default http://127.0.0.1:$HTTP_PORT or :8080; loopback only unless --allow-remote)
  --mode http|ws       submit over HTTP (multipart, results over WebSocket) or over the WebSocket (default http)
  --jobs N             jobs to submit (default 100)
  --concurrency N      jobs in flight at once (default 10)
  --callers N          distinct callers (token subjects) when minting tokens (default: --concurrency)
  --pipeline P         ${Object.keys(PRESETS).join(' | ')} | a JSON pipeline (default copy)
  --image FILE         the image (default: a generated 160x120 JPEG)
  --token JWT          one token for every caller (default $TOKEN; else minted from $JWT_SECRET)
  --timeout-s S        bound on the whole run; jobs not done by then count as lost (default 300)
  --no-retry           a 429/503 refusal ends that job (default: wait Retry-After and submit again)
  --json               print the report as JSON
  --allow-remote       allow a non-loopback URL`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' }, mode: { type: 'string', default: 'http' }, jobs: { type: 'string', default: '100' },
      concurrency: { type: 'string', default: '10' }, callers: { type: 'string' }, pipeline: { type: 'string', default: 'copy' },
      image: { type: 'string' }, token: { type: 'string' }, 'timeout-s': { type: 'string', default: '300' },
      'no-retry': { type: 'boolean', default: false }, json: { type: 'boolean', default: false }, 'allow-remote': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    return;
  }
  if (values.mode !== 'http' && values.mode !== 'ws') throw new Error('--mode is http or ws');
  const pipeline = PRESETS[values.pipeline!] ?? JSON.parse(values.pipeline!);
  const image = values.image ? readFileSync(values.image) : await sharp({ create: { width: 160, height: 120, channels: 3, background: '#6080a0' } }).jpeg().toBuffer();
  const concurrency = Number(values.concurrency);
  const report = await runLoad({
    url: values.url ?? `http://127.0.0.1:${process.env.HTTP_PORT || 8080}`,
    mode: values.mode,
    jobs: Number(values.jobs),
    concurrency,
    callers: Number(values.callers ?? concurrency),
    pipeline,
    image,
    token: values.token ?? (process.env.TOKEN || undefined),
    jwtSecret: process.env.JWT_SECRET || undefined,
    timeoutMs: Number(values['timeout-s']) * 1000,
    retryRefused: !values['no-retry'],
    allowRemote: values['allow-remote'],
  });
  console.log(values.json ? JSON.stringify(report, null, 2) : formatReport(report));
  if (report.lost > 0 || report.duplicated > 0) process.exitCode = 1;
}

export function formatReport(r: LoadReport): string {
  const kv = (m: Record<string, number>) => Object.entries(m).map(([k, v]) => `${k}: ${v}`).join(', ') || 'none';
  return [
    `mode ${r.mode}: ${r.submitted} submitted, ${r.admitted} admitted, ${r.completed} completed in ${r.wallS.toFixed(1)} s (${r.throughputPerS.toFixed(1)} jobs/s)`,
    `latency ms (submit to result): p50 ${r.latencyMs.p50}  p90 ${r.latencyMs.p90}  p99 ${r.latencyMs.p99}  max ${r.latencyMs.max}  mean ${r.latencyMs.mean}`,
    `failed: ${kv(r.failed)}`,
    `refused: ${kv(r.refused)} (without Retry-After: ${r.refusedWithoutRetryAfter})`,
    `duplicated: ${r.duplicated}  lost: ${r.lost}  reconnects: ${r.reconnects}  submit retries: ${r.submitRetries}`,
  ].join('\n');
}

if (process.argv[1]?.endsWith('load/main.js')) {
  main().catch((error) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(2);
  });
}
