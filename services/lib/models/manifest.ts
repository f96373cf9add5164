/**
 * The model manifest (models/manifest.json, or MODELS_MANIFEST): which ONNX files exist, their
 * checksums, where to download them and how to feed them. Validated against
 * schemas/models-manifest.schema.json when loaded; a broken manifest is a deploy error, so it
 * fails loudly rather than letting a stage guess.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../shared/config.js';
import { appError } from '../shared/errors.js';
import type { ModelEntry, ModelTask, ModelsManifest } from '../shared/schema-types.js';
import { describeErrors, schemaValidator } from '../shared/schemas.js';
import { repoRoot } from '../shared/package-info.js';

export type { ModelEntry, ModelTask, ModelsManifest };


/** The manifest file this process uses: MODELS_MANIFEST, else models/manifest.json of the repository. */
export function defaultManifestPath(): string {
  // MODELS_MANIFEST as the process has it when a manifest is first needed (not at import), once.
  if (defaultPath === undefined) {
    const { modelsManifest } = loadConfig();
    defaultPath = modelsManifest ? path.resolve(modelsManifest) : path.join(repoRoot, 'models', 'manifest.json');
  }
  return defaultPath;
}
let defaultPath: string | undefined;

const cache = new Map<string, ModelsManifest>();

/** Reads, validates and caches a manifest. Throws AppError 500 `manifest_invalid` when it is unusable. */
export function loadManifest(file: string = defaultManifestPath()): ModelsManifest {
  const resolved = path.resolve(file);
  const cached = cache.get(resolved);
  if (cached) return cached;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(resolved, 'utf8'));
  } catch (error) {
    throw appError('manifest_invalid', `model manifest ${resolved} cannot be read: ${(error as Error).message}`);
  }
  const manifest = validateManifest(parsed, resolved);
  cache.set(resolved, manifest);
  return manifest;
}

/** Checks a parsed manifest: the JSON Schema plus what a schema cannot say (unique ids and files, pins). */
export function validateManifest(value: unknown, source = 'manifest'): ModelsManifest {
  const validate = schemaValidator<ModelsManifest>('models-manifest.schema.json');
  if (!validate(value)) {
    const issues = describeErrors(validate.errors);
    throw appError('manifest_invalid', `model manifest ${source} is invalid: ${issues.map((i) => `${i.path} ${i.message}`).join('; ')}`,
      { details: issues });
  }
  const problems: string[] = [];
  const ids = new Set<string>();
  const files = new Set<string>();
  for (const entry of value.models) {
    if (ids.has(entry.id)) problems.push(`duplicate id ${entry.id}`);
    if (files.has(entry.file)) problems.push(`duplicate file ${entry.file}`);
    ids.add(entry.id);
    files.add(entry.file);
    if (entry.pinned !== (entry.sha256 !== null)) problems.push(`${entry.id}: pinned must be true exactly when sha256 is given`);
    if (entry.file.split('/').includes('..')) problems.push(`${entry.id}: file must stay inside MODELS_DIR`);
  }
  const defaults = new Map<string, number>();
  for (const entry of value.models) if (entry.default) defaults.set(entry.task, (defaults.get(entry.task) ?? 0) + 1);
  for (const [task, count] of defaults) if (count > 1) problems.push(`${count} default models for task ${task}`);
  if (problems.length > 0) {
    throw appError('manifest_invalid', `model manifest ${source} is invalid: ${problems.join('; ')}`, { details: problems });
  }
  return value;
}

/** The entry of a model id; AppError 400 `unknown_model` naming the known ids otherwise. */
export function findModel(id: string, manifest: ModelsManifest = loadManifest()): ModelEntry {
  const entry = manifest.models.find((m) => m.id === id);
  if (!entry) {
    throw appError('unknown_model', `unknown model "${id}"; known models: ${manifest.models.map((m) => m.id).join(', ')}`);
  }
  return entry;
}

/** The models of one task, in manifest order. */
export function modelsForTask(task: ModelTask, manifest: ModelsManifest = loadManifest()): ModelEntry[] {
  return manifest.models.filter((m) => m.task === task);
}

/** The absolute path of a model's file under a models folder. */
export function modelPath(entry: ModelEntry, modelsDir: string): string {
  return path.join(path.resolve(modelsDir), ...entry.file.split('/'));
}
