/**
 * The models installed in a models folder: every manifest entry whose file is there (size and
 * checksum are checked when a model is loaded). A stage process reports these in its presence
 * record, so the edge can admit jobs without a models folder of its own.
 */
import { existsSync } from 'node:fs';
import { loadManifest, modelPath } from './manifest.js';

export function installedModelIds(modelsDir: string): string[] {
  return loadManifest().models.filter((entry) => existsSync(modelPath(entry, modelsDir))).map((entry) => entry.id);
}
