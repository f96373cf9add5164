import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { REPO_ROOT } from '../helpers/paths.js';
import { stepSchemaNames, validateOrThrow } from '../../services/lib/shared/schemas.js';
import { loadStages } from '../../services/lib/steps/registry.js';
import { AppError } from '../../services/lib/shared/errors.js';

test('the generated schema types are up to date with schemas/', () => {
  const check = spawnSync(process.execPath, ['scripts/gen-schema-types.mjs', '--check'], { cwd: REPO_ROOT, encoding: 'utf8' });
  assert.equal(check.status, 0, check.stderr);
});

test('every step file has a params schema and every params schema a step', async () => {
  const stages = await loadStages();
  assert.deepEqual([...stages.keys()].sort(), stepSchemaNames());
  for (const required of ['decode', 'encode']) assert.ok(stages.has(required));
});

test('validation errors name the failing path', () => {
  try {
    validateOrThrow('messages/job-event.schema.json', { type: 'job.exploded', jobId: 'x', at: 'now' });
    assert.fail('should throw');
  } catch (error) {
    assert.ok(error instanceof AppError);
    assert.equal(error.status, 400);
    const paths = (error.details as { path: string }[]).map((d) => d.path);
    assert.ok(paths.includes('/type'));
    assert.ok(paths.includes('/at'));
  }
});
