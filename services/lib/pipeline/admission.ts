/**
 * Can a job's step run on the stage processes that are up? The edge asks this at submission from
 * the step's manifest (the models a job with these params needs) and the stage processes'
 * presence records (the models each can serve), never from its own disk. Pure, unit-tested.
 */
import { appError } from '../shared/errors.js';

/** What the edge knows of one live stage process for a step. */
export interface StepHost {
  worker: string;
  /** Model ids it can serve; undefined when it did not say (then nothing is refused on its account). */
  models?: readonly string[];
}

/** The needs (each: any one of its ids) that `served` does not meet. */
export function unmetNeeds(needs: readonly (readonly string[])[], served: readonly string[]): (readonly string[])[] {
  const have = new Set(served);
  return needs.filter((anyOf) => !anyOf.some((id) => have.has(id)));
}

/**
 * Refuses (503 model_not_installed, not retryable) a step whose needs no live host meets.
 * No live host, or one that does not list its models: admitted; the job waits in the step's
 * queue for a stage, and a stage that lacks the model fails it with the same error.
 */
export function admitStep(step: string, needs: readonly (readonly string[])[], hosts: readonly StepHost[]): void {
  if (needs.length === 0 || hosts.length === 0) return;
  let closest: (readonly string[])[] | undefined;
  for (const host of hosts) {
    if (host.models === undefined) return;
    const unmet = unmetNeeds(needs, host.models);
    if (unmet.length === 0) return;
    if (!closest || unmet.length < closest.length) closest = unmet;
  }
  const missing = closest![0]!;
  const id = missing[0]!;
  const alternatives = missing.length > 1 ? ` (or ${missing.slice(1).join(', ')})` : '';
  throw appError('model_not_installed',
    `model "${id}"${alternatives} is not installed on any running ${step} stage (${hosts.length} up); run \`npm run models -- fetch ${id}\` where the stage runs`,
    { details: { model: id, step, anyOf: missing } });
}
