/**
 * Finds the steps: every module in services/lib/steps/ (and in any folder of STEPS_DIRS) that
 * exports `stage`, each with its params schema: schemas/steps/<step>.schema.json, or
 * <step>.schema.json beside the module. Adding a step needs no edit here.
 *
 * Importing a step module is cheap (its models and pixel code are imported by prepare()), so
 * the edge reads the manifests from the same modules the stage processes run.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { FindingGeometry, StageDefinition, StepManifest } from '../pipeline/stage.js';
import { registerSchema, stepSchemaNames } from '../shared/schemas.js';

const builtInDir = path.dirname(fileURLToPath(import.meta.url));
const self = path.basename(fileURLToPath(import.meta.url));

const caches = new Map<string, Promise<Map<string, StageDefinition>>>();

export interface RegistryOptions {
  /** Further folders of step modules (STEPS_DIRS): site-specific steps, test fixtures. */
  extraDirs?: readonly string[];
}

export function loadStages(options: RegistryOptions = {}): Promise<Map<string, StageDefinition>> {
  const dirs = [builtInDir, ...(options.extraDirs ?? []).map((d) => path.resolve(d))];
  const key = dirs.join('\n');
  let found = caches.get(key);
  if (!found) {
    found = discover(dirs);
    caches.set(key, found);
  }
  return found;
}

async function discover(dirs: string[]): Promise<Map<string, StageDefinition>> {
  const stages = new Map<string, StageDefinition>();
  const known = new Set(stepSchemaNames());
  for (const dir of dirs) {
    const files = readdirSync(dir).filter((f) => f !== self && /\.(js|ts)$/.test(f) && !f.endsWith('.d.ts') && !f.endsWith('.test.js'));
    for (const file of files.sort()) {
      const mod = (await import(pathToFileURL(path.join(dir, file)).href)) as { stage?: StageDefinition };
      if (!mod.stage) continue;
      const { step } = mod.stage;
      if (stages.has(step)) throw new Error(`step ${step} is defined twice (${dir}/${file})`);
      if (!known.has(step)) registerStepSchema(step, dir);
      stages.set(step, mod.stage);
    }
  }
  return stages;
}

/** A step outside services/lib/steps: its schema beside its module (or beside its source, for a compiled module). */
function registerStepSchema(step: string, dir: string): void {
  const name = `${step}.schema.json`;
  const candidates = [path.join(dir, name), sourceDirOf(dir) && path.join(sourceDirOf(dir)!, name)].filter(Boolean) as string[];
  const file = candidates.find((c) => existsSync(c));
  if (!file) throw new Error(`step ${step} has no params schema: schemas/steps/${name} or ${candidates.join(' or ')}`);
  const schema = JSON.parse(readFileSync(file, 'utf8')) as { $id?: string };
  const $id = `https://photolab.dev/schemas/steps/${name}`;
  if (schema.$id !== $id) throw new Error(`${file}: $id must be ${$id}`);
  registerSchema(schema as { $id: string });
}

/** <root>/dist/x/y -> <root>/x/y (tsc copies no JSON next to the compiled module). */
function sourceDirOf(dir: string): string | undefined {
  const parts = dir.split(path.sep);
  const i = parts.lastIndexOf('dist');
  return i < 0 ? undefined : [...parts.slice(0, i), ...parts.slice(i + 1)].join(path.sep);
}

export async function loadStage(step: string, options: RegistryOptions = {}): Promise<StageDefinition> {
  const stages = await loadStages(options);
  const stage = stages.get(step);
  if (!stage) throw new Error(`unknown step "${step}"; known: ${[...stages.keys()].join(', ')}`);
  return stage;
}

/** The steps as data (what the edge needs to validate and admit jobs). */
export async function loadManifests(options: RegistryOptions = {}): Promise<Map<string, StepManifest>> {
  return new Map([...(await loadStages(options))].map(([step, stage]) => [step, manifestOf(stage)]));
}

export function manifestOf(stage: StageDefinition): StepManifest {
  const { prepare: _prepare, ...manifest } = stage;
  return manifest;
}

/**
 * How every finding kind moves with the pixels, from the manifests that produce it. Two steps
 * that declare the same kind differently are a programming error: refused at start.
 */
export function findingGeometry(manifests: Iterable<StepManifest>): Map<string, FindingGeometry> {
  const out = new Map<string, FindingGeometry>();
  const by = new Map<string, string>();
  for (const m of manifests) {
    for (const [kind, geometry] of Object.entries(m.produces ?? {})) {
      const seen = out.get(kind);
      if (seen && JSON.stringify(seen) !== JSON.stringify(geometry)) {
        throw new Error(`finding kind "${kind}" is declared with other geometry by ${by.get(kind)} and ${m.step}`);
      }
      out.set(kind, geometry);
      by.set(kind, m.step);
    }
  }
  return out;
}
