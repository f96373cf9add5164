#!/usr/bin/env node
/**
 * `npm run models -- <command>`: manage the ONNX models in MODELS_DIR.
 *
 *   list                         every manifest model: installed / missing / corrupt / unverified
 *   fetch <id...> | --all | --task <task>
 *                                download, resuming a .part, verifying sha256; skips good installed copies
 *   verify [id...]               re-hash installed models; exit 1 when any is corrupt
 *
 * Options: --models-dir <dir> (MODELS_DIR), --manifest <file> (MODELS_MANIFEST),
 * --base-url <url> (MODELS_BASE_URL: download <url>/<file> instead of the manifest's addresses),
 * --allow-unpinned, --force, --retries <n>, --json (list/verify).
 * Exit status: 0 ok, 1 some model failed, 2 bad usage.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../lib/shared/config.js';
import { AppError, hasErrorCode } from '../lib/shared/errors.js';
import { defaultManifestPath, loadManifest, modelPath, type ModelEntry, type ModelsManifest } from '../lib/models/manifest.js';
import { fetchModel, modelStatus, progressBar } from '../lib/models/fetch.js';
import { isEntryPoint } from '../lib/shared/lifecycle.js';

const USAGE = `usage: npm run models -- <list|fetch|verify> [ids...] [options]
  list                          show each model's state in MODELS_DIR
  fetch <ids...>|--all|--task T download models (resumable, sha256-verified)
  verify [ids...]               re-check installed models' checksums
options: --models-dir DIR  --manifest FILE  --base-url URL  --allow-unpinned  --force  --retries N  --json`;

class UsageError extends Error {}

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        'models-dir': { type: 'string' },
        manifest: { type: 'string' },
        'base-url': { type: 'string' },
        'allow-unpinned': { type: 'boolean', default: false },
        force: { type: 'boolean', default: false },
        all: { type: 'boolean', default: false },
        task: { type: 'string' },
        retries: { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command, ...ids] = positionals;
  if (values.help || !command) {
    (values.help ? process.stdout : process.stderr).write(`${USAGE}\n`);
    return values.help ? 0 : 2;
  }
  const config = loadConfig();
  const modelsDir = path.resolve(values['models-dir'] ?? config.modelsDir);
  try {
    const manifest = loadManifest(values.manifest ?? defaultManifestPath());
    switch (command) {
      case 'list':
        return await list(manifest, modelsDir, values.json);
      case 'verify':
        return await verify(select(manifest, ids, { all: ids.length === 0 }), modelsDir, values.json);
      case 'fetch': {
        const retries = values.retries === undefined ? 3 : Number(values.retries);
        if (!Number.isInteger(retries) || retries < 0) throw new UsageError(`--retries must be a whole number, got "${values.retries}"`);
        const entries = select(manifest, ids, { all: values.all, task: values.task });
        if (entries.length === 0) throw new UsageError('fetch needs model ids, --all or --task <task>');
        return await fetchAll(entries, modelsDir, {
          baseUrl: values['base-url'] ?? (config.modelsBaseUrl || undefined),
          allowUnpinned: values['allow-unpinned'],
          force: values.force,
          retries,
        });
      }
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`${error.message}\n${USAGE}\n`);
      return 2;
    }
    const message = error instanceof AppError ? `${error.code}: ${error.message}` : (error as Error).message;
    process.stderr.write(`error: ${message}\n`);
    return hasErrorCode(error, 'unknown_model') ? 2 : 1;
  }
}

function select(manifest: ModelsManifest, ids: string[], options: { all?: boolean; task?: string }): ModelEntry[] {
  if (options.task) {
    const tasks = [...new Set(manifest.models.map((m) => m.task))];
    if (!tasks.includes(options.task as ModelEntry['task'])) throw new UsageError(`unknown task "${options.task}"; tasks: ${tasks.join(', ')}`);
  }
  const unknown = ids.filter((id) => !manifest.models.some((m) => m.id === id));
  if (unknown.length > 0) throw new UsageError(`unknown model(s): ${unknown.join(', ')}; known: ${manifest.models.map((m) => m.id).join(', ')}`);
  return manifest.models.filter((m) => options.all || ids.includes(m.id) || (options.task !== undefined && m.task === options.task));
}

async function list(manifest: ModelsManifest, modelsDir: string, json: boolean): Promise<number> {
  const rows = [];
  for (const entry of manifest.models) {
    const state = await modelStatus(entry, modelsDir);
    rows.push({ id: entry.id, task: entry.task, status: state.status, bytes: entry.bytes, pinned: entry.pinned, commercialUse: entry.commercialUse, licence: entry.licence, file: modelPath(entry, modelsDir) });
  }
  if (json) {
    process.stdout.write(`${JSON.stringify({ modelsDir, models: rows }, null, 2)}\n`);
    return 0;
  }
  process.stdout.write(`models in ${modelsDir}\n`);
  const width = Math.max(...rows.map((r) => r.id.length));
  for (const r of rows) {
    const size = r.bytes === null ? '?' : `${(r.bytes / 1048576).toFixed(1)} MB`;
    const notes = [r.pinned ? '' : 'unpinned', r.commercialUse ? '' : 'non-commercial'].filter(Boolean).join(', ');
    process.stdout.write(`${r.id.padEnd(width)}  ${r.status.padEnd(10)}  ${r.task.padEnd(16)}  ${size.padStart(9)}${notes ? `  (${notes})` : ''}\n`);
  }
  return 0;
}

async function verify(entries: ModelEntry[], modelsDir: string, json: boolean): Promise<number> {
  let failed = 0;
  const rows = [];
  for (const entry of entries) {
    const state = await modelStatus(entry, modelsDir);
    if (state.status === 'corrupt') failed++;
    rows.push({ id: entry.id, status: state.status, sha256: state.sha256 ?? null });
    if (!json) process.stdout.write(`${entry.id}: ${state.status}${state.status === 'corrupt' ? ` (sha256 ${state.sha256 ?? 'n/a'}, expected ${entry.sha256})` : ''}\n`);
  }
  if (json) process.stdout.write(`${JSON.stringify({ modelsDir, models: rows }, null, 2)}\n`);
  return failed > 0 ? 1 : 0;
}

async function fetchAll(entries: ModelEntry[], modelsDir: string,
  options: { baseUrl?: string; allowUnpinned: boolean; force: boolean; retries: number }): Promise<number> {
  const rows: { id: string; result: string; why: string }[] = [];
  const unreachable = new Set<string>();
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  process.once('SIGINT', onSignal);
  try {
    for (const entry of entries) {
      try {
        const outcome = await fetchModel(entry, {
          modelsDir, ...options, progress: progressBar(process.stderr), say: (line) => process.stderr.write(`${line}\n`), signal: controller.signal,
        });
        rows.push({ id: entry.id, result: outcome === 'downloaded' ? 'installed' : 'already installed', why: entry.commercialUse ? '' : `non-commercial licence (${entry.licence})` });
      } catch (error) {
        const code = error instanceof AppError ? error.code : 'error';
        if (hasErrorCode(error, 'offline')) unreachable.add(String((error.details as { host?: string } | undefined)?.host));
        const why = hasErrorCode(error, 'unpinned_model') ? 'unpinned_model: no pinned sha256 (no official checksum known): --allow-unpinned fetches it unverified'
          : hasErrorCode(error, 'offline') ? error.message
            : `${code}: ${(error as Error).message.replace(`${entry.id}: `, '')}`;
        rows.push({ id: entry.id, result: 'failed', why });
        process.stderr.write(`${entry.id}: failed: ${why}\n`);
        if (controller.signal.aborted) break;
      }
    }
  } finally {
    process.off('SIGINT', onSignal);
  }
  // The summary: one row per model asked for, then what to do about failures.
  const width = Math.max(5, ...rows.map((r) => r.id.length));
  process.stdout.write(`\n${'MODEL'.padEnd(width)}  ${'RESULT'.padEnd(17)}  WHY\n`);
  for (const r of rows) process.stdout.write(`${r.id.padEnd(width)}  ${r.result.padEnd(17)}  ${r.why}`.trimEnd() + '\n');
  const failed = rows.filter((r) => r.result === 'failed').length;
  process.stdout.write(`${rows.length - failed} of ${rows.length} installed in ${modelsDir}\n`);
  if (unreachable.size > 0) {
    // Said once, however many models it hit.
    process.stderr.write(`\nThis machine cannot reach ${[...unreachable].join(', ')} (offline?). Either point MODELS_DIR at a folder that already has the models\n`
      + `(for example MODELS_DIR=../shared/models npm start), or set MODELS_BASE_URL to a mirror that serves <base>/<task>/<file>.onnx\n`
      + `(sha256 is still checked). Files that were partly downloaded resume on the next run.\n`);
  }
  return failed > 0 ? 1 : 0;
}

// Run when executed directly (not when a test imports main()).
if (isEntryPoint(import.meta.url) || process.argv[1]?.endsWith('/cli/models.js')) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}
