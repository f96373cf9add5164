/**
 * The baseline: the same stage functions called one after another in this process, the frame
 * handed over in memory. No bus, no blob store, no HTTP.
 */
import type { Frame, EncodedImage } from '../../services/lib/pipeline/frame.js';
import type { PreparedStage, StageContext, StageInput } from '../../services/lib/pipeline/stage.js';
import { loadStage } from '../../services/lib/steps/registry.js';
import type { Findings } from '../../services/lib/shared/schema-types.js';
import { MODELS_DIR, now, silentLog } from './util.js';
import { resolveParams } from '../../services/lib/pipeline/params.js';
import { stepContext } from '../../test/helpers/steps.js';
import { workBegins } from '../../services/lib/shared/idle-collection.js';

export interface PipelineStep { step: string; params?: Record<string, unknown> }

const prepared = new Map<string, PreparedStage<Record<string, unknown>>>();

export async function prepare(steps: string[]): Promise<void> {
  for (const step of steps) {
    if (prepared.has(step)) continue;
    const stage = await loadStage(step);
    prepared.set(step, (await stage.prepare({ log: silentLog, modelsDir: MODELS_DIR })) as PreparedStage<Record<string, unknown>>);
  }
}

export async function closeAll(): Promise<void> {
  for (const p of prepared.values()) await p.close?.();
  prepared.clear();
}

/** Runs the pipeline on the encoded image; total ms and ms per step. */
export async function runInProcess(pipeline: PipelineStep[], image: Buffer): Promise<{ totalMs: number; stepMs: number[]; output?: EncodedImage; findings: Findings }> {
  await prepare(pipeline.map((p) => p.step));
  let input: { frame?: Frame; encoded?: EncodedImage } = { encoded: { bytes: image, format: '', contentType: 'image/jpeg' } };
  let findings: Findings = {};
  const stepMs: number[] = [];
  // As a stage's runner does around a message: the collection when idle (IDLE_GC_MS) follows
  // the job, so that (a) and (b) reuse memory alike.
  const done = workBegins();
  const t0 = now();
  let output: EncodedImage | undefined;
  try {
    for (const item of pipeline) {
      const ctx: StageContext = stepContext(findings, { log: silentLog });
      const a = now();
      const result = await prepared.get(item.step)!.run(input as StageInput, resolveParams(item.step, item.params), ctx);
      stepMs.push(now() - a);
      findings = { ...findings, ...result.findings };
      if (result.encoded) output = result.encoded;
      input = result.frame ? { frame: result.frame } : input.frame ? { frame: input.frame } : {};
    }
    return { totalMs: now() - t0, stepMs, output, findings };
  } finally {
    done();
  }
}
