/**
 * /api/ai/face-enhance with FACE_RESTORE_FALLBACK set: no restoration model is installed, so
 * the fallback super-resolution model restores the aligned faces and the answer is the image.
 * The setting is read when the stage module loads, so it is set before anything is imported.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';

process.env.FACE_RESTORE_FALLBACK = 'sr-nomos-compact-x2';
const { default: sharp } = await import('sharp');
const { bearer, multipart, request } = await import('../helpers/edge-client.js');
const { fixture } = await import('../helpers/paths.js');
const { startSystem } = await import('../helpers/system.js');

describe('PLAYE face-enhance with FACE_RESTORE_FALLBACK', () => {
  let system: Awaited<ReturnType<typeof startSystem>>;
  before(async () => {
    system = await startSystem({ steps: ['decode', 'detect_faces', 'enhance_faces', 'encode'], env: { FACE_RESTORE_FALLBACK: 'sr-nomos-compact-x2' } });
  });
  after(async () => system?.stop());

  test('answers the enhanced image, same size, and the provenance names the fallback', async () => {
    const photo = readFileSync(fixture('messi5.jpg'));
    const form = multipart([{ name: 'file', value: photo, filename: 'image.png', contentType: 'image/png' }, { name: 'weight', value: '0.5' }]);
    const answer = await request(`${system.baseUrl}/api/ai/face-enhance`, { method: 'POST', body: form.body, headers: { ...bearer(await system.token()), 'content-type': form.contentType } });
    assert.equal(answer.status, 200, answer.bytes.toString());
    assert.equal(answer.headers['content-type'], 'image/jpeg');
    const meta = await sharp(answer.bytes).metadata();
    assert.deepEqual([meta.width, meta.height], [548, 342]);
    const job = await request(`${system.baseUrl}/api/jobs/${answer.headers['x-task-id']}`, { headers: bearer(await system.token()) });
    const enhance = job.body.result.provenance.find((p: { step: string }) => p.step === 'enhance_faces');
    assert.match(JSON.stringify(enhance), /sr-nomos-compact-x2/);
    assert.ok(job.body.result.faces.length >= 1, 'detect_faces found the face first');
  });
});
