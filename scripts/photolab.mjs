#!/usr/bin/env node
// The `photolab` command (package.json "bin", `npx photolab`, `npm run cli --`, `npm run models --`).
// On a fresh clone nothing is compiled yet: build first (once, quietly) instead of failing with
// MODULE_NOT_FOUND, then run the compiled CLI.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const entry = path.join(root, 'dist/services/cli/main.js');
// Stale when any source under services/ is newer than the compiled CLI (after a pull or an edit):
// a few hundred stat calls, far cheaper than running yesterday's code.
const newest = (dir) => readdirSync(dir, { withFileTypes: true }).reduce((max, d) => {
  const full = path.join(dir, d.name);
  return Math.max(max, d.isDirectory() ? newest(full) : d.name.endsWith('.ts') ? statSync(full).mtimeMs : 0);
}, 0);
const sources = path.join(root, 'services');
const stale = !existsSync(entry) || (existsSync(sources) && newest(sources) > statSync(entry).mtimeMs);
if (stale) {
  const tsc = path.join(root, 'node_modules/typescript/bin/tsc');
  if (!existsSync(tsc)) {
    process.stderr.write('photolab: the npm packages are not installed; run scripts/setup.sh (or npm install) first\n');
    process.exit(1);
  }
  process.stderr.write('photolab: building (first run)…\n');
  const built = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.json')], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (built.status !== 0) process.exit(built.status ?? 1);
}
const { main } = await import(pathToFileURL(entry).href);
process.exitCode = await main(process.argv.slice(2));
