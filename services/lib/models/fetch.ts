/**
 * Downloading models into MODELS_DIR: resumable (HTTP Range onto a .part file), verified
 * (size and SHA-256 against the manifest; a mismatch deletes the .part and fails), atomic (the
 * .part is renamed into place only after it verified). Used only by the `models` CLI: services
 * never download at run time.
 */
import { createWriteStream, existsSync, mkdirSync, readdirSync, renameSync, rmSync, rmdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AppError, appError } from '../shared/errors.js';
import { modelPath, type ModelEntry } from './manifest.js';
import { sha256File } from './runtime.js';

export type ModelStatus = 'installed' | 'missing' | 'corrupt' | 'unverified';

/**
 * installed: present and matching its pin; unverified: present but the manifest has no pin;
 * corrupt: present with the wrong size or checksum; missing: absent.
 */
export async function modelStatus(entry: ModelEntry, modelsDir: string): Promise<{ status: ModelStatus; sha256?: string; bytes?: number }> {
  const file = modelPath(entry, modelsDir);
  if (!existsSync(file)) return { status: 'missing' };
  const bytes = statSync(file).size;
  if (entry.bytes !== null && bytes !== entry.bytes) return { status: 'corrupt', bytes };
  const sha256 = await sha256File(file);
  if (entry.sha256 === null) return { status: 'unverified', sha256, bytes };
  return { status: sha256 === entry.sha256 ? 'installed' : 'corrupt', sha256, bytes };
}

export interface ProgressReporter {
  start(id: string, total: number | null, resumedFrom: number): void;
  update(received: number): void;
  done(): void;
}

export interface FetchOptions {
  modelsDir: string;
  /** Download <baseUrl>/<entry.file> instead of the manifest's addresses (a mirror, or a test server). */
  baseUrl?: string;
  /** Download models whose manifest entry has no checksum. */
  allowUnpinned?: boolean;
  /** Download even when an installed copy verifies. */
  force?: boolean;
  /** Extra attempts after an interrupted transfer, each resuming where the last stopped. */
  retries?: number;
  progress?: ProgressReporter;
  say?: (line: string) => void;
  signal?: AbortSignal;
}

export type FetchOutcome = 'downloaded' | 'already_installed';

/** Fetches one model. Throws AppError with a code the CLI prints (no_download_url, unpinned_model, checksum_mismatch, download_failed). */
export async function fetchModel(entry: ModelEntry, options: FetchOptions): Promise<FetchOutcome> {
  const say = options.say ?? (() => {});
  const target = modelPath(entry, options.modelsDir);
  if (!options.force) {
    const current = await modelStatus(entry, options.modelsDir);
    if (current.status === 'installed' || current.status === 'unverified') return 'already_installed';
    if (current.status === 'corrupt') say(`${entry.id}: installed copy is corrupt, downloading it again`);
  }
  if (!entry.pinned && !options.allowUnpinned) {
    throw appError('unpinned_model',
      `${entry.id} has no pinned sha256 in the manifest, so its download cannot be verified; pass --allow-unpinned to fetch it anyway`);
  }
  const urls: string[] = options.baseUrl ? [`${options.baseUrl.replace(/\/+$/, '')}/${entry.file}`] : entry.urls;
  if (urls.length === 0) {
    throw appError('no_download_url', `${entry.id} has no download address${entry.origin ? ` (${entry.origin})` : ''}; place ${entry.file} under ${options.modelsDir} by hand`);
  }
  const createdDir = mkdirSync(path.dirname(target), { recursive: true });
  const part = `${target}.part`;
  try {
    await downloadAll(urls, part, entry, options, say);
  } catch (error) {
    // Keep a .part with bytes (the next run resumes it); leave no empty file or folder behind.
    if (existsSync(part) && statSync(part).size === 0) rmSync(part, { force: true });
    if (createdDir) removeEmptyDirs(path.dirname(target), path.dirname(createdDir));
    throw error;
  }
  renameSync(part, target);
  return 'downloaded';
}

/** Removes `dir` and its parents up to (not including) `stop` while they are empty. */
function removeEmptyDirs(dir: string, stop: string): void {
  for (let current = dir; current.startsWith(stop) && current !== stop; current = path.dirname(current)) {
    try {
      if (readdirSync(current).length > 0) return;
      rmdirSync(current);
    } catch {
      return;
    }
  }
}

const UNREACHABLE = new Set(['ENOTFOUND', 'EAI_AGAIN', 'ECONNREFUSED', 'ENETUNREACH', 'EHOSTUNREACH', 'ENETDOWN']);

/** The error code when a download failed because the host cannot be reached at all. */
function unreachableCode(error: unknown): string | undefined {
  const cause = (error as { cause?: { code?: string; errors?: { code?: string }[] } })?.cause;
  const code = cause?.code ?? cause?.errors?.[0]?.code;
  return code && UNREACHABLE.has(code) ? code : undefined;
}

async function downloadAll(urls: string[], part: string, entry: ModelEntry, options: FetchOptions, say: (line: string) => void): Promise<void> {
  let lastError: unknown;
  for (const url of urls) {
    const attempts = 1 + (options.retries ?? 3);
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        await downloadTo(url, part, entry, options);
        lastError = undefined;
        break;
      } catch (error) {
        lastError = error;
        if (error instanceof AppError && (!error.retryable || refusedByServer(error))) break;
        const unreachable = unreachableCode(error);
        if (unreachable) {
          // No route, no name, nobody listening: retrying in 200 ms will not change that.
          lastError = appError('offline', `cannot reach ${new URL(url).host} (${unreachable})`, { details: { host: new URL(url).host, code: unreachable }, cause: error });
          break;
        }
        if (options.signal?.aborted) throw error;
        const have = existsSync(part) ? statSync(part).size : 0;
        const next = attempt >= attempts ? '' : have > 0 ? `; resuming from byte ${have}` : '; retrying';
        say(`${entry.id}: ${describeNetworkError(error)}${next}`);
        if (attempt < attempts) await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
      }
    }
    if (lastError === undefined) break;
  }
  if (lastError !== undefined) {
    throw lastError instanceof AppError ? lastError
      : appError('download_failed', `download failed: ${describeNetworkError(lastError)}${existsSync(part) && statSync(part).size > 0 ? '; run the command again to resume' : ''}`, { cause: lastError });
  }
  await verifyPart(part, entry);
}

