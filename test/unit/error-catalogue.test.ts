/**
 * The error catalogue is the one list of codes: every code the sources construct is in it (with
 * the status a literal `new AppError(status, ...)` claims), docs/api.md's table lists exactly its
 * codes, and a code enum in the error schemas, where there is one, matches it.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ERROR_CATALOGUE, ERROR_CODES, appError, badRequest, errorSpec, unprocessable } from '../../services/lib/shared/errors.js';
import { REPO_ROOT } from '../helpers/paths.js';

interface CodeUse { file: string; line: number; code: string; status?: number }

/** Ways the sources name an error code: the constructors, the deprecated wrappers, typed literals and checks. */
const CODE_PATTERNS: RegExp[] = [
  /\b(?:appError|badRequest|notFound|conflict|unprocessable)\(\s*'([a-z0-9_]+)'/g,
  /\bnew AppError\(\s*(\d{3})\s*,\s*'([a-z0-9_]+)'/g,
  /\bhasErrorCode\([^,()]+,\s*'([a-z0-9_]+)'\)/g,
  /'([a-z0-9_]+)' satisfies ErrorCode/g,
  // validateOrThrow's option: the code its validation failure gets.
  /\bcode: '([a-z0-9_]+)', what:/g,
];

function codeUses(file: string, source: string): CodeUse[] {
  const uses: CodeUse[] = [];
  for (const pattern of CODE_PATTERNS) {
    for (const m of source.matchAll(pattern)) {
      const line = source.slice(0, m.index).split('\n').length;
      uses.push(m.length === 3 ? { file, line, status: Number(m[1]), code: m[2]! } : { file, line, code: m[1]! });
    }
  }
  return uses;
}

const walk = (dir: string): string[] => readdirSync(dir).flatMap((name) => {
  const full = path.join(dir, name);
  return statSync(full).isDirectory() ? walk(full) : full.endsWith('.ts') ? [full] : [];
});

const servicesUses = () => walk(path.join(REPO_ROOT, 'services'))
  .flatMap((file) => codeUses(path.relative(REPO_ROOT, file), readFileSync(file, 'utf8')));

/** Problems with code uses: a code not in the catalogue, or a literal status that is not the catalogue's. */
function problems(uses: CodeUse[]): string[] {
  return uses.flatMap((u) => {
    const spec = errorSpec(u.code);
    if (!spec) return [`${u.file}:${u.line} uses ${u.code}, which is not in the catalogue`];
    if (u.status !== undefined && u.status !== spec.status) return [`${u.file}:${u.line} gives ${u.code} status ${u.status}; the catalogue says ${spec.status}`];
    return [];
  });
}

test('every error code the sources construct is in the catalogue, with its status', () => {
  const uses = servicesUses();
  assert.ok(uses.length > 100, `found only ${uses.length} code uses: the patterns no longer match the sources`);
  assert.deepEqual(problems(uses), []);
});

test('the source check fails on an unknown code and on a literal status that disagrees', () => {
  const source = `throw badRequest('no_such_code', 'x');\nthrow new AppError(500, 'job_not_found', 'x');\nthrow appError('job_not_found', 'x');`;
  assert.deepEqual(problems(codeUses('sample.ts', source)), [
    'sample.ts:1 uses no_such_code, which is not in the catalogue',
    'sample.ts:2 gives job_not_found status 500; the catalogue says 404',
  ]);
});

test('appError and the deprecated wrappers take status and retryable from the catalogue', () => {
  const missing = appError('frame_missing', 'gone');
  assert.equal(missing.status, 503);
  assert.equal(missing.retryable, true);
  assert.equal(missing.code, 'frame_missing');
  // A wrapper's own status gives way to the catalogue's; a code not in it keeps the old status.
  assert.equal(unprocessable('image_too_large', 'big').status, 413);
  assert.equal(badRequest('invalid_params', 'bad').retryable, false);
  assert.equal(badRequest('not_catalogued_yet', 'bad').status, 400);
});

test('every entry has a status, a retryable flag and a one-line meaning', () => {
  for (const code of ERROR_CODES) {
    const spec = ERROR_CATALOGUE[code];
    assert.match(code, /^[a-z][a-z0-9_]*$/, code);
    assert.ok(Number.isInteger(spec.status) && spec.status >= 400 && spec.status <= 599, `${code}: status ${spec.status}`);
    assert.equal(typeof spec.retryable, 'boolean', code);
    assert.ok(spec.meaning.length > 10 && !spec.meaning.includes('\n') && !spec.meaning.includes('|'), `${code}: meaning`);
  }
});

/** docs/api.md's table rows between the error markers: code -> "status | retryable | meaning". */
function documentedCodes(doc: string): Map<string, string> {
  const section = /<!-- errors:start -->([\s\S]*?)<!-- errors:end -->/.exec(doc)?.[1];
  assert.ok(section, 'docs/api.md has the <!-- errors:start --> ... <!-- errors:end --> markers');
  const rows = new Map<string, string>();
  for (const m of section.matchAll(/^\| `([a-z0-9_]+)` \| (\d{3}) \| (yes|no) \| (.*) \|$/gm)) {
    assert.ok(!rows.has(m[1]!), `${m[1]} is listed twice`);
    rows.set(m[1]!, `${m[2]} | ${m[3]} | ${m[4]}`);
  }
  return rows;
}

const catalogueRows = () => new Map<string, string>(ERROR_CODES.map((code) => {
  const spec = ERROR_CATALOGUE[code];
  return [code, `${spec.status} | ${spec.retryable ? 'yes' : 'no'} | ${spec.meaning}`] as const;
}));

test('docs/api.md lists exactly the catalogue\'s codes, each with its status, retryable and meaning', () => {
  const documented = documentedCodes(readFileSync(path.join(REPO_ROOT, 'docs/api.md'), 'utf8'));
  const expected = catalogueRows();
  const hint = 'run `node scripts/error-table.mjs --write` after a build';
  assert.deepEqual([...expected.keys()].filter((c) => !documented.has(c)), [], `not documented; ${hint}`);
  assert.deepEqual([...documented.keys()].filter((c) => !expected.has(c)), [], `documented but not in the catalogue; ${hint}`);
  for (const [code, row] of expected) assert.equal(documented.get(code), row, `${code}; ${hint}`);
});

test('a code enum in the error schemas, where there is one, is the catalogue\'s', () => {
  const schemas = ['schemas/http/error.schema.json', 'schemas/ws/server-message.schema.json'];
  const enums: unknown[][] = [];
  const collect = (node: unknown): void => {
    if (!node || typeof node !== 'object') return;
    const code = (node as { properties?: { code?: { enum?: unknown[] } } }).properties?.code;
    if (Array.isArray(code?.enum)) enums.push(code.enum);
    for (const child of Object.values(node)) collect(child);
  };
  for (const file of schemas) collect(JSON.parse(readFileSync(path.join(REPO_ROOT, file), 'utf8')));
  for (const list of enums) assert.deepEqual([...list].sort(), [...ERROR_CODES].sort());
});
