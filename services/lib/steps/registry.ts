/**
 * Finds the steps: every module in services/lib/steps/ that exports `stage`, each with its
 * params schema in schemas/steps/<step>.schema.json. Adding a step needs no edit here.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { StageDefinition } from '../pipeline/stage.js';
import { stepSchemaNames } from '../shared/schemas.js';

const stepsDir = path.dirname(fileURLToPath(import.meta.url));

let cache: Promise<Map<string, StageDefinition>> | undefined;

export function loadStages(): Promise<Map<string, StageDefinition>> {
  cache ??= (async () => {
    const stages = new Map<string, StageDefinition>();
    const self = path.basename(fileURLToPath(import.meta.url));
    const files = readdirSync(stepsDir).filter((f) => f !== self && (f.endsWith('.js') || (f.endsWith('.ts') && !f.endsWith('.d.ts'))));
    for (const file of files.sort()) {
      const mod = (await import(pathToFileURL(path.join(stepsDir, file)).href)) as { stage?: StageDefinition };
      if (!mod.stage) continue;
      stages.set(mod.stage.step, mod.stage as StageDefinition);
    }
    const schemas = new Set(stepSchemaNames());
    for (const step of stages.keys()) {
      if (!schemas.has(step)) throw new Error(`step ${step} has no params schema schemas/steps/${step}.schema.json`);
    }
    return stages;
  })();
  return cache;
}

export async function loadStage(step: string): Promise<StageDefinition> {
  const stage = (await loadStages()).get(step);
  if (!stage) throw new Error(`unknown step "${step}"; known: ${[...(await loadStages()).keys()].join(', ')}`);
  return stage;
}
