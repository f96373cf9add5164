#!/usr/bin/env node
// Runs the compiled tests with node's test runner, one file at a time (integration tests start
// real servers; on a 2-core CI machine running them side by side only adds noise).
// `npm test -- unit` or `npm test -- foundation metrics` runs only files whose path matches.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve('dist/test');
const walk = (dir) => readdirSync(dir).flatMap((name) => {
  const full = path.join(dir, name);
  return statSync(full).isDirectory() ? walk(full) : name.endsWith('.test.js') ? [full] : [];
});
const filters = process.argv.slice(2);
const all = walk(root).sort((a, b) => (a.includes('/unit/') === b.includes('/unit/') ? a.localeCompare(b) : a.includes('/unit/') ? -1 : 1));
const files = filters.length ? all.filter((f) => filters.some((x) => f.includes(x))) : all;
if (files.length === 0) {
  console.error(`no test files match ${filters.join(' ')}`);
  process.exit(1);
}
const result = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...files], { stdio: 'inherit' });
process.exit(result.status ?? 1);
