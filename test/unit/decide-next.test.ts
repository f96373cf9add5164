import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decideNext, type NextQuestion } from '../../services/lib/pipeline/decide-next.js';

const base: NextQuestion = { index: 0, length: 3, output: 'frame', frameInHand: true, nextHostedInput: 'frame', fusion: true };

test('after the last step the job finishes, whatever else holds', () => {
  assert.equal(decideNext({ ...base, index: 2 }), 'finish');
  assert.equal(decideNext({ ...base, index: 0, length: 1 }), 'finish');
  assert.equal(decideNext({ ...base, index: 2, output: 'encoded', frameInHand: false }), 'finish');
});

test('the job continues here only with a frame in hand, fusion on and the next step hosted and taking frames', () => {
  assert.equal(decideNext(base), 'continue');
  assert.equal(decideNext({ ...base, fusion: false }), 'publish');
  assert.equal(decideNext({ ...base, nextHostedInput: undefined }), 'publish', 'next step not hosted here');
  assert.equal(decideNext({ ...base, nextHostedInput: 'encoded' }), 'publish');
  assert.equal(decideNext({ ...base, frameInHand: false }), 'publish', 'a skipped step that only had a stored reference');
  assert.equal(decideNext({ ...base, output: 'encoded' }), 'publish');
});
