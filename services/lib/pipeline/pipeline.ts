/**
 * Checks a pipeline before a job is accepted: known steps, valid parameters (each step's
 * schema in schemas/steps/), and steps that fit together (decode first; a step that takes
 * a frame after one that gives a frame; encode last; a condition or a required finding only
 * after a step that finds that kind), each step's own cross-field checks. Defaults are filled in.
 * Needs only the steps' manifests.
 */
import { appError } from '../shared/errors.js';
import type { PipelineStep } from '../shared/schema-types.js';
import { validateOrThrow } from '../shared/schemas.js';
import { conditionKind } from './findings.js';
import { resolveParams } from './params.js';
import type { StepManifest } from './stage.js';

export function validatePipeline(raw: unknown, steps: ReadonlyMap<string, StepManifest>, pathPrefix = '/pipeline'): PipelineStep[] {
  const pipeline = structuredClone(validateOrThrow<PipelineStep[]>('common.schema.json#/definitions/Pipeline', raw, {
    code: 'invalid_pipeline', what: 'pipeline', prefix: pathPrefix,
  }));
  let previousOutput: 'encoded' | 'frame' | undefined;
  /** Finding kinds that earlier steps produce. */
  const produced = new Set<string>();
  pipeline.forEach((item, i) => {
    const at = `${pathPrefix}/${i}`;
    const manifest = steps.get(item.step);
    if (!manifest) {
      throw appError('unknown_step', `${at}/step: unknown step "${item.step}"; known steps: ${[...steps.keys()].join(', ')}`,
        { details: [{ path: `${at}/step`, message: 'unknown step' }] });
    }
    item.params = resolveParams<Record<string, unknown>>(item.step, item.params, `${at}/params`);
    manifest.check?.(item.params);
    const expected = i === 0 ? 'encoded' : previousOutput;
    if (manifest.input !== expected) {
      const why = i === 0 ? 'a pipeline starts with decode' : manifest.input === 'encoded' ? `"${item.step}" needs an encoded image, but it follows a step that gives raw pixels` : `"${item.step}" needs raw pixels, but "${pipeline[i - 1]!.step}" gives an encoded image (encode must be last)`;
      throw appError('invalid_pipeline', `${at}/step: ${why}`, { details: [{ path: `${at}/step`, message: why }] });
    }
    const kind = conditionKind(item.when);
    if (kind !== undefined && (manifest.input === 'encoded' || manifest.output === 'encoded')) {
      throw appError('invalid_pipeline', `${at}/when: ${item.step} cannot be conditional`, { details: [{ path: `${at}/when`, message: 'decode and encode always run' }] });
    }
    // A condition on a kind nothing before it finds would always skip (or always run): a mistake.
    if (kind !== undefined && !produced.has(kind)) {
      const why = `no earlier step finds "${kind}"${produced.size ? ` (earlier steps find: ${[...produced].join(', ')})` : ''}`;
      throw appError('invalid_pipeline', `${at}/when: ${why}`, { details: [{ path: `${at}/when`, message: why }] });
    }
    for (const [needed, how] of Object.entries(manifest.consumes ?? {})) {
      if (how !== 'required' || produced.has(needed)) continue;
      const why = `"${item.step}" needs "${needed}" from an earlier step (add a step that finds ${needed} before it)`;
      throw appError('invalid_pipeline', `${at}/step: ${why}`, { details: [{ path: `${at}/step`, message: why }] });
    }
    for (const k of Object.keys(manifest.produces ?? {})) produced.add(k);
    previousOutput = manifest.output;
  });
  return pipeline;
}