/** The download server answered a 4xx other than 429: the same request will be refused again. */
function refusedByServer(error: AppError): boolean {
  const httpStatus = (error.details as { httpStatus?: number } | undefined)?.httpStatus;
  return httpStatus !== undefined && httpStatus < 500 && httpStatus !== 429;
}

/** fetch() says only "fetch failed"; the reason (ENOTFOUND, ECONNRESET...) is in its cause. */
function describeNetworkError(error: unknown): string {
  const message = (error as Error)?.message ?? String(error);
  const cause = (error as { cause?: { code?: string; message?: string } })?.cause;
  return cause ? `${message} (${cause.code ?? cause.message})` : message;
}

/** One HTTP attempt: resumes from the .part's size with a Range request when it has bytes. */
async function downloadTo(url: string, part: string, entry: ModelEntry, options: FetchOptions): Promise<void> {
  let have = existsSync(part) ? statSync(part).size : 0;
  if (entry.bytes !== null && have > entry.bytes) {
    rmSync(part);
    have = 0;
  }
  if (entry.bytes !== null && have === entry.bytes) return; // complete from an earlier run; verified by the caller
  const headers: Record<string, string> = { 'user-agent': 'photolab-models/1' };
  if (have > 0) headers.range = `bytes=${have}-`;
  const response = await fetch(url, { headers, redirect: 'follow', signal: options.signal });
  if (response.status === 416) {
    // The server has nothing past our bytes: the .part is complete or from another file; verification decides.
    await response.body?.cancel();
    return;
  }
  if (!response.ok || !response.body) {
    await response.body?.cancel();
    throw appError('download_failed', `${entry.id}: ${url} answered HTTP ${response.status}`, { details: { httpStatus: response.status } });
  }
  const resumed = response.status === 206 && have > 0;
  if (!resumed) have = 0; // the server ignored the range: start over
  const length = Number(response.headers.get('content-length') ?? NaN);
  const total = entry.bytes ?? (Number.isFinite(length) ? length + have : null);
  options.progress?.start(entry.id, total, have);
  let received = have;
  const body = Readable.fromWeb(response.body as import('node:stream/web').ReadableStream<Uint8Array>);
  body.on('data', (chunk: Buffer) => {
    received += chunk.length;
    options.progress?.update(received);
  });
  try {
    await pipeline(body, createWriteStream(part, { flags: resumed ? 'a' : 'w' }));
  } finally {
    options.progress?.done();
  }
  if (Number.isFinite(length) && received - have < length) {
    throw new Error(`connection closed after ${received} of ${total ?? '?'} bytes`);
  }
}

async function verifyPart(part: string, entry: ModelEntry): Promise<void> {
  const bytes = statSync(part).size;
  const sha256 = await sha256File(part);
  if ((entry.bytes !== null && bytes !== entry.bytes) || (entry.sha256 !== null && sha256 !== entry.sha256)) {
    rmSync(part, { force: true });
    throw appError('checksum_mismatch',
      `${entry.id}: downloaded file does not match the manifest (got ${bytes} bytes, sha256 ${sha256}; expected ${entry.bytes ?? '?'} bytes, sha256 ${entry.sha256}); deleted it`);
  }
}

/** A progress bar on a TTY (redrawn in place), or a line every 10% otherwise (logs, CI, tests). */
export function progressBar(stream: NodeJS.WriteStream = process.stderr): ProgressReporter {
  let id = '';
  let total: number | null = null;
  let startedAt = 0;
  let startBytes = 0;
  let lastDecile = -1;
  let lastDraw = 0;
  const mb = (n: number) => (n / 1048576).toFixed(1);
  return {
    start(modelId, totalBytes, resumedFrom) {
      id = modelId;
      total = totalBytes;
      startedAt = Date.now();
      startBytes = resumedFrom;
      lastDecile = -1;
      if (resumedFrom > 0) stream.write(`${id}: resuming at ${mb(resumedFrom)} MB\n`);
    },
    update(received) {
      const pct = total ? Math.min(100, Math.floor((received / total) * 100)) : null;
      if (stream.isTTY) {
        const now = Date.now();
        if (now - lastDraw < 100 && pct !== 100) return;
        lastDraw = now;
        const speed = (received - startBytes) / Math.max(0.001, (now - startedAt) / 1000);
        const width = 30;
        const filled = pct === null ? 0 : Math.round((pct / 100) * width);
        const bar = pct === null ? '?'.repeat(width) : '#'.repeat(filled) + '-'.repeat(width - filled);
        stream.write(`\r${id} [${bar}] ${pct ?? '?'}% ${mb(received)}/${total ? mb(total) : '?'} MB ${mb(speed)} MB/s   `);
      } else if (pct !== null) {
        const decile = Math.floor(pct / 10);
        if (decile !== lastDecile) {
          lastDecile = decile;
          stream.write(`${id}: ${pct}% (${received}/${total} bytes)\n`);
        }
      }
    },
    done() {
      if (stream.isTTY) stream.write('\n');
    },
  };
}
