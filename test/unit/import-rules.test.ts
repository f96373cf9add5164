/**
 * The architecture's import rules, checked on the sources and on a live process:
 *   - a step file does only image work: it never imports the bus, ClickHouse, the edge or a
 *     transport (NATS, uWebSockets.js);
 *   - a step file's top-level imports are its contract and pure helpers; its models and pixel
 *     code come in through prepare();
 *   - the edge never loads onnxruntime-node nor any model or pixel module: importing it and every
 *     step manifest (what the edge does to admit jobs) loads none of them.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { MODELS_DIR, REPO_ROOT } from '../helpers/paths.js';

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

/**
 * What a step file may import at its top: its contract, shared helpers, and the few pure modules
 * its manifest needs (model ids, the upscale plan, COCO labels, the tiling rule). Models and pixel
 * code are imported by prepare() (a dynamic import), so reading a manifest loads none of them.
 */
const ALLOWED_STATIC_IN_STEPS = [/^\.\.\/pipeline\//, /^\.\.\/shared\//, /^\.\/[a-z_]+\.js$/, /^\.\.\/models\/model-ids\.js$/,
  /^\.\.\/models\/super-resolution\/plan\.js$/, /^\.\.\/models\/detectors\/coco\.js$/, /^\.\.\/imaging\/tile-params\.js$/];

function staticImports(file: string): string[] {
  const source = readFileSync(file, 'utf8');
  return [...source.matchAll(/^\s*import\s+(?!type\b)[^'"]*?from\s+['"]([^'"]+)['"]/gm)].map((m) => m[1]!);
}

test('a step file imports its models and pixel code only inside prepare()', () => {
  const dir = path.join(REPO_ROOT, 'services/lib/steps');
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts') && f !== 'registry.ts')) {
    for (const spec of staticImports(path.join(dir, file))) {
      assert.ok(ALLOWED_STATIC_IN_STEPS.some((rule) => rule.test(spec)), `${file} imports ${spec} at its top (import it in prepare())`);
    }
  }
});

/** Every module URL a process resolves, reported from the loader thread. */
const RECORD_MODULES = `
  import { register } from 'node:module';
  import { MessageChannel } from 'node:worker_threads';
  const { port1, port2 } = new MessageChannel();
  const loaded = new Set();
  port1.on('message', (url) => loaded.add(url));
  port1.unref();
  register('data:text/javascript,' + encodeURIComponent('let port; export function initialize(d) { port = d.port; } export async function resolve(s, c, next) { const r = await next(s, c); port.postMessage(r.url); return r; }'), { data: { port: port2 }, transferList: [port2] });
`;

/** Modules of services/lib that hold model or pixel code: the edge never loads them. */
const RUN_CODE = /\/services\/lib\/(models\/(?!model-ids\.js|super-resolution\/plan\.js|detectors\/coco\.js)|imaging\/(?!image-size\.js|tile-params\.js))/;

test('the edge, with every step manifest loaded, loads no model or pixel module and maps no ONNX Runtime library', () => {
  const script = `${RECORD_MODULES}
    await import(${JSON.stringify(path.join(REPO_ROOT, 'dist/services/edge/server.js'))});
    const { loadManifests } = await import(${JSON.stringify(path.join(REPO_ROOT, 'dist/services/lib/steps/registry.js'))});
    const manifests = await loadManifests();
    await new Promise((resolve) => setTimeout(resolve, 200));
    const maps = (await import('node:fs')).readFileSync('/proc/self/maps', 'utf8');
    console.log(JSON.stringify({ steps: manifests.size, onnx: /onnxruntime/i.test(maps), modules: [...loaded] }));`;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, LOG_LEVEL: 'warn' } });
  assert.equal(run.status, 0, run.stderr);
  const result = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as { steps: number; onnx: boolean; modules: string[] };
  assert.ok(result.steps >= 7);
  assert.equal(result.onnx, false, 'onnxruntime-node was loaded by the edge');
  assert.ok(result.modules.some((m) => m.includes('/services/lib/steps/upscale.js')), 'the recorder sees the step modules');
  assert.deepEqual(result.modules.filter((m) => RUN_CODE.test(m)), [], 'model or pixel code loaded by the edge');
  // The check can fail: a stage prepares its step, which loads that code and maps the library.
  const control = spawnSync(process.execPath, ['--input-type=module', '-e', `${RECORD_MODULES}
    const { stage } = await import(${JSON.stringify(path.join(REPO_ROOT, 'dist/services/lib/steps/upscale.js'))});
    const { pino } = await import('pino');
    await stage.prepare({ log: pino({ level: 'silent' }), modelsDir: ${JSON.stringify(MODELS_DIR)} });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const maps = (await import('node:fs')).readFileSync('/proc/self/maps', 'utf8');
    console.log(JSON.stringify({ onnx: /onnxruntime/i.test(maps), run: [...loaded].filter((m) => ${RUN_CODE}.test(m)).length }));`], { encoding: 'utf8' });
  assert.equal(control.status, 0, control.stderr);
  const controlResult = JSON.parse(control.stdout.trim().split('\n').at(-1)!) as { onnx: boolean; run: number };
  assert.equal(controlResult.onnx, true, 'a prepared upscale maps ONNX Runtime');
  assert.ok(controlResult.run > 0, 'a prepared upscale loads model code');
});

function sourcesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const full = path.join(dir, d.name);
    return d.isDirectory() ? sourcesUnder(full) : d.name.endsWith('.ts') ? [full] : [];
  });
}

test('one door to the stages: only the bus builds step messages and publishes on stage subjects', () => {
  const bus = path.join(REPO_ROOT, 'services/lib/bus');
  const offenders: string[] = [];
  for (const file of sourcesUnder(path.join(REPO_ROOT, 'services'))) {
    if (file.startsWith(bus + path.sep)) continue;
    const source = readFileSync(file, 'utf8');
    if (/:\s*JobMessage\s*=\s*\{/.test(source)) offenders.push(`${path.relative(REPO_ROOT, file)} builds a JobMessage`);
    if (/publish\(\s*subjects\.stage\(/.test(source)) offenders.push(`${path.relative(REPO_ROOT, file)} publishes a step itself`);
    if (/msgIds\.step\(/.test(source)) offenders.push(`${path.relative(REPO_ROOT, file)} makes a step message id`);
  }
  assert.deepEqual(offenders, [], 'use services/lib/bus/step-queue.ts (firstStep, nextStep, enqueueStep)');
});

test('libraries never read the environment when imported: configuration is passed in', () => {
  const offenders: string[] = [];
  for (const file of sourcesUnder(path.join(REPO_ROOT, 'services/lib'))) {
    const source = readFileSync(file, 'utf8');
    // A top-level statement (column 0) that reads the settings or the environment.
    for (const line of source.split('\n')) {
      if (/^(export\s+)?(const|let|var)\s.*(loadConfig\(|process\.env)/.test(line)) offenders.push(`${path.relative(REPO_ROOT, file)}: ${line.trim()}`);
    }
  }
  assert.deepEqual(offenders, []);
  assert.doesNotMatch(readFileSync(path.join(REPO_ROOT, 'services/lib/shared/config.ts'), 'utf8'), /^export const config\b/m, 'no process-wide config object');
});
