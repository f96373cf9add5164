/**
 * Face enhancement through the bus. No face-restoration model exists on these machines, so:
 * without a fallback the pipeline is refused at submission; with FACE_RESTORE_FALLBACK set
 * (the x2 super-resolution model on aligned faces) it runs and the provenance says so.
 * Settings are read when modules load, so the environment is set before importing them.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import sharp from 'sharp';

process.env.FACE_RESTORE_FALLBACK = 'sr-nomos-compact-x2';
const { startSystem } = await import('../helpers/system.js');
const { fixture } = await import('../helpers/paths.js');

let system: Awaited<ReturnType<typeof startSystem>>;
before(async () => {
  system = await startSystem({ steps: ['decode', 'detect_faces', 'enhance_faces', 'encode'], env: { FACE_RESTORE_FALLBACK: 'sr-nomos-compact-x2' } });
});
after(async () => system?.stop());

test('decode -> detect_faces -> enhance_faces -> encode runs with the configured fallback, and says so', async () => {
  const photo = readFileSync(fixture('messi5.jpg'));
  const job = await system.waitForJob((await system.submit(photo, [
    { step: 'decode' }, { step: 'detect_faces' }, { step: 'enhance_faces', when: 'faces_found' }, { step: 'encode', params: { format: 'png' } },
  ])).jobId, { timeoutMs: 90_000 });
  assert.equal(job.status, 'done', JSON.stringify(job.error));
  assert.equal(job.result!.findings!.faces!.length, 1);
  const enhance = job.result!.provenance!.find((p) => p.step === 'enhance_faces')!;
  assert.equal(enhance.status, 'done');
  assert.match(enhance.note ?? '', /fallback sr-nomos-compact-x2/);
  assert.equal(enhance.model, 'sr-nomos-compact-x2');
  const response = await fetch(`${system.baseUrl}${job.result!.url}`, { headers: { authorization: `Bearer ${await system.token()}` } });
  const result = Buffer.from(await response.arrayBuffer());
  const original = await sharp(photo).raw().toBuffer({ resolveWithObject: true });
  const enhanced = await sharp(result).raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([enhanced.info.width, enhanced.info.height], [original.info.width, original.info.height]);
  // Only the face changes: a corner far from it is byte-identical, the face region is not.
  const face = job.result!.findings!.faces![0]!.box;
  const at = (img: typeof original, x: number, y: number) => img.data.subarray((y * img.info.width + x) * 3, (y * img.info.width + x) * 3 + 3);
  let changed = 0;
  for (let y = Math.round(face.y + face.height * 0.3); y < face.y + face.height * 0.7; y++) {
    for (let x = Math.round(face.x + face.width * 0.3); x < face.x + face.width * 0.7; x++) if (!at(original, x, y).equals(at(enhanced, x, y))) changed++;
  }
  assert.ok(changed > 0, 'pixels inside the face changed');
  for (let y = 0; y < 20; y++) for (let x = 0; x < 20; x++) assert.ok(at(original, x, y).equals(at(enhanced, x, y)), 'far corner unchanged');
});
