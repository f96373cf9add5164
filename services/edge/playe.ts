/**
 * The PLAYE front end's endpoints (/api/ai/<name>) as pipelines. The front end posts the image
 * as multipart field `file` (always named image.png, whatever the format) and each option as
 * its own form field, JSON-encoded (`factor` = `2`, `level` = `"medium"`); plain values and
 * query parameters are accepted too. Option names are the parameter names of the endpoint's
 * step (schemas/steps/<step>.schema.json), so a parameter added to a step is accepted here
 * without a change; image endpoints also take the encoder's `format` and `quality`.
 */
import type { StepManifest } from '../lib/pipeline/stage.js';
import { appError } from '../lib/shared/errors.js';
import type { PipelineStep } from '../lib/shared/schema-types.js';
import { schemaValidator } from '../lib/shared/schemas.js';
import { formValue } from './http/multipart.js';

export interface PlayeEndpoint {
  /** Steps between decode and (for images) encode. */
  steps: string[];
  /** The step that takes the endpoint's options. */
  optionsStep: string;
  /** What the synchronous answer is: the image, or the detections as JSON. */
  answer: 'image' | 'faces' | 'objects';
  /**
   * Option values under the old backend's names, mapped to ours before validation (the old
   * denoise levels were light, medium, heavy; our strongest is `strong`).
   */
  valueAliases?: Record<string, Record<string, unknown>>;
}

export const PLAYE_ENDPOINTS: Record<string, PlayeEndpoint> = {
  'face-enhance': { steps: ['detect_faces', 'enhance_faces'], optionsStep: 'enhance_faces', answer: 'image' },
  upscale: { steps: ['upscale'], optionsStep: 'upscale', answer: 'image' },
  denoise: { steps: ['denoise'], optionsStep: 'denoise', answer: 'image', valueAliases: { level: { heavy: 'strong' } } },
  'detect-faces': { steps: ['detect_faces'], optionsStep: 'detect_faces', answer: 'faces' },
  'detect-objects': { steps: ['detect_objects'], optionsStep: 'detect_objects', answer: 'objects' },
};

/**
 * The names the front end's SmartRouter (src/router.js) posts to, `/api/ai/<task>` with its
 * camelCase task names, beside the kebab-case ones its api client uses.
 */
export const PLAYE_ALIASES: Record<string, string> = {
  faceEnhance: 'face-enhance',
  detectFaces: 'detect-faces',
  detectObjects: 'detect-objects',
};

/**
 * Tasks the front end may ask for that no model here can do. They answer a clear error
 * instead of 404, so the front end's log says why it fell back to its own models.
 * (No scene classifier is among the models of this deployment: detectScenes is one.)
 */
export const PLAYE_UNAVAILABLE: Record<string, string> = {
  detectScenes: 'scene detection needs a scene model, and none is installed on this server; the front end\'s own scene-change detection applies',
};

/** The endpoint a request names, by its kebab-case name or the router's camelCase alias. */
export function playeEndpoint(name: string): PlayeEndpoint | undefined {
  return Object.hasOwn(PLAYE_ENDPOINTS, name) ? PLAYE_ENDPOINTS[name] : Object.hasOwn(PLAYE_ALIASES, name) ? PLAYE_ENDPOINTS[PLAYE_ALIASES[name]!] : undefined;
}

const ENCODE_OPTIONS = ['format', 'quality'];

/** Parameter names of a step, from the params schema the edge validates with (empty when the step has none). */
function stepOptionNames(step: string): string[] {
  try {
    const schema = schemaValidator(`steps/${step}.schema.json`).schema as { properties?: Record<string, unknown> };
    return Object.keys(schema.properties ?? {});
  } catch {
    return [];
  }
}

/**
 * The pipeline for an endpoint and the caller's raw options (form fields and query
 * parameters, still strings). Throws 400 unknown_option naming every option it does not know,
 * and 503 model_not_installed when a step of the endpoint is not installed here at all.
 */
export function playePipeline(endpoint: PlayeEndpoint, rawOptions: Map<string, unknown>, stages: ReadonlyMap<string, StepManifest>): PipelineStep[] {
  for (const step of endpoint.steps) {
    if (!stages.has(step)) {
      throw appError('model_not_installed', `this server has no ${step} step installed, so it cannot do this`, { details: { step } });
    }
  }
  const stepNames = stepOptionNames(endpoint.optionsStep);
  const encodeNames = endpoint.answer === 'image' ? ENCODE_OPTIONS : [];
  const unknown = [...rawOptions.keys()].filter((name) => !stepNames.includes(name) && !encodeNames.includes(name));
  if (unknown.length > 0) {
    throw appError('unknown_option', `unknown option${unknown.length > 1 ? 's' : ''}: ${unknown.join(', ')}; known: ${[...stepNames, ...encodeNames].join(', ')}`,
      { details: { unknown, known: [...stepNames, ...encodeNames] } });
  }
  const stepParams: Record<string, unknown> = {};
  const encodeParams: Record<string, unknown> = {};
  for (const [name, raw] of rawOptions) {
    // Form fields and query parameters are strings (maybe JSON-encoded); a JSON body's values are already typed.
    let value = typeof raw === 'string' ? formValue(raw) : raw;
    const aliases = endpoint.valueAliases?.[name];
    if (aliases && typeof value === 'string' && Object.hasOwn(aliases, value)) value = aliases[value];
    (stepNames.includes(name) ? stepParams : encodeParams)[name] = value;
  }
  const pipeline: PipelineStep[] = [{ step: 'decode' }];
  for (const step of endpoint.steps) pipeline.push(step === endpoint.optionsStep ? { step, params: stepParams } : { step });
  if (endpoint.answer === 'image') pipeline.push({ step: 'encode', params: encodeParams });
  return pipeline;
}
