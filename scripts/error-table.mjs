#!/usr/bin/env node
// docs/api.md's error table, made from services/lib/shared/error-catalogue.ts (run after a build).
//   node scripts/error-table.mjs           prints it
//   node scripts/error-table.mjs --write   replaces the table between docs/api.md's error markers
// test/unit/error-catalogue.test.ts fails when the table and the catalogue differ.
import { readFileSync, writeFileSync } from 'node:fs';

const { ERROR_CATALOGUE } = await import('../dist/services/lib/shared/error-catalogue.js');

// By status, then in the catalogue's order (which keeps related codes together).
const entries = Object.entries(ERROR_CATALOGUE)
  .map(([code, spec], order) => ({ code, ...spec, order }))
  .sort((a, b) => a.status - b.status || a.order - b.order);
const rows = ['| code | status | retryable | meaning |', '|---|---|---|---|'];
for (const e of entries) rows.push(`| \`${e.code}\` | ${e.status} | ${e.retryable ? 'yes' : 'no'} | ${e.meaning} |`);
const table = rows.join('\n');

if (process.argv.includes('--write')) {
  const file = 'docs/api.md';
  const doc = readFileSync(file, 'utf8');
  if (!/<!-- errors:start -->[\s\S]*?<!-- errors:end -->/.test(doc)) throw new Error(`${file} has no <!-- errors:start --> ... <!-- errors:end --> markers`);
  writeFileSync(file, doc.replace(/(<!-- errors:start -->)[\s\S]*?(<!-- errors:end -->)/, `$1\n${table}\n$2`));
} else {
  console.log(table);
}
