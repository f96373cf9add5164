/**
 * The one place where a step meets the bus. For each message on photolab.stage.<step>:
 *   check the job is still live -> load the input (blob or frame) -> run the stage function
 *   (keeping the message alive) -> store the output -> publish the next step (awaiting the
 *   JetStream ack) -> events, job record, metrics -> ack the input.
 * Errors: retried with a growing delay up to MAX_ATTEMPTS, then the job fails with a clear
 * error and the message goes to photolab.dlq.<step>. Canceled or timed-out jobs are skipped.
 *
 * Every publish carries a message id derived from (job, step index), and the input is acked
 * last, so a step that dies anywhere in between runs again without forking the job or
 * duplicating its events.
 */
import type { ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import type { Bus } from '../bus/bus.js';
import { publishEvent } from '../bus/events.js';
import { frameId } from '../bus/frames/frame-store.js';
import { isTerminal, type VersionedRecord } from '../bus/job-store.js';
import { msgIds, resultBlobName, STREAMS, stageConsumer, subjects } from '../bus/subjects.js';
import type { Config } from '../shared/config.js';
import { AppError, toAppError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import type { BlobRef, DeadLetter, FrameRef, JobMessage, JobRecord, Provenance, ResultInfo, StageMetric } from '../shared/schema-types.js';
import { schemaValidator, describeErrors } from '../shared/schemas.js';
import type { EncodedImage, Frame } from './frame.js';
import { finishJob } from './job-lifecycle.js';
import { conditionHolds } from './pipeline.js';
import type { PreparedStage, StageDefinition, StageResult } from './stage.js';

const validateJobMessage = schemaValidator<JobMessage>('messages/job-message.schema.json');

/** Thrown inside a run when the job ended meanwhile; not an error of the step. */
class JobEnded extends Error {
  constructor(readonly status: JobRecord['status']) {
    super(`job ended: ${status}`);
  }
}

/** Told about every run, for the stage's Prometheus metrics. */
export interface RunObserver {
  /** A message is being worked on ... */
  started(): void;
  /** ... and is no longer (acked, naked or termed). */
  settled(): void;
  /** A run was recorded (also failed and skipped ones); errorCode says why an `error` run failed. */
  finished(status: StageMetric['status'], ms: number, errorCode?: string): void;
}

export interface RunnerHooks {
  /** Test hook: called after the stage function returned, before anything is stored. */
  afterRun?(message: JobMessage): Promise<void> | void;
  /** Test hook: called after the next step was published, before the input is acked. */
  beforeAck?(message: JobMessage): Promise<void> | void;
}

/** The steps this process can run, for continuing a job locally (see runStep). */
export type ColocatedSteps = Map<string, { stage: StageDefinition; prepared: PreparedStage<Record<string, unknown>> }>;

/** The step a message is at now: a chain continued in this process moves it on. */
interface Position {
  message: JobMessage;
}

export class StageRunner {
  private messages?: ConsumerMessages;
  private readonly inFlight = new Set<Promise<void>>();
  private stopping = false;
  private processed = 0;

  constructor(
    private readonly bus: Bus,
    private readonly stage: StageDefinition,
    private readonly prepared: PreparedStage<Record<string, unknown>>,
    private readonly config: Config,
    private readonly log: Logger,
    private readonly hooks: RunnerHooks = {},
    private readonly observer?: RunObserver,
    /**
     * Other steps hosted by this process. When the next step of a job is one of them (and
     * STAGE_FUSION is on) the job continues here with the frame in memory: no frame store,
     * no step message, no consumer hop. The first step's message is held (in-progress acks)
     * until the chain hands on through the bus or ends, so a crash re-runs the chain.
     */
    private readonly colocated: ColocatedSteps = new Map(),
  ) {}

  private host(step: string): { stage: StageDefinition; prepared: PreparedStage<Record<string, unknown>> } {
    if (step === this.stage.step) return { stage: this.stage, prepared: this.prepared };
    const local = this.colocated.get(step);
    if (!local) throw new AppError(500, 'misrouted_message', `step ${step} is not hosted by the ${this.stage.step} runner`);
    return local;
  }

  /** Whether the job can go on to `nextIndex` here instead of through the bus. */
  private continuesHere(message: JobMessage, nextIndex: number): boolean {
    const next = message.pipeline[nextIndex];
    return this.config.stageFusion && next !== undefined && this.colocated.has(next.step) && this.colocated.get(next.step)!.stage.input === 'frame';
  }

  get handled(): number {
    return this.processed;
  }

  async start(): Promise<void> {
    const consumer = await this.bus.js.consumers.get(STREAMS.stages, stageConsumer(this.stage.step));
    const concurrency = Math.max(1, this.config.stageConcurrency);
    this.messages = await consumer.consume({ max_messages: concurrency });
    this.log.info({ step: this.stage.step, concurrency }, 'stage consuming');
    void this.loop(concurrency);
  }

  private async loop(concurrency: number): Promise<void> {
    for await (const msg of this.messages!) {
      if (this.stopping) {
        msg.nak(); // handed back at once instead of waiting out ack_wait
        continue;
      }
      const work = this.handle(msg).catch((error) => this.log.error({ err: error }, 'unhandled runner error'));
      this.inFlight.add(work);
      void work.finally(() => this.inFlight.delete(work));
      if (this.inFlight.size >= concurrency) await Promise.race(this.inFlight);
    }
  }

  /** Stops taking messages and waits for the ones in progress. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.messages?.close().catch(() => undefined);
    await Promise.allSettled([...this.inFlight]);
  }

  private async handle(msg: JsMsg): Promise<void> {
    let message: JobMessage;
    try {
      message = JSON.parse(msg.string()) as JobMessage;
    } catch {
      await this.deadLetter(msg, undefined, new AppError(400, 'invalid_message', 'message is not JSON'));
      return;
    }
    if (!validateJobMessage(message)) {
      const issues = describeErrors(validateJobMessage.errors);
      await this.deadLetter(msg, message, new AppError(400, 'invalid_message', `job message is invalid: ${issues[0]?.path} ${issues[0]?.message}`, { details: issues }));
      return;
    }
    const current = message.pipeline[message.index];
    if (!current || current.step !== this.stage.step) {
      await this.deadLetter(msg, message, new AppError(400, 'misrouted_message', `message for step ${current?.step} at index ${message.index} arrived at ${this.stage.step}`));
      return;
    }
    const attempt = msg.info.deliveryCount;
    const log = this.log.child({ jobId: message.jobId, index: message.index, attempt });
    this.observer?.started();
    const startedAt = Date.now();
    const position: Position = { message };
    try {
      await this.runStep(msg, message, attempt, log, position);
      this.processed++;
    } catch (raw) {
      await this.handleFailure(msg, position.message, attempt, startedAt, log, raw);
    } finally {
      this.observer?.settled();
    }
  }

  private async handleFailure(msg: JsMsg, message: JobMessage, attempt: number, startedAt: number, log: Logger, raw: unknown): Promise<void> {
    const current = message.pipeline[message.index]!;
    if (raw instanceof JobEnded) {
      log.info({ status: raw.status }, 'job ended while the step ran; output discarded');
      msg.ack();
      return;
    }
    const error = toAppError(raw);
    await this.recordRun(message, attempt, startedAt, Date.now(), 'error', error.code, undefined, undefined, undefined);
    if (error.retryable && attempt < this.config.maxAttempts) {
      const delay = this.config.retryDelayMs * 2 ** (attempt - 1);
      log.warn({ err: error, delay }, 'step failed; retrying');
      await publishEvent(this.bus.js, { type: 'step.retrying', jobId: message.jobId, at: Date.now(), step: current.step, index: message.index, attempt, error: { ...error.toInfo(), step: current.step } }, `${message.index}:retry:${attempt}`).catch(() => undefined);
      msg.nak(delay);
      return;
    }
    // A bad input is the caller's problem, not an operator's: warn, not error.
    (error.status < 500 ? log.warn.bind(log) : log.error.bind(log))({ err: error }, 'step failed; job fails');
    try {
      await finishJob(this.bus, message.jobId, { status: 'failed', error: { ...error.toInfo(), step: current.step } });
      await this.deadLetter(msg, message, error);
    } catch (finishError) {
      // NATS itself is failing: leave the message for redelivery rather than lose it.
      log.error({ err: finishError }, 'could not record the failure; message will be redelivered');
      msg.nak(this.config.retryDelayMs);
    }
  }

  /**
   * Runs the step the message is at. `carried` is the frame of the previous step when the job
   * continues in this process (its job-ended check was just made after that step), and
   * `known` the job record as that step left it.
   */
  private async runStep(msg: JsMsg, message: JobMessage, attempt: number, log: Logger, position: Position, carried?: Frame, known?: VersionedRecord | null): Promise<void> {
    position.message = message;
    const { jobId, index, pipeline } = message;
    const item = pipeline[index]!;
    const { stage, prepared } = this.host(item.step);
    const params = (item.params ?? {}) as Record<string, unknown>;
    const isLast = index === pipeline.length - 1;
    if (!carried) {
      known = await this.bus.jobs.read(jobId);
      if (!known) {
        log.warn('job record not found (expired or deleted); message dropped');
        msg.term();
        return;
      }
      if (isTerminal(known.record.status)) {
        log.info({ status: known.record.status }, 'job already ended; step skipped');
        msg.ack();
        return;
      }
    }
    if (Date.now() > message.deadline) {
      await finishJob(this.bus, jobId, { status: 'timeout', error: { code: 'job_timeout', message: `the job passed its deadline before step ${index} (${item.step})`, step: item.step } });
      msg.ack();
      return;
    }

    const startedAt = Date.now();
    if (!conditionHolds(item.when, message.findings)) {
      const provenance: Provenance = { index, step: item.step, params, status: 'skipped', reason: `condition ${item.when} did not hold`, attempt, host: this.config.hostId };
      const [marked] = await Promise.all([
        this.markStep(jobId, index, 'skipped', startedAt, 0, attempt, known),
        publishEvent(this.bus.js, { type: 'step.skipped', jobId, at: Date.now(), step: item.step, index, steps: pipeline.length, reason: provenance.reason }, `${index}:skipped`),
        this.recordRun(message, attempt, startedAt, Date.now(), 'skipped', '', undefined, undefined, undefined),
      ]);
      const skippedOn = { ...message, provenance: [...message.provenance, provenance] };
      if (carried && !isLast && this.continuesHere(message, index + 1)) {
        return this.runStep(msg, { ...skippedOn, index: index + 1 }, attempt, log, position, carried, marked);
      }
      // A frame carried in memory must be stored before the bus can hand it on.
      const stored = carried && !isLast ? await this.bus.frames.put(frameId(jobId, index), carried) : undefined;
      await this.handOn(msg, message, stored?.ref ?? message.input, { ...message.findings }, skippedOn.provenance, isLast, stored?.durable);
      return;
    }

    // The job record, the started event and loading the input are independent: one round trip
    // time instead of three (bench: overhead section). All settle before the run or the error.
    const [marked, started, loaded] = await Promise.allSettled([
      this.markStep(jobId, index, 'running', startedAt, undefined, attempt, known),
      publishEvent(this.bus.js, { type: 'step.started', jobId, at: startedAt, step: item.step, index, steps: pipeline.length, attempt }, `${index}:started`),
      carried ? Promise.resolve({ frame: carried }) : this.loadInput(stage, message.input),
    ]);
    if (marked.status === 'rejected') throw marked.reason;
    if (started.status === 'rejected') throw started.reason;
    if (loaded.status === 'rejected') throw loaded.reason;
    const input = loaded.value;
    const abort = new AbortController();
    const keepAlive = setInterval(() => msg.working(), Math.max(1000, Math.floor(this.config.ackWaitMs / 3)));
    const watch = setInterval(() => {
      void this.bus.jobs.get(jobId).then((j) => {
        if (j && isTerminal(j.status)) abort.abort(new JobEnded(j.status));
        else if (Date.now() > message.deadline) abort.abort(new JobEnded('timeout'));
      }).catch(() => undefined);
    }, 1000);
    let result: StageResult;
    try {
      result = await prepared.run(input, params, {
        log, signal: abort.signal, findings: message.findings, inputFormat: message.findings.image?.format,
        heartbeat: () => msg.working(),
      });
      await this.hooks.afterRun?.(message);
    } finally {
      clearInterval(keepAlive);
      clearInterval(watch);
    }
    const runMs = Date.now() - startedAt;

    // The job may have been canceled or timed out while we worked: then the output is discarded.
    // The check runs while the output is stored (one round trip less); an output stored for a
    // job that ended meanwhile is deleted again.
    const continueHere = !isLast && stage.output === 'frame' && result.frame !== undefined && this.continuesHere(message, index + 1);
    const [checked, stored] = await Promise.allSettled([
      this.bus.jobs.read(jobId),
      continueHere ? Promise.resolve({} as { ref?: BlobRef | FrameRef; durable?: Promise<void> }) : this.storeOutput(stage, message, result, isLast),
    ]);
    const after = checked.status === 'fulfilled' ? checked.value : null;
    const ended = checked.status === 'fulfilled' && (!after || isTerminal(after.record.status));
    if (ended || Date.now() > message.deadline) {
      if (stored.status === 'fulfilled') await this.discardOutput(message, stored.value);
      if (ended) throw new JobEnded(after?.record.status ?? 'canceled');
      await finishJob(this.bus, jobId, { status: 'timeout', error: { code: 'job_timeout', message: `the job passed its deadline during step ${index} (${item.step})`, step: item.step } });
      throw new JobEnded('timeout');
    }
    if (checked.status === 'rejected') throw checked.reason;
    if (stored.status === 'rejected') throw stored.reason;
    const outputRef = stored.value;

    const findings = { ...message.findings, ...result.findings };
    const provenance: Provenance = {
      index, step: item.step, params, status: 'done', ms: runMs, attempt, host: this.config.hostId, worker: `${this.config.hostId}/${process.pid}`, ...result.provenance,
    };
    const finished = { type: 'step.finished' as const, jobId, at: Date.now(), step: item.step, index, steps: pipeline.length, ms: runMs, attempt, ...(result.findings ? { findings: result.findings } : {}) };
    // Record, event and metric are independent of each other; all are written before the next
    // step is published, so a client still sees step.finished before the next step.started.
    const [done] = await Promise.all([
      this.markStep(jobId, index, 'done', startedAt, runMs, attempt, after),
      publishEvent(this.bus.js, finished, `${index}:finished`),
      this.recordRun(message, attempt, startedAt, startedAt + runMs, 'ok', '', input, result, provenance),
    ]);
    if (continueHere) {
      const next: JobMessage = { ...message, index: index + 1, findings, provenance: [...message.provenance, provenance], enqueuedAt: Date.now() };
      return this.runStep(msg, next, attempt, log, position, result.frame, done);
    }
    await this.handOn(msg, message, outputRef.ref, findings, [...message.provenance, provenance], isLast, outputRef.durable);
  }

  /** Publishes the next step (or ends the job after the last), then acks the input. */
  private async handOn(msg: JsMsg, message: JobMessage, input: BlobRef | FrameRef | undefined, findings: JobMessage['findings'],
    provenance: Provenance[], isLast: boolean, durable: Promise<void> | undefined): Promise<void> {
    const { jobId, index, pipeline } = message;
    if (isLast) {
      const result: ResultInfo = { findings, provenance };
      if (input && input.kind === 'blob') {
        result.image = input;
        result.url = `/api/jobs/${jobId}/result`;
      }
      await finishJob(this.bus, jobId, { status: 'done', result });
    } else {
      if (!input) throw new AppError(500, 'no_output', `step ${pipeline[index]!.step} gave no output for the next step`);
      const next: JobMessage = { ...message, index: index + 1, input, findings, provenance, enqueuedAt: Date.now() };
      const nextStep = pipeline[index + 1]!.step;
      await this.bus.js.publish(subjects.stage(nextStep), JSON.stringify(next), { msgID: msgIds.step(jobId, index + 1) });
    }
    await durable;
    await this.hooks.beforeAck?.(message);
    await msg.ackAck().catch(() => msg.ack());
  }

  private async loadInput(stage: StageDefinition, ref: BlobRef | FrameRef): Promise<{ frame?: Frame; encoded?: EncodedImage }> {
    if (stage.input === 'encoded') {
      if (ref.kind !== 'blob') throw new AppError(400, 'invalid_message', `${stage.step} needs an encoded image`, { retryable: false });
      const bytes = await this.bus.blobs.get(ref);
      return { encoded: { bytes, format: '', contentType: ref.contentType ?? 'application/octet-stream' } };
    }
    if (ref.kind !== 'frame') throw new AppError(400, 'invalid_message', `${stage.step} needs a frame`, { retryable: false });
    return { frame: await this.bus.frames.get(ref) };
  }

  /** Drops an output stored for a job that ended while the step ran (best effort). */
  private async discardOutput(message: JobMessage, stored: { ref?: BlobRef | FrameRef; durable?: Promise<void> }): Promise<void> {
    if (!stored.ref) return;
    await stored.durable?.catch(() => undefined);
    if (stored.ref.kind === 'blob') await this.bus.blobs.delete(stored.ref.name).catch(() => undefined);
    else await this.bus.frames.deleteJob(message.jobId).catch(() => undefined);
  }

  private async storeOutput(stage: StageDefinition, message: JobMessage, result: StageResult, isLast: boolean): Promise<{ ref?: BlobRef | FrameRef; durable?: Promise<void> }> {
    if (stage.output === 'encoded') {
      if (!result.encoded) throw new AppError(500, 'no_output', `${stage.step} returned no encoded image`);
      return { ref: await this.bus.blobs.put(resultBlobName(message.jobId), result.encoded.bytes, result.encoded.contentType) };
    }
    if (!result.frame) throw new AppError(500, 'no_output', `${stage.step} returned no frame`);
    if (isLast) return {}; // a pipeline ending on a frame step (e.g. decode -> detect) returns findings only
    const stored = await this.bus.frames.put(frameId(message.jobId, message.index), result.frame);
    return stored;
  }

  /** Updates the step in the job record; returns the record as stored (for the next update). */
  private markStep(jobId: string, index: number, status: 'running' | 'done' | 'skipped', startedAt: number, ms: number | undefined, attempt: number,
    known?: VersionedRecord | null): Promise<VersionedRecord | null> {
    return this.bus.jobs.update(jobId, (job) => {
      if (isTerminal(job.status)) return null;
      const step = job.steps[index];
      if (!step) return null;
      step.status = status;
      step.attempt = attempt;
      step.startedAt ??= startedAt;
      if (status !== 'running') {
        step.finishedAt = Date.now();
        if (ms !== undefined) step.ms = ms;
      }
      if (job.status === 'pending') {
        job.status = 'running';
        job.startedAt = startedAt;
      }
      return job;
    }, known);
  }

  private async recordRun(message: JobMessage, attempt: number, startedAt: number, finishedAt: number, status: StageMetric['status'], errorCode: string,
    input: { frame?: Frame; encoded?: EncodedImage } | undefined, result: StageResult | undefined, provenance: Provenance | undefined): Promise<void> {
    const pixels = (f?: Frame) => (f ? f.width * f.height : 0);
    const metric: StageMetric = {
      runId: `${message.jobId}:${message.index}:${attempt}`,
      jobId: message.jobId,
      sub: message.owner.sub,
      tenant: message.owner.tenant ?? '',
      step: message.pipeline[message.index]!.step,
      index: message.index,
      attempt,
      status,
      errorCode,
      model: provenance?.model ?? '',
      modelSha256: provenance?.modelSha256 ?? '',
      provider: provenance?.provider ?? '',
      inputPixels: pixels(input?.frame) || (message.input.kind === 'frame' ? message.input.width * message.input.height : 0),
      outputPixels: pixels(result?.frame),
      inputBytes: input?.encoded?.bytes.length ?? input?.frame?.data.length ?? 0,
      outputBytes: result?.encoded?.bytes.length ?? result?.frame?.data.length ?? 0,
      queueWaitMs: message.enqueuedAt ? Math.max(0, startedAt - message.enqueuedAt) : 0,
      runMs: finishedAt - startedAt,
      host: this.config.hostId,
      startedAt,
      finishedAt,
    };
    this.observer?.finished(status, metric.runMs, errorCode || undefined);
    // Metrics must never fail a job: a lost metrics publish is logged, not retried here.
    await this.bus.js.publish(subjects.stageMetric, JSON.stringify(metric), { msgID: metric.runId })
      .catch((error) => this.log.warn({ err: error }, 'stage metric not published'));
  }

  private async deadLetter(msg: JsMsg, message: Partial<JobMessage> | undefined, error: AppError): Promise<void> {
    const letter: DeadLetter = {
      step: this.stage.step,
      subject: msg.subject,
      error: error.toInfo(),
      attempts: msg.info.deliveryCount,
      at: Date.now(),
      payload: msg.string(),
    };
    if (message?.jobId) letter.jobId = message.jobId;
    await this.bus.js.publish(subjects.deadLetter(this.stage.step), JSON.stringify(letter));
    this.log.warn({ code: error.code, jobId: message?.jobId }, 'message dead-lettered');
    msg.term();
  }
}
