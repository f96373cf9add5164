/**
 * The contract between a stage file and the shared stage runner.
 *
 * A stage file (services/lib/steps/<step>.ts) holds only image work: a function from
 * the input (a frame, or for decode the uploaded bytes) and the step's parameters to an
 * output frame (or encoded image) and findings. Everything else (bus, acks, retries,
 * blobs, events, metrics, cancellation) lives once in the runner.
 *
 * Adding a step = one file in services/lib/steps/ exporting `stage` (its manifest and its
 * prepare/run), and one params schema in schemas/steps/<step>.schema.json.
 */
import type { Config } from '../shared/config.js';
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
  /**
   * Findings moved to a frame resized by (sx, sy), by each kind's declared geometry. The runner
   * does this itself for findings a resizing step does not return; a step that resizes and then
   * works on earlier findings (enhance_faces with upscale) calls it.
   */
  rescale(findings: Findings, sx: number, sy: number): Findings;
}

/** What a step says about how it produced its output, for the forensic record. */
export type StageProvenance = Pick<Provenance, 'model' | 'modelSha256' | 'provider' | 'note'>;

export interface StageResult {
  /**
   * The output frame. Handing back the input frame object itself says "pixels unchanged": the
   * runner then passes the stored input on instead of storing a copy, so a step must never
   * change the input's pixels in place.
   */
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
  /**
   * The model ids this process can serve for its manifest's needs, given those installed here
   * (default: the installed ones). A step with a configured fallback adds what the fallback
   * stands in for.
   */
  servedModels?(installed: string[]): string[];
  close?(): Promise<void>;
}

/**
 * How a finding kind's items move when a step changes the frame's size (upscale): the fields of
 * each item that hold a box ({x, y, width, height}), a point ([x, y]) or a list of points. A kind
 * with no geometry (image info) is left as it is.
 */
export interface FindingGeometry {
  boxes?: string[];
  points?: string[];
  pointLists?: string[];
}

/**
 * What a step is, as data: the edge validates pipelines and admits jobs from this alone, without
 * importing what the step runs (its models and pixel code are imported by prepare(), in the
 * stage process only).
 */
export interface StepManifest<P = Record<string, unknown>, K extends StageInputKind = StageInputKind> {
  /** Step name: also the subject token (photolab.stage.<step>) and the params schema's file name. */
  step: string;
  /** The step's own version (semver): changes when the same params may give other pixels. */
  version: string;
  input: K;
  output: StageOutputKind;
  /** The finding kinds this step adds (the key in the job's findings), with their geometry. */
  produces?: Record<string, FindingGeometry>;
  /**
   * The finding kinds this step reads: 'required' ones must be produced by an earlier step of
   * the pipeline (checked at submission); 'optional' ones are used when present.
   */
  consumes?: Record<string, 'required' | 'optional'>;
  /**
   * The models a job with these params needs: each inner list is one need, met by any of its
   * ids (first preferred). The edge checks them against what live stage processes report as
   * installed (their presence records), never against its own disk.
   */
  models?(params: P): string[][];
  /** Checks across parameters that a schema cannot express (pure; throws an AppError). */
  check?(params: P): void;
}

export interface StageDefinition<P = Record<string, unknown>, K extends StageInputKind = StageInputKind> extends StepManifest<P, K> {
  /**
   * Called once per process before the first message: load models, warm up. Imports the step's
   * heavy modules (models, pixel code) itself, so that reading the manifest stays cheap.
   * Throws an AppError when the step cannot run on this machine (for example a missing model).
   */
  prepare(options: PrepareOptions): Promise<PreparedStage<P, K>>;
}

export interface PrepareOptions {
  log: Logger;
  modelsDir: string;
  /** The process's settings (read from the environment when left out: tests). */
  config?: Config;
}
