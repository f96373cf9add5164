/**
 * Small helpers shared by the bench sections: paths, statistics, tables, test photos,
 * machine description. Benchmarks print figures; nothing here asserts a timing.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { FIXTURES_DIR, MODELS_DIR, REPO_ROOT } from '../../test/helpers/paths.js';

// Where the shared models and photos are: the same rule as the tests (MODELS_DIR, FIXTURES_DIR).
export { FIXTURES_DIR, MODELS_DIR, REPO_ROOT };

export const DIST = path.join(REPO_ROOT, 'dist');
export const fixture = (name: string) => path.join(FIXTURES_DIR, name);

export const now = () => performance.now();

/** CPU time (user + system) a process has used so far, in ms (from /proc). */
export function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // clock ticks of 1/100 s
}
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  // Nearest rank: p95 of 3 samples is the largest one (said so in the report).
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1]!;
}

export interface Summary { n: number; p50: number; p95: number; mean: number; min: number; max: number }
export function summarize(values: number[]): Summary {
  const mean = values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);
  return { n: values.length, p50: percentile(values, 50), p95: percentile(values, 95), mean, min: Math.min(...values), max: Math.max(...values) };
}

export function ms(value: number, digits?: number): string {
  if (!Number.isFinite(value)) return 'n/a';
  const d = digits ?? (Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2);
  return value.toFixed(d);
}
export const fixed = (value: number, digits = 2) => (Number.isFinite(value) ? value.toFixed(digits) : 'n/a');
export const mb = (bytes: number) => bytes / (1024 * 1024);

/** A markdown table. */
export function table(header: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.map(String).join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/** A JPEG of about `megapixels` MP (4:3) made from a fixture photo (resized with lanczos3). */
export async function photo(megapixels: number, options: { source?: string; quality?: number } = {}): Promise<{ bytes: Buffer; width: number; height: number }> {
  const width = Math.round(Math.sqrt((megapixels * 1e6 * 4) / 3));
  const height = Math.round((width * 3) / 4);
  const bytes = await sharp(fixture(options.source ?? 'dog.jpg')).resize(width, height, { fit: 'fill' }).jpeg({ quality: options.quality ?? 90 }).toBuffer();
  return { bytes, width, height };
}

/** A raw RGB frame of about `megapixels` MP, real photo content. */
export async function rawFrame(megapixels: number): Promise<{ width: number; height: number; channels: 3; data: Buffer }> {
  const width = Math.round(Math.sqrt((megapixels * 1e6 * 4) / 3));
  const height = Math.round((width * 3) / 4);
  const data = await sharp(fixture('dog.jpg')).resize(width, height, { fit: 'fill' }).removeAlpha().raw().toBuffer();
  return { width, height, channels: 3, data };
}

export function machine(): Record<string, string> {
  const cpus = os.cpus();
  const nats = spawnSync('nats-server', ['--version'], { encoding: 'utf8' });
  let ort = '';
  let sharpVersion = '';
  try {
    ort = JSON.parse(readFileSync(path.join(REPO_ROOT, 'node_modules/onnxruntime-node/package.json'), 'utf8')).version;
    sharpVersion = JSON.parse(readFileSync(path.join(REPO_ROOT, 'node_modules/sharp/package.json'), 'utf8')).version;
  } catch { /* optional */ }
  let kernel = os.release();
  try { kernel = execFileSync('uname', ['-srm'], { encoding: 'utf8' }).trim(); } catch { /* ignore */ }
  return {
    cpu: `${cpus[0]?.model ?? 'unknown'} x ${cpus.length} (${os.availableParallelism?.() ?? cpus.length} usable)`,
    memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    os: kernel,
    node: process.version,
    'nats-server': (nats.stdout || nats.stderr || 'not found').trim(),
    'onnxruntime-node': ort,
    sharp: sharpVersion,
    gpu: hasGpu() ? 'NVIDIA device present' : 'none',
  };
}

export function hasGpu(): boolean {
  return existsSync('/dev/nvidia0') || spawnSync('sh', ['-c', 'command -v nvidia-smi && nvidia-smi -L'], { encoding: 'utf8' }).status === 0;
}

/** Keeps the bench's own stderr quiet of pino's JSON lines. */
export const silentLog = (() => {
  const log: Record<string, unknown> = {};
  for (const level of ['trace', 'debug', 'info', 'warn', 'error', 'fatal']) log[level] = () => undefined;
  log.child = () => log;
  log.level = 'silent';
  return log as unknown as import('pino').Logger;
})();

export function progress(text: string): void {
  process.stderr.write(`[bench] ${text}\n`);
}
