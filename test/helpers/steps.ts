/**
 * A step's prepared run() as the tests call it: with the parameters a job would carry, the
 * defaults filled in from the step's schema the way the runner fills them (runner/params.ts).
 */
import { resolveParams } from '../../services/lib/pipeline/params.js';
import type { PreparedStage, StageContext, StageInput, StageResult } from '../../services/lib/pipeline/stage.js';

export interface TestableStage<P> {
  run(input: StageInput, params: P, ctx: StageContext): Promise<StageResult>;
}

export function withDefaults<P extends object>(step: string, prepared: PreparedStage<never, never> | PreparedStage<any, any>): TestableStage<P> {
  return { run: async (input, params, ctx) => (prepared as PreparedStage<unknown, never>).run(input as never, resolveParams(step, params), ctx) };
}
