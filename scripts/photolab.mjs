#!/usr/bin/env node
// The `photolab` command (package.json "bin", `npx photolab`, `npm run cli --`, `npm run models --`).
// On a fresh clone nothing is compiled yet: build first (once, quietly) instead of failing with
// MODULE_NOT_FOUND, then run the compiled CLI.
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const entry = path.join(root, 'dist/services/cli/main.js');
const source = path.join(root, 'services/cli/main.ts');
const stale = !existsSync(entry) || (existsSync(source) && statSync(source).mtimeMs > statSync(entry).mtimeMs);
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
