/**
 * Checks a pipeline before a job is accepted: known steps, valid parameters (each step's
 * schema in schemas/steps/), and steps that fit together (decode first; a step that takes
 * a frame after one that gives a frame; encode last). Defaults are filled in.
 */
import { appError } from '../shared/errors.js';
import type { PipelineStep } from '../shared/schema-types.js';
import { validateOrThrow } from '../shared/schemas.js';
import type { StageDefinition } from './stage.js';

export function validatePipeline(raw: unknown, stages: Map<string, StageDefinition>, pathPrefix = '/pipeline'): PipelineStep[] {
  const pipeline = structuredClone(validateOrThrow<PipelineStep[]>('common.schema.json#/definitions/Pipeline', raw, {
    code: 'invalid_pipeline', what: 'pipeline', prefix: pathPrefix,
  }));
  let previousOutput: 'encoded' | 'frame' | undefined;
  pipeline.forEach((item, i) => {
    const at = `${pathPrefix}/${i}`;
    const stage = stages.get(item.step);
    if (!stage) {
      throw appError('unknown_step', `${at}/step: unknown step "${item.step}"; known steps: ${[...stages.keys()].join(', ')}`,
        { details: [{ path: `${at}/step`, message: 'unknown step' }] });
    }
    item.params = validateOrThrow<Record<string, unknown>>(`steps/${item.step}.schema.json`, item.params ?? {}, {
      code: 'invalid_params', what: `parameters of ${item.step}`, prefix: `${at}/params`,
    });
    const expected = i === 0 ? 'encoded' : previousOutput;
    if (stage.input !== expected) {
      const why = i === 0 ? 'a pipeline starts with decode' : stage.input === 'encoded' ? `"${item.step}" needs an encoded image, but it follows a step that gives raw pixels` : `"${item.step}" needs raw pixels, but "${pipeline[i - 1]!.step}" gives an encoded image (encode must be last)`;
      throw appError('invalid_pipeline', `${at}/step: ${why}`, { details: [{ path: `${at}/step`, message: why }] });
    }
    if (item.when && item.when !== 'always' && (stage.input === 'encoded' || stage.output === 'encoded')) {
      throw appError('invalid_pipeline', `${at}/when: ${item.step} cannot be conditional`, { details: [{ path: `${at}/when`, message: 'decode and encode always run' }] });
    }
    previousOutput = stage.output;
  });
  return pipeline;
}

/** Whether a step's `when` condition holds for the findings so far. */
export function conditionHolds(when: PipelineStep['when'], findings: { faces?: unknown[]; objects?: unknown[] }): boolean {
  switch (when ?? 'always') {
    case 'always': return true;
    case 'faces_found': return (findings.faces?.length ?? 0) > 0;
    case 'no_faces_found': return (findings.faces?.length ?? 0) === 0;
    case 'objects_found': return (findings.objects?.length ?? 0) > 0;
    default: return true;
  }
}
