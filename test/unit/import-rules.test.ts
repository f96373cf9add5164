/**
 * The architecture's import rules, checked on the sources and on a live process:
 *   - a step file does only image work: it never imports the bus, ClickHouse, the edge or a
 *     transport (NATS, uWebSockets.js);
 *   - the edge never loads onnxruntime-node: importing it and every step definition (what the
 *     edge does to admit jobs) maps no ONNX Runtime library into the process.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from '../helpers/paths.js';

const FORBIDDEN_IN_STEPS = [/\/bus\//, /\/metrics\//, /\/edge\//, /\/launcher\//, /^@nats-io\//, /^uWebSockets\.js$/, /^@clickhouse\//, /^chdb/];

function imports(file: string): string[] {
  const source = readFileSync(file, 'utf8');
  const found = [...source.matchAll(/^\s*import\s+(?!type\b)[^'"]*?from\s+['"]([^'"]+)['"]/gm), ...source.matchAll(/import\(\s*['"]([^'"]+)['"]\s*\)/g)];
  return found.map((m) => m[1]!);
}

test('step files import no bus, ClickHouse, edge or transport code', () => {
  const dir = path.join(REPO_ROOT, 'services/lib/steps');
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));
  assert.ok(files.length >= 7, `found the steps: ${files.join(', ')}`);
  for (const file of files) {
    for (const spec of imports(path.join(dir, file))) {
      const bad = FORBIDDEN_IN_STEPS.find((rule) => rule.test(spec));
      assert.equal(bad, undefined, `${file} imports ${spec}`);
    }
  }
});

test('the edge, with every step definition loaded, maps no ONNX Runtime library', () => {
  const script = `
    await import(${JSON.stringify(path.join(REPO_ROOT, 'dist/services/edge/server.js'))});
    const { loadStages } = await import(${JSON.stringify(path.join(REPO_ROOT, 'dist/services/lib/steps/registry.js'))});
    const stages = await loadStages();
    const maps = (await import('node:fs')).readFileSync('/proc/self/maps', 'utf8');
    console.log(JSON.stringify({ steps: stages.size, onnx: /onnxruntime/i.test(maps) }));`;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, LOG_LEVEL: 'warn' } });
  assert.equal(run.status, 0, run.stderr);
  const result = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as { steps: number; onnx: boolean };
  assert.ok(result.steps >= 7);
  assert.equal(result.onnx, false, 'onnxruntime-node was loaded by the edge');
  // The check can fail: a stage's modules do map it once a model is used.
  const control = spawnSync(process.execPath, ['--input-type=module', '-e', `
    const { ort } = await import(${JSON.stringify(path.join(REPO_ROOT, 'dist/services/lib/models/onnx.js'))});
    ort();
    console.log(/onnxruntime/i.test((await import('node:fs')).readFileSync('/proc/self/maps', 'utf8')));`], { encoding: 'utf8' });
  assert.equal(control.stdout.trim(), 'true', control.stderr);
});
