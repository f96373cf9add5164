/**
 * A step's parameters as its run() gets them: checked against schemas/steps/<step>.schema.json
 * with every default filled in, so no step writes a default a second time. The edge does this
 * when it admits a job; the runner again for every message (a message may come from anywhere).
 */
import { validateOrThrow } from '../shared/schemas.js';

export function resolveParams<P = Record<string, unknown>>(step: string, params: unknown, prefix = '/params'): P {
  return validateOrThrow<P>(`steps/${step}.schema.json`, structuredClone(params ?? {}), {
    code: 'invalid_params', what: `parameters of ${step}`, prefix,
  });
}
