import assert from 'node:assert/strict';
import { test } from 'node:test';
import { conditionHolds, validatePipeline } from '../../services/lib/pipeline/pipeline.js';
import { loadStages } from '../../services/lib/steps/registry.js';
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
});

test('step conditions follow the findings', () => {
  assert.equal(conditionHolds(undefined, {}), true);
  assert.equal(conditionHolds('faces_found', { faces: [] }), false);
  assert.equal(conditionHolds('faces_found', { faces: [{}] }), true);
  assert.equal(conditionHolds('no_faces_found', {}), true);
  assert.equal(conditionHolds('objects_found', { objects: [{}] }), true);
});
