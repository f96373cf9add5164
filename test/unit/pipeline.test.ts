import assert from 'node:assert/strict';
import { test } from 'node:test';
import { conditionHolds, rescaleFindings } from '../../services/lib/pipeline/findings.js';
import { validatePipeline } from '../../services/lib/pipeline/pipeline.js';
import { findingGeometry, loadStages } from '../../services/lib/steps/registry.js';
import { AppError } from '../../services/lib/shared/errors.js';

async function rejects(pipeline: unknown, code: string, path: RegExp) {
  const stages = await loadStages();
  try {
    validatePipeline(pipeline, stages);
    assert.fail(`accepted ${JSON.stringify(pipeline)}`);
  } catch (error) {
    assert.ok(error instanceof AppError, String(error));
    assert.equal(error.status, 400);
    assert.equal(error.code, code, error.message);
    assert.match(error.message, path);
  }
}

test('a valid pipeline gets its defaults filled in', async () => {
  const pipeline = validatePipeline([{ step: 'decode' }, { step: 'encode' }], await loadStages());
  assert.deepEqual(pipeline[1]!.params, { format: 'input' });
  assert.deepEqual(pipeline[0]!.params, {});
});

test('unknown steps, bad parameters and steps that do not fit are refused with their path', async () => {
  await rejects([{ step: 'decode' }, { step: 'sharpen' }], 'unknown_step', /\/pipeline\/1\/step/);
  await rejects([{ step: 'decode' }, { step: 'encode', params: { quality: 500 } }], 'invalid_params', /\/pipeline\/1\/params\/quality/);
  await rejects([{ step: 'decode' }, { step: 'encode', params: { colour: 'blue' } }], 'invalid_params', /\/pipeline\/1\/params/);
  await rejects([{ step: 'encode' }], 'invalid_pipeline', /\/pipeline\/0\/step: a pipeline starts with decode/);
  await rejects([{ step: 'decode' }, { step: 'encode' }, { step: 'encode' }], 'invalid_pipeline', /\/pipeline\/2\/step/);
  await rejects([{ step: 'decode' }, { step: 'decode' }], 'invalid_pipeline', /\/pipeline\/1\/step/);
  await rejects([], 'invalid_pipeline', /pipeline/);
  await rejects('decode,encode', 'invalid_pipeline', /pipeline/);
  await rejects([{ step: 'decode', when: 'faces_found' }], 'invalid_pipeline', /\/pipeline\/0\/when/);
  // A condition on a kind that no earlier step finds would never (or always) hold: a mistake.
  await rejects([{ step: 'decode' }, { step: 'upscale', when: { found: 'faces' } }, { step: 'encode' }], 'invalid_pipeline', /\/pipeline\/1\/when: no earlier step finds "faces"/);
  await rejects([{ step: 'decode' }, { step: 'detect_objects' }, { step: 'upscale', when: 'faces_found' }, { step: 'encode' }], 'invalid_pipeline', /earlier steps find: image, objects/);
  await rejects([{ step: 'decode' }, { step: 'upscale', when: { found: 'Faces!' } }, { step: 'encode' }], 'invalid_pipeline', /\/pipeline\/1\/when/);
  // A step's own cross-field check (its manifest's check) runs at submission too.
  await rejects([{ step: 'decode' }, { step: 'upscale', params: { tileSize: 64, tileOverlap: 40 } }, { step: 'encode' }], 'invalid_tiling', /tileOverlap/);
});

test('generic conditions: found / notFound on any kind; the older strings mean the same', async () => {
  const stages = await loadStages();
  const ok = validatePipeline([{ step: 'decode' }, { step: 'detect_faces' }, { step: 'upscale', when: { found: 'faces' } }, { step: 'encode' }], stages);
  assert.deepEqual(ok[2]!.when, { found: 'faces' });
  assert.equal(conditionHolds({ found: 'faces' }, { faces: [] }), false);
  assert.equal(conditionHolds({ found: 'faces' }, { faces: [{}] }), true);
  assert.equal(conditionHolds({ notFound: 'objects' }, { objects: [] }), true);
  assert.equal(conditionHolds({ found: 'plates' }, { plates: [{ text: 'AB 123' }] }), true, 'a kind no built-in step knows');
  assert.equal(conditionHolds({ found: 'plates' }, {}), false);
});

test('findings follow a resize by the geometry their producing step declares; other kinds stay', async () => {
  const geometry = findingGeometry([...(await loadStages()).values()]);
  assert.deepEqual([...geometry.keys()].sort(), ['faces', 'image', 'objects']);
  const moved = rescaleFindings({
    faces: [{ box: { x: 10, y: 20, width: 30, height: 40 }, score: 0.9, landmarks: [[1, 2], [3, 4]] }],
    objects: [{ box: { x: 1, y: 1, width: 2, height: 2 }, score: 0.5, label: 'dog', classId: 16 }],
    image: { format: 'jpeg', width: 100, height: 50 },
    plates: [{ box: { x: 5, y: 5, width: 5, height: 5 } }],
  }, 2, 3, geometry);
  assert.deepEqual(moved.faces, [{ box: { x: 20, y: 60, width: 60, height: 120 }, score: 0.9, landmarks: [[2, 6], [6, 12]] }]);
  assert.deepEqual(moved.objects![0]!.box, { x: 2, y: 3, width: 4, height: 6 });
  assert.equal(moved.image, undefined, 'the original image info does not move');
  assert.equal(moved.plates, undefined, 'a kind without declared geometry is left alone');
});

test('step conditions follow the findings', () => {
  assert.equal(conditionHolds(undefined, {}), true);
  assert.equal(conditionHolds('faces_found', { faces: [] }), false);
  assert.equal(conditionHolds('faces_found', { faces: [{}] }), true);
  assert.equal(conditionHolds('no_faces_found', {}), true);
  assert.equal(conditionHolds('objects_found', { objects: [{}] }), true);
});
