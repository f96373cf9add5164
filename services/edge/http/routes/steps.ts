/**
 * GET /api/steps: the steps this edge accepts, what each takes and gives, and its parameters'
 * JSON Schema, the very one the edge validates with (schemas/steps/ or beside a step of STEPS_DIRS). Clients (the
 * web playground) build their forms and checks from this instead of keeping their own copy.
 */
import type { TemplatedApp } from 'uWebSockets.js';
import type { StepDescription } from '../../../lib/shared/schema-types.js';
import { schemaValidator } from '../../../lib/shared/schemas.js';
import type { ApiContext } from '../api.js';
import { json, route } from '../uws-http.js';

export function describeSteps(ctx: ApiContext): StepDescription[] {
  const rank = (s: StepDescription) => (s.input === 'encoded' ? 0 : s.output === 'encoded' ? 2 : 1);
  return [...ctx.jobs.steps.values()]
    .map((stage): StepDescription => ({
      step: stage.step,
      version: stage.version,
      input: stage.input,
      output: stage.output,
      conditional: stage.input === 'frame' && stage.output === 'frame',
      produces: Object.keys(stage.produces ?? {}),
      consumes: stage.consumes ?? {},
      // The schema the edge validates with (a file of schemas/steps/, or one beside a step of STEPS_DIRS).
      params: schemaValidator(`steps/${stage.step}.schema.json`).schema as Record<string, unknown>,
    }))
    // Pipeline order (decode, the frame steps, encode) reads best in a list of choices.
    .sort((a, b) => rank(a) - rank(b) || a.step.localeCompare(b.step));
}

export function mountStepRoutes(app: TemplatedApp, ctx: ApiContext): void {
  // Read once: the schemas ship with the code and change only with a restart.
  const body = { steps: describeSteps(ctx) };
  route(app, 'get', '/api/steps', async (req) => {
    await ctx.caller(req);
    return json(200, body);
  }, ctx.http);
}
