/**
 * A step's prepared run() as the tests call it: with the parameters a job would carry, the
 * defaults filled in from the step's schema the way the runner fills them (runner/params.ts).
 */
import { resolveParams } from '../../services/lib/pipeline/params.js';
import { pino } from 'pino';
import { rescaleFindings } from '../../services/lib/pipeline/findings.js';
import { admitStep } from '../../services/lib/pipeline/admission.js';
import type { PreparedStage, StageContext, StageDefinition, StepManifest, StageInput, StageResult } from '../../services/lib/pipeline/stage.js';
import { installedModelIds } from '../../services/lib/models/installed.js';
import type { Findings } from '../../services/lib/shared/schema-types.js';
import { findingGeometry } from '../../services/lib/steps/registry.js';
import { stage as decode } from '../../services/lib/steps/decode.js';
import { stage as detectFaces } from '../../services/lib/steps/detect_faces.js';
import { stage as detectObjects } from '../../services/lib/steps/detect_objects.js';

const silent = pino({ level: 'silent' });
const BUILT_IN_GEOMETRY = findingGeometry([decode, detectFaces, detectObjects].map((s) => s as unknown as StepManifest));

export interface TestableStage<P> {
  run(input: StageInput, params: P, ctx: StageContext): Promise<StageResult>;
}

export function withDefaults<P extends object>(step: string, prepared: PreparedStage<never, never> | PreparedStage<any, any>): TestableStage<P> {
  return { run: async (input, params, ctx) => (prepared as PreparedStage<unknown, never>).run(input as never, resolveParams(step, params), ctx) };
}

/**
 * What the runner gives a step, for calling one directly: findings so far, a signal that never
 * aborts, and rescale() by the built-in steps' declared finding geometry.
 */
export function stepContext(findings: Findings = {}, extra: Partial<StageContext> = {}): StageContext {
  return {
    log: extra.log ?? silent,
    signal: new AbortController().signal,
    findings,
    inputFormat: findings.image?.format,
    heartbeat() {},
    rescale: (f, sx, sy) => rescaleFindings(f, sx, sy, BUILT_IN_GEOMETRY),
    ...extra,
  };
}

/**
 * The edge's admission of one step, against a stage that runs here with `modelsDir` (what its
 * presence record would say): the step's own checks, then its manifest's model needs.
 */
export function admitHere<P>(stage: StageDefinition<P, never> | StageDefinition<P, any>, params: P, modelsDir: string, served: (installed: string[]) => string[] = (i) => i): void {
  stage.check?.(params);
  admitStep(stage.step, stage.models?.(params) ?? [], [{ worker: 'here', models: served(installedModelIds(modelsDir)) }]);
}
