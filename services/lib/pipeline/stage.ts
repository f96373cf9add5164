/**
 * The contract between a stage file and the shared stage runner.
 *
 * A stage file (services/lib/steps/<step>.ts) holds only image work: a function from
 * the input (a frame, or for decode the uploaded bytes) and the step's parameters to an
 * output frame (or encoded image) and findings. Everything else (bus, acks, retries,
 * blobs, events, metrics, cancellation) lives once in the runner.
 *
 * Adding a step = one file in services/lib/steps/ exporting `stage`, and one params
 * schema in schemas/steps/<step>.schema.json.
 */
import type { Logger } from '../shared/logger.js';
import type { Findings, Provenance } from '../shared/schema-types.js';
import type { EncodedImage, Frame } from './frame.js';

export type StageInputKind = 'encoded' | 'frame';
export type StageOutputKind = 'encoded' | 'frame';

/** Exactly the input a step's definition declares: the runner loads it before run() is called. */
export type StageInput<K extends StageInputKind = StageInputKind> = K extends 'frame' ? { frame: Frame } : { encoded: EncodedImage };

export interface StageContext {
  log: Logger;
  /** Aborted when the job is canceled or times out while the step runs. */
  signal: AbortSignal;
  /** Findings of earlier steps of this job (faces from detect_faces, ...). */
  findings: Findings;
  /** The image as decode first saw it (format etc.), when known. */
  inputFormat?: string;
  /** Keep the message alive during long work (the runner also does it on a timer). */
  heartbeat(): void;
}

/** What a step says about how it produced its output, for the forensic record. */
export type StageProvenance = Pick<Provenance, 'model' | 'modelSha256' | 'provider' | 'note'>;

export interface StageResult {
  frame?: Frame;
  encoded?: EncodedImage;
  /** Merged into the job's findings (later keys replace earlier ones). */
  findings?: Findings;
  provenance?: StageProvenance;
}

export interface PreparedStage<P, K extends StageInputKind = StageInputKind> {
  /** `params` are valid for the step's schema with every default filled in (the <Step>ParamsResolved types). */
  run(input: StageInput<K>, params: P, ctx: StageContext): Promise<StageResult>;
  /** Extra health information (execution provider, models loaded). */
  describe?(): Record<string, unknown>;
  close?(): Promise<void>;
}

export interface StageDefinition<P = Record<string, unknown>, K extends StageInputKind = StageInputKind> {
  /** Step name: also the subject token (photolab.stage.<step>) and the params schema's file name. */
  step: string;
  input: K;
  output: StageOutputKind;
  /**
   * Called once per process before the first message: load models, warm up.
   * Throws an AppError when the step cannot run on this machine (for example a missing model).
   */
  prepare(options: PrepareOptions): Promise<PreparedStage<P, K>>;
  /**
   * Checked by the edge at submission: can a job with these params run at all here?
   * (For example: the model asked for is not installed.) Throws an AppError when not.
   */
  admit?(params: P, options: PrepareOptions): void;
}

export interface PrepareOptions {
  log: Logger;
  modelsDir: string;
}
