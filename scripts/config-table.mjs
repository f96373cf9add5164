#!/usr/bin/env node
// The README's configuration table, made from services/lib/shared/config.ts (run after a build).
//   node scripts/config-table.mjs           prints it
//   node scripts/config-table.mjs --write   replaces the table between the README's config markers
import { readFileSync, writeFileSync } from 'node:fs';

const { settings } = await import('../dist/services/lib/shared/config.js');
const show = (s) => {
  if (s.env === 'HOST_ID') return '(hostname)';
  const v = s.default;
  if (Array.isArray(v)) return `\`${v.length ? v.join(',') : '(empty)'}\``;
  return `\`${v === '' ? '(empty)' : String(v).replace(process.cwd(), '.')}\``;
};
const rows = ['| variable | default | what |', '|---|---|---|'];
for (const s of Object.values(settings)) rows.push(`| \`${s.env}\` | ${show(s)} | ${s.description} |`);
const table = rows.join('\n');
if (process.argv.includes('--write')) {
  const readme = readFileSync('README.md', 'utf8');
  const updated = readme.replace(/(<!-- config:start -->)[\s\S]*?(<!-- config:end -->)/, `$1\n${table}\n$2`);
  writeFileSync('README.md', updated);
} else {
  console.log(table);
}
