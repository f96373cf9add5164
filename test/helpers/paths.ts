/** Where tests find the shared real models and photos (never copied into the repo). */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function findRepoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('package.json not found above the tests');
    dir = parent;
  }
  return dir;
}

export const REPO_ROOT = findRepoRoot();
export const MODELS_DIR = process.env.MODELS_DIR ? path.resolve(process.env.MODELS_DIR) : path.resolve(REPO_ROOT, '..', 'shared', 'models');
export const FIXTURES_DIR = process.env.FIXTURES_DIR ? path.resolve(process.env.FIXTURES_DIR) : path.resolve(REPO_ROOT, '..', 'shared', 'fixtures');
export const fixture = (name: string): string => path.join(FIXTURES_DIR, name);
