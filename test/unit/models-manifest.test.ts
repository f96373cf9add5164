import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findModel, loadManifest, modelPath, modelsForTask, validateManifest } from '../../services/lib/models/manifest.js';
import { loadModel, modelInstalled, providerChain } from '../../services/lib/models/runtime.js';
import { MODELS_DIR, REPO_ROOT } from '../helpers/paths.js';

const manifest = loadManifest(path.join(REPO_ROOT, 'models', 'manifest.json'));

test('the repository manifest validates, ids and files are unique', () => {
  assert.ok(manifest.models.length >= 23);
  assert.equal(new Set(manifest.models.map((m) => m.id)).size, manifest.models.length);
  assert.equal(new Set(manifest.models.map((m) => m.file)).size, manifest.models.length);
});

test('every file in the shared SHA256SUMS is in the manifest with its checksum and size', (t) => {
  const sums = path.join(MODELS_DIR, 'SHA256SUMS');
  if (!existsSync(sums)) return t.skip(`no SHA256SUMS in ${MODELS_DIR}`);
  const lines = readFileSync(sums, 'utf8').trim().split('\n');
  assert.equal(lines.length, 16);
  for (const line of lines) {
    const [sha256, rawFile] = line.trim().split(/\s+/);
    const file = rawFile.replace(/^\.\//, '');
    const entry = manifest.models.find((m) => m.file === file);
    assert.ok(entry, `${file} is missing from models/manifest.json`);
    assert.equal(entry.sha256, sha256, `${file} checksum`);
    assert.equal(entry.pinned, true);
    assert.equal(entry.bytes, statSync(path.join(MODELS_DIR, file)).size, `${file} size`);
  }
});

test('production models are listed; unknown checksums are null and unpinned; non-commercial ones flagged', () => {
  for (const id of ['realesrgan-x4plus', 'realesr-general-x4v3', 'gfpgan-v1.4', 'gpen-bfr-256', 'gpen-bfr-512', 'codeformer', 'yolox-s']) {
    const entry = findModel(id, manifest);
    assert.ok(entry.urls.length > 0, `${id} has a download address`);
    assert.equal(entry.pinned, entry.sha256 !== null);
  }
  assert.equal(findModel('gpen-bfr-512', manifest).sha256, 'bf80acb8e91ba8852e3f012505be2c3b6cd6b3eed5ec605e3db87863c4e74d4e');
  assert.equal(findModel('yolox-s', manifest).bytes, 35858002);
  assert.equal(findModel('gfpgan-v1.4', manifest).sha256, null);
  assert.equal(findModel('codeformer', manifest).commercialUse, false);
  assert.equal(findModel('gpen-bfr-256', manifest).commercialUse, false);
  assert.deepEqual(modelsForTask('face_restoration', manifest).map((m) => m.contract.size.width), [512, 256, 512, 512]);
  assert.deepEqual(findModel('codeformer', manifest).contract.inputs.map((i) => i.name), ['input', 'w']);
});

test('invalid manifests are refused with manifest_invalid', () => {
  const good = structuredClone(manifest);
  assert.doesNotThrow(() => validateManifest(good));
  const dup = structuredClone(manifest);
  dup.models.push(structuredClone(dup.models[0]));
  assert.throws(() => validateManifest(dup), (e: { code?: string; message: string }) => e.code === 'manifest_invalid' && /duplicate id/.test(e.message));
  const unpinnedWithSum = structuredClone(manifest);
  unpinnedWithSum.models[0].pinned = false;
  assert.throws(() => validateManifest(unpinnedWithSum), /pinned must be true exactly when sha256/);
  const badTask = structuredClone(manifest) as unknown as { models: { task: string }[] };
  badTask.models[0].task = 'painting';
  assert.throws(() => validateManifest(badTask), { code: 'manifest_invalid' });
  const escape = structuredClone(manifest);
  escape.models[0].file = '../etc/passwd.onnx';
  assert.throws(() => validateManifest(escape), { code: 'manifest_invalid' });
});

test('findModel names the known ids for an unknown one; modelPath joins under MODELS_DIR', () => {
  assert.throws(() => findModel('nope', manifest), (e: { status?: number; code?: string; message: string }) =>
    e.status === 400 && e.code === 'unknown_model' && e.message.includes('yunet-640'));
  assert.equal(modelPath(findModel('yunet-640', manifest), '/m'), '/m/face_detection/yunet_2023mar_640.onnx');
});

test('a missing model file is model_not_installed (503, not retryable) naming the fetch command', async () => {
  const empty = mkdtempSync(path.join(os.tmpdir(), 'models-empty-'));
  try {
    assert.equal(modelInstalled('yunet-640', empty), false);
    await assert.rejects(loadModel('yunet-640', { modelsDir: empty }), (e: { status?: number; code?: string; retryable?: boolean; message: string }) =>
      e.status === 503 && e.code === 'model_not_installed' && e.retryable === false && e.message.includes('npm run models -- fetch yunet-640'));
  } finally {
    rmSync(empty, { recursive: true, force: true });
  }
});

test('a model file with the wrong bytes is model_corrupt; the right one loads with its sha256', async (t) => {
  if (!existsSync(path.join(MODELS_DIR, 'face_detection', 'yunet_2023mar_640.onnx'))) return t.skip('shared models not available');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'models-corrupt-'));
  try {
    const entry = findModel('yunet-640', manifest);
    const target = modelPath(entry, dir);
    mkdirSync(path.dirname(target), { recursive: true });
    copyFileSync(modelPath(entry, MODELS_DIR), target);
    const bytes = readFileSync(target);
    bytes[bytes.length - 100] ^= 0xff; // same size, different content
    writeFileSync(target, bytes);
    await assert.rejects(loadModel('yunet-640', { modelsDir: dir }), (e: { code?: string; retryable?: boolean; message: string }) =>
      e.code === 'model_corrupt' && e.retryable === false && /sha256/.test(e.message));
    writeFileSync(target, bytes.subarray(0, 1000));
    await assert.rejects(loadModel('yunet-640', { modelsDir: dir }), /1000 bytes/);
    const good = await loadModel('yunet-640', { modelsDir: MODELS_DIR });
    assert.equal(good.sha256, entry.sha256);
    assert.equal(good.provider, 'cpu');
    assert.deepEqual(good.inputNames, ['input']);
    assert.equal(good, await loadModel('yunet-640', { modelsDir: MODELS_DIR }), 'one session per model per process');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('provider chain follows ONNX_PROVIDERS and always ends with cpu', () => {
  assert.deepEqual(providerChain(['cuda', 'cpu']).map((p) => p.name), ['cuda', 'cpu']);
  assert.deepEqual(providerChain(['cuda']).map((p) => p.name), ['cuda', 'cpu']);
  assert.deepEqual(providerChain(['CPU', 'cpu']).map((p) => p.name), ['cpu']);
  assert.deepEqual(providerChain(['tensorrt']).map((p) => p.name), ['cpu']);
});

test('ONNX_PROVIDERS=cuda falls back to CPU when CUDA cannot be created, and says so', (t) => {
  if (!existsSync(path.join(MODELS_DIR, 'face_detection', 'yunet_2023mar_640.onnx'))) return t.skip('shared models not available');
  const script = `
    const { loadModel } = await import(${JSON.stringify(path.join(REPO_ROOT, 'dist/services/lib/models/runtime.js'))});
    const warnings = [];
    const log = { info() {}, debug() {}, warn(o, m) { warnings.push(m); } };
    const m = await loadModel('yunet-640', { modelsDir: ${JSON.stringify(MODELS_DIR)}, log });
    console.log(JSON.stringify({ provider: m.provider, warnings }));`;
  const env = { ...process.env, ONNX_PROVIDERS: 'cuda,cpu', ONNX_THREADS: '1' };
  const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env, encoding: 'utf8', timeout: 60_000 });
  assert.equal(result.status, 0, result.stderr);
  const out = JSON.parse(result.stdout.trim().split('\n').at(-1) ?? '{}') as { provider: string; warnings: string[] };
  // On a machine with a CUDA build of onnxruntime and a GPU this would be 'cuda'; here the CPU build must fall back.
  if (out.provider === 'cuda') return;
  assert.equal(out.provider, 'cpu');
  assert.ok(out.warnings.some((w) => /fallback|unavailable/.test(w)), `fallback logged: ${out.warnings.join('; ')}`);
});
