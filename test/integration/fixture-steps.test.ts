/**
 * Adding a step is one file and one schema: two fixture steps (test/fixtures/steps/grayscale and
 * blur_faces, each a .ts file and a .schema.json beside it) are found through STEPS_DIRS by the
 * edge and the stages, validated, admitted and run through the real bus like the built-in ones.
 * blur_faces consumes faces and produces a finding kind of its own ("blurred", with geometry),
 * so it also shows the open findings map, generic conditions and geometry following a resize.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { REPO_ROOT, fixture } from '../helpers/paths.js';
import { startSystem, type TestSystem } from '../helpers/system.js';

const STEPS_DIR = path.join(REPO_ROOT, 'dist/test/fixtures/steps');
let system: TestSystem;

before(async () => {
  system = await startSystem({
    env: { STEPS_DIRS: STEPS_DIR },
    steps: ['decode', 'detect_faces', 'blur_faces', 'grayscale', 'upscale', 'encode'],
  });
});
after(async () => system?.stop());

async function resultOf(url: string): Promise<Buffer> {
  const answer = await fetch(`${system.baseUrl}${url}`, { headers: { authorization: `Bearer ${await system.token()}` } });
  assert.equal(answer.status, 200);
  return Buffer.from(await answer.arrayBuffer());
}

async function post(pipeline: unknown, image: Buffer): Promise<{ status: number; body: { code?: string; message?: string } }> {
  const form = new FormData();
  form.set('file', new Blob([new Uint8Array(image)]), 'image.jpg');
  form.set('pipeline', JSON.stringify(pipeline));
  const answer = await fetch(`${system.baseUrl}/api/jobs`, { method: 'POST', body: form, headers: { authorization: `Bearer ${await system.token()}` } });
  return { status: answer.status, body: await answer.json() as { code?: string; message?: string } };
}

test('the fixture steps are listed with their schemas beside the built-in ones', async () => {
  const answer = await fetch(`${system.baseUrl}/api/steps`, { headers: { authorization: `Bearer ${await system.token()}` } });
  const text = await answer.text();
  assert.equal(answer.status, 200);
  assert.match(text, /"grayscale"/);
  assert.match(text, /"blur_faces"/);
  assert.match(text, /pixelates the faces/);
});

test('decode -> detect_faces -> blur_faces (when faces found) -> grayscale -> upscale -> encode', async () => {
  const photo = await sharp(readFileSync(fixture('messi5.jpg'))).resize(320).jpeg({ quality: 92 }).toBuffer();
  const job = await system.waitForJob((await system.submit(photo, [
    { step: 'decode' },
    { step: 'detect_faces' },
    { step: 'blur_faces', params: { block: 8 }, when: { found: 'faces' } },
    { step: 'grayscale' },
    { step: 'upscale', params: { factor: 2 } },
    { step: 'encode', params: { format: 'png' } },
  ])).jobId, { timeoutMs: 90_000 });
  assert.equal(job.status, 'done', JSON.stringify(job.error));
  assert.deepEqual(job.steps.map((s) => `${s.step}:${s.status}`),
    ['decode:done', 'detect_faces:done', 'blur_faces:done', 'grayscale:done', 'upscale:done', 'encode:done']);
  const faces = job.result!.findings!.faces!;
  const blurred = job.result!.findings!.blurred as { box: { x: number; y: number; width: number; height: number } }[];
  assert.ok(faces.length >= 1, 'messi5 has a face');
  assert.equal(blurred.length, faces.length, 'every face was pixelated');
  const png = await resultOf(job.result!.url!);
  const out = await sharp(png).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
  assert.equal(out.info.width, 640, 'upscaled by 2');
  // The fixture step's own finding kind moved with the pixels (by the geometry its manifest declares),
  // as did the faces: a face box lies inside its blurred box, both in the output's coordinates.
  const face = faces[0]!.box;
  const box = blurred[0]!.box;
  assert.ok(box.x <= face.x + 1e-6 && box.x + box.width >= face.x + face.width - 1e-6, `${JSON.stringify(box)} covers ${JSON.stringify(face)}`);
  assert.ok(box.x + box.width <= out.info.width + 1e-6);
  assert.equal((await sharp(png).metadata()).channels, 1, 'grayscale gave one channel, and encode kept it');
  // Pixelated: inside the blurred box the image is flat over 16x16 output blocks (8 px blocks, upscaled).
  const at = (x: number, y: number) => out.data[Math.round(y) * out.info.width + Math.round(x)]!;
  const cx = box.x + box.width / 2;
  const cy = box.y + box.height / 2;
  const variance = (x0: number, y0: number) => {
    const v: number[] = [];
    for (let y = 0; y < 6; y++) for (let x = 0; x < 6; x++) v.push(at(x0 + x, y0 + y));
    const mean = v.reduce((a, b) => a + b, 0) / v.length;
    return v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length;
  };
  // Blocks start at the blurred box's corner (x0, y0 before the x2 upscale).
  const blockX = box.x + Math.floor((cx - box.x) / 16) * 16 + 5;
  const blockY = box.y + Math.floor((cy - box.y) / 16) * 16 + 5;
  assert.ok(variance(blockX, blockY) < 40, `a pixelation block is nearly flat (variance ${variance(blockX, blockY).toFixed(1)})`);
  const provenance = job.result!.provenance!.find((p) => p.step === 'blur_faces')!;
  assert.match(provenance.note ?? '', /pixelated \d+ face/);
});

test('the condition holds on findings: no faces, so blur_faces is skipped and the image still goes grey', async () => {
  const fruits = await sharp(readFileSync(fixture('fruits.jpg'))).resize(200).jpeg().toBuffer();
  const job = await system.waitForJob((await system.submit(fruits, [
    { step: 'decode' }, { step: 'detect_faces' }, { step: 'blur_faces', when: { found: 'faces' } }, { step: 'grayscale', params: { method: 'mean' } }, { step: 'encode', params: { format: 'png' } },
  ])).jobId, { timeoutMs: 60_000 });
  assert.equal(job.status, 'done', JSON.stringify(job.error));
  assert.equal(job.steps[2]!.status, 'skipped');
  assert.match(job.result!.provenance![2]!.reason ?? '', /\{"found":"faces"\} did not hold/);
  assert.equal((await sharp(await resultOf(job.result!.url!)).metadata()).channels, 1);
});

test('what a manifest declares is checked at submission: a step that needs faces without a detector, a bad param', async () => {
  const photo = await sharp(readFileSync(fixture('messi5.jpg'))).resize(100).jpeg().toBuffer();
  const noDetector = await post([{ step: 'decode' }, { step: 'blur_faces' }, { step: 'encode' }], photo);
  assert.equal(noDetector.status, 400);
  assert.equal(noDetector.body.code, 'invalid_pipeline');
  assert.match(noDetector.body.message ?? '', /\/pipeline\/1\/step: "blur_faces" needs "faces" from an earlier step/);
  const badParam = await post([{ step: 'decode' }, { step: 'grayscale', params: { method: 'sepia' } }, { step: 'encode' }], photo);
  assert.equal(badParam.status, 400);
  assert.equal(badParam.body.code, 'invalid_params');
  assert.match(badParam.body.message ?? '', /\/pipeline\/1\/params\/method/);
  const noFinder = await post([{ step: 'decode' }, { step: 'grayscale', when: { found: 'blurred' } }, { step: 'encode' }], photo);
  assert.equal(noFinder.status, 400);
  assert.match(noFinder.body.message ?? '', /no earlier step finds "blurred"/);
});
