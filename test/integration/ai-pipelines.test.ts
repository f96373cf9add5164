/**
 * The AI steps in pipelines through the bus, with the real models of MODELS_DIR: detections
 * come back as findings (live, in step.finished), pixels steps chain, conditions skip steps,
 * and every step's provenance names its model, the model's sha256 and the execution provider.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { fixture, MODELS_DIR } from '../helpers/paths.js';
import { startSystem, type TestSystem } from '../helpers/system.js';

let system: TestSystem;
before(async () => {
  system = await startSystem({ steps: ['decode', 'detect_objects', 'detect_faces', 'denoise', 'upscale', 'encode'] });
});
after(async () => system?.stop());

const sha256File = (relative: string) => createHash('sha256').update(readFileSync(path.join(MODELS_DIR, relative))).digest('hex');

test('decode -> detect_objects: the dog, the bicycle and the car, with the model\'s provenance', async () => {
  const job = await system.waitForJob((await system.submit(readFileSync(fixture('dog.jpg')), [{ step: 'decode' }, { step: 'detect_objects' }])).jobId);
  assert.equal(job.status, 'done', JSON.stringify(job.error));
  const labels = job.result!.findings!.objects!.map((o) => o.label);
  for (const label of ['dog', 'bicycle', 'car']) assert.ok(labels.includes(label), `${label} in ${labels.join(', ')}`);
  assert.equal(job.result!.url, undefined, 'a detection pipeline returns findings, no image');
  const detect = job.result!.provenance!.find((p) => p.step === 'detect_objects')!;
  assert.equal(detect.model, 'yolox-nano');
  assert.equal(detect.modelSha256, sha256File('object_detection/yolox_nano_416.onnx'));
  assert.equal(detect.provider, 'cpu');
  // Detections go out as soon as detection finishes, in the step's event.
  const finished = (await system.events(job.jobId)).find((e) => e.type === 'step.finished' && e.step === 'detect_objects')!;
  assert.equal(finished.findings!.objects!.length, job.result!.findings!.objects!.length);
  // The result endpoint answers JSON for a detection job.
  const response = await fetch(`${system.baseUrl}/api/jobs/${job.jobId}/result`, { headers: { authorization: `Bearer ${await system.token()}` } });
  assert.match(response.headers.get('content-type') ?? '', /application\/json/);
});

test('decode -> denoise -> upscale x2 -> encode: exact output size, each step on record', async () => {
  const crop = await sharp(readFileSync(fixture('baboon.jpg'))).extract({ left: 100, top: 100, width: 160, height: 120 }).png().toBuffer();
  const job = await system.waitForJob((await system.submit(crop, [
    { step: 'decode' }, { step: 'denoise', params: { level: 'light' } }, { step: 'upscale', params: { factor: 2 } }, { step: 'encode' },
  ])).jobId, { timeoutMs: 60_000 });
  assert.equal(job.status, 'done', JSON.stringify(job.error));
  const response = await fetch(`${system.baseUrl}${job.result!.url}`, { headers: { authorization: `Bearer ${await system.token()}` } });
  assert.equal(response.headers.get('content-type'), 'image/png');
  const bytes = Buffer.from(await response.arrayBuffer());
  const meta = await sharp(bytes).metadata();
  assert.deepEqual([meta.width, meta.height], [320, 240]);
  assert.equal(job.result!.sha256, createHash('sha256').update(bytes).digest('hex'), 'the record keeps the output\'s sha256');
  assert.equal(job.input!.sha256, createHash('sha256').update(crop).digest('hex'), 'and the input\'s');
  const byStep = Object.fromEntries(job.result!.provenance!.map((p) => [p.step, p]));
  assert.equal(byStep.denoise!.model, 'dncnn-color');
  assert.match(byStep.upscale!.model ?? '', /^sr-nomos/);
  assert.deepEqual(byStep.upscale!.params, { factor: 2, ...byStep.upscale!.params });
  for (const step of ['denoise', 'upscale']) assert.match(byStep[step]!.modelSha256 ?? '', /^[0-9a-f]{64}$/);
});

test('a conditional step is skipped when its condition does not hold, and the result says so', async () => {
  const noFaces = await sharp(readFileSync(fixture('fruits.jpg'))).resize(200).jpeg().toBuffer();
  const job = await system.waitForJob((await system.submit(noFaces, [
    { step: 'decode' }, { step: 'detect_faces' }, { step: 'upscale', params: { factor: 2 }, when: 'faces_found' }, { step: 'encode' },
  ])).jobId, { timeoutMs: 60_000 });
  assert.equal(job.status, 'done', JSON.stringify(job.error));
  const upscale = job.result!.provenance!.find((p) => p.step === 'upscale')!;
  assert.equal(upscale.status, 'skipped');
  assert.match(upscale.reason ?? '', /faces_found/);
  assert.equal(job.steps[2]!.status, 'skipped');
  const meta = await sharp(Buffer.from(await (await fetch(`${system.baseUrl}${job.result!.url}`, { headers: { authorization: `Bearer ${await system.token()}` } })).arrayBuffer())).metadata();
  assert.equal(meta.width, 200, 'not upscaled');
});

test('a pipeline asking for a model that is not installed is refused at submission, naming the fetch command', async () => {
  const form = new FormData();
  form.set('file', new Blob([new Uint8Array(readFileSync(fixture('dog.jpg')))]), 'image.jpg');
  form.set('pipeline', JSON.stringify([{ step: 'decode' }, { step: 'detect_objects', params: { model: 'yolox-s' } }]));
  const response = await fetch(`${system.baseUrl}/api/jobs`, { method: 'POST', body: form, headers: { authorization: `Bearer ${await system.token()}` } });
  assert.equal(response.status, 503);
  const body = await response.json() as { code: string; message: string };
  assert.equal(body.code, 'model_not_installed');
  assert.match(body.message, /npm run models -- fetch yolox-s/);
});
