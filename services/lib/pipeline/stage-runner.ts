/**
 * The one place where a step meets the bus. For each message on photolab.stage.<step>:
 *   has the job ended? (in memory; one direct get for jobs older than this process) ->
 *   load the input (blob or frame) -> step.started (live only) -> run the stage function
 *   (keeping the message alive, aborted by a cancel) -> decideNext: continue here with the
 *   frame in memory, or store the output and publish the next step, or end the job -> ack.
 *
 * What it writes per step, each once (docs/messaging.md): the step's event on
 * photolab.events.<jobId>.step, which carries the stage-run metric too; the next step's
 * message (or, after the last step, the result and the terminal event); the frame or result.
 * No job record is read or written: the routing slip carries what a step needs.
 *
 * Errors: retried with a growing delay up to MAX_ATTEMPTS (step.retrying, a durable fact),
 * then the job fails and the message goes to photolab.dlq.<step>. A bus that is away is no
 * error of the step: the runner keeps the delivery and runs it again once the bus answers.
 * Every publish carries a message id derived from (job, step index) and the input is acked
 * last, so a step that dies anywhere in between runs again without forking the job or
 * duplicating its facts.
 */
import type { ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import type { Bus } from '../bus/bus.js';
import { publishProgress, publishStepEvent } from '../bus/events.js';
import { frameId } from '../bus/frames/frame-store.js';
import type { JobEnds } from '../bus/job-ends.js';
import { resultBlobName, STREAMS, stageConsumer, subjects } from '../bus/subjects.js';
import { enqueueStep, nextStep } from '../bus/step-queue.js';
import type { Config } from '../shared/config.js';
import { AppError, appError, toAppError, type ErrorCode } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import type { BlobRef, DeadLetter, FrameRef, JobMessage, Provenance, ResultInfo, StageMetric } from '../shared/schema-types.js';
import { schemaValidator, describeErrors } from '../shared/schemas.js';
import { decideNext } from './decide-next.js';
import type { EncodedImage, Frame } from './frame.js';
import { deferredOutputDigest, knownPixelDigest, pixelDigest, type OutputDigest } from '../forensics/digest.js';
import { finishJob, type JobFacts, type Outcome } from './job-lifecycle.js';
import { conditionHolds, describeCondition, rescaleFindings } from './findings.js';
import type { FindingGeometry, PreparedStage, StageDefinition, StageInput, StageResult } from './stage.js';
import { resolveParams } from './params.js';
import { workBegins } from '../shared/idle-collection.js';
import { SHORT_PULLS } from '../bus/pulls.js';
import { isBusOutage, outageWaitMs } from '../bus/nats-errors.js';

const validateJobMessage = schemaValidator<JobMessage>('messages/job-message.schema.json');

/** Thrown inside a run when the job ended meanwhile; not an error of the step. */
class JobEnded extends Error {
  constructor(readonly how: string) {
    super(`job ended: ${how}`);
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
  /** A step waited for the bus to come back, keeping its delivery (waitOutBus). */
  waitedForBus?(): void;
}

export interface RunnerHooks {
  /** Test hook: called after the stage function returned, before anything is stored. */
  afterRun?(message: JobMessage): Promise<void> | void;
  /**
   * Test hook: called when the output is about to be stored (or passed on), with no in-progress
   * ack running: a process that stalls here loses its message to ack_wait, as a frozen one does.
   */
  beforeStore?(message: JobMessage): Promise<void> | void;
  /** Test hook: called after the next step was published, before the input is acked. */
  beforeAck?(message: JobMessage): Promise<void> | void;
}

export interface HostedStep {
  stage: StageDefinition;
  prepared: PreparedStage<Record<string, unknown>>;
}

/** The steps this process can run, for continuing a job locally (decideNext 'continue'). */
export type ColocatedSteps = Map<string, HostedStep>;

export interface StageRunnerOptions {
  bus: Bus;
  /** The step whose subject this runner consumes. */
  step: string;
  /** Every step this process hosts (the consumed one included). */
  hosted: ColocatedSteps;
  /** The process's view of ended jobs (one subscription shared by its runners). */
  ends: JobEnds;
  config: Config;
  log: Logger;
  hooks?: RunnerHooks;
  observer?: RunObserver;
  /**
   * How each finding kind moves when a step resizes the frame (from every step's manifest,
   * not only the hosted ones: an upscale moves the faces that detect_faces found elsewhere).
   */
  findingGeometry?: ReadonlyMap<string, FindingGeometry>;
}

type Input = { frame?: Frame; encoded?: EncodedImage };
const NO_GEOMETRY: ReadonlyMap<string, FindingGeometry> = new Map();


/** Where a job stands while this process works on it. */
interface Position {
  message: JobMessage;
  /** The frame of the previous step, when the job continues in this process. */
  carried?: Frame;
}

export class StageRunner {
  private messages?: ConsumerMessages;
  private readonly inFlight = new Set<Promise<void>>();
  private stopping = false;
  private processed = 0;
  private busWaits = 0;
  /** Ends a wait for the bus at stop(). */
  private readonly stopWaits = new AbortController();
  /** Ends the waits for the bus at once when the topology is whole after a reconnect. */
  private readonly busBack = new Set<() => void>();
  private readonly bus: Bus;
  private readonly config: Config;
  private readonly log: Logger;

  constructor(private readonly options: StageRunnerOptions) {
    ({ bus: this.bus, config: this.config, log: this.log } = options);
    if (!options.hosted.has(options.step)) throw new Error(`runner for ${options.step}: the step is not among the hosted ones`);
    this.bus.topology.onRestored(() => {
      for (const wake of [...this.busBack]) wake();
    });
  }

  get step(): string {
    return this.options.step;
  }

  get handled(): number {
    return this.processed;
  }

  /** Times a step waited for the bus instead of spending a delivery (waitOutBus). */
  get waitsForBus(): number {
    return this.busWaits;
  }

  private host(step: string): HostedStep {
    const hosted = this.options.hosted.get(step);
    if (!hosted) throw appError('misrouted_message', `step ${step} is not hosted by the ${this.step} runner`);
    return hosted;
  }

  async start(): Promise<void> {
    const consumer = await this.bus.js.consumers.get(STREAMS.stages, stageConsumer(this.step));
    const concurrency = Math.max(1, this.config.stageConcurrency);
    this.messages = await consumer.consume({ max_messages: concurrency, ...SHORT_PULLS });
    this.log.info({ concurrency }, 'stage consuming');
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
    this.stopWaits.abort();
    await this.messages?.close().catch(() => undefined);
    await Promise.allSettled([...this.inFlight]);
  }

  private async handle(msg: JsMsg): Promise<void> {
    let message: JobMessage;
    try {
      message = JSON.parse(msg.string()) as JobMessage;
    } catch {
      await this.deadLetter(msg, undefined, appError('invalid_message', 'message is not JSON'));
      return;
    }
    if (!validateJobMessage(message)) {
      const issues = describeErrors(validateJobMessage.errors);
      await this.deadLetter(msg, message, appError('invalid_message', `job message is invalid: ${issues[0]?.path} ${issues[0]?.message}`, { details: issues }));
      return;
    }
    const current = message.pipeline[message.index];
    if (!current || current.step !== this.step) {
      await this.deadLetter(msg, message, appError('misrouted_message', `message for step ${current?.step} at index ${message.index} arrived at ${this.step}`));
      return;
    }
    const attempt = msg.info.deliveryCount;
    const log = this.log.child({ jobId: message.jobId, index: message.index, attempt });
    this.options.observer?.started();
    const workEnds = workBegins();
    const position: Position = { message };
    let startedAt = Date.now();
    try {
      for (let outage = 0; ; outage++) {
        try {
          if (await this.options.ends.hasEnded(message.jobId, message.submittedAt ?? 0)) {
            log.info(outage ? 'job ended while the bus was away; step skipped' : 'job already ended; step skipped');
            msg.ack();
            return;
          }
          await this.runChain(msg, position, attempt, log, (t) => (startedAt = t));
          break;
        } catch (raw) {
          if (!this.mayWaitOutBus(raw, position.message)) throw raw;
          await this.waitOutBus(msg, outage, log, raw);
          // Again from the delivered message, as a redelivery would run it: what was stored
          // before the outage comes back as duplicates (message ids), or the job has ended.
          position.message = message;
          position.carried = undefined;
        }
      }
      this.processed++;
    } catch (raw) {
      await this.handleFailure(msg, position.message, attempt, startedAt, log, raw);
    } finally {
      this.options.observer?.settled();
      workEnds();
    }
  }

  /**
   * Runs the step the message is at and, while decideNext says 'continue', the following ones
   * hosted here; then hands the job on or ends it, and acks the message.
   */
  private async runChain(msg: JsMsg, position: Position, attempt: number, log: Logger, markStart: (t: number) => void): Promise<void> {
    const facts = new PendingFacts();
    try {
      await this.runSteps(msg, position, attempt, log, markStart, facts);
    } finally {
      // A step of the chain that failed or was stopped: the earlier steps' facts are settled
      // before the failure is handled (its retry or terminal event comes after them).
      await facts.settled();
    }
  }

  private async runSteps(msg: JsMsg, position: Position, attempt: number, log: Logger, markStart: (t: number) => void, facts: PendingFacts): Promise<void> {
    for (;;) {
      const message = position.message;
      const { jobId, index, pipeline } = message;
      const item = pipeline[index]!;
      const { stage, prepared } = this.host(item.step);
      const params = resolveParams(item.step, item.params);
      stage.check?.(params); // a message may come from anywhere, not only from the edge
      if (Date.now() > message.deadline) {
        await facts.confirmed();
        await this.finish(msg, message, { status: 'timeout', error: { code: 'job_timeout' satisfies ErrorCode, message: `the job passed its deadline before step ${index} (${item.step})`, step: item.step }, index });
        msg.ack();
        return;
      }
      const startedAt = Date.now();
      markStart(startedAt);

      let output: { frame?: Frame; ref?: BlobRef | FrameRef; result?: StageResult; input?: Input };
      let provenance: Provenance;
      let digest: (() => OutputDigest) | undefined;
      let event: 'step.finished' | 'step.skipped';
      if (!conditionHolds(item.when, message.findings)) {
        // Skipped: the input passes through unchanged.
        provenance = { index, step: item.step, params, status: 'skipped', reason: `condition ${describeCondition(item.when)} did not hold`, attempt, host: this.config.hostId, startedAt, finishedAt: startedAt, ms: 0 };
        output = position.carried ? { frame: position.carried } : { ref: message.input };
        event = 'step.skipped';
      } else {
        publishProgress(this.bus.nc, { type: 'step.started', jobId, at: startedAt, step: item.step, index, steps: pipeline.length, attempt });
        const input = position.carried ? { frame: position.carried } : await this.loadInput(stage, jobId, message.input);
        const result = await this.runStage(msg, message, prepared, input as StageInput, params, log);
        const finishedAt = Date.now();
        provenance = {
          index, step: item.step, params, status: 'done', ms: finishedAt - startedAt, startedAt, finishedAt, attempt,
          host: this.config.hostId, worker: `${this.config.hostId}/${process.pid}`, ...result.provenance,
        };
        // Forensic replay's "where two runs first differ". Computed while the next step of a
        // fused chain waits on its first thread-pool work, and in any case before the
        // provenance goes out: the hand-off and the end wait for `facts`, which completes it.
        digest = deferredOutputDigest(result);
        facts.complete(provenance, digest);
        this.moveFindings(message.findings, input as Input, result);
        // A step that handed back the very frame it loaded (detect_*: findings only) keeps the
        // stored input as its output's reference: a second copy of the same pixels would cost a
        // 3 MB write (and, with FRAME_TRANSPORT=auto, 3 MB through nats-server) for nothing.
        const kept = !position.carried && message.input.kind === 'frame' && result.frame !== undefined && result.frame === input.frame;
        output = { frame: stage.output === 'frame' ? result.frame : undefined, ref: kept ? message.input : undefined, result, input };
        event = 'step.finished';
        if (stage.output === 'frame' && !result.frame) throw appError('no_output', `${item.step} returned no frame`);
        if (stage.output === 'encoded' && !result.encoded) throw appError('no_output', `${item.step} returned no encoded image`);
      }
      // A cancel or the deadline may have come while the step ran: its output is discarded.
      if (this.options.ends.seenEnded(jobId)) throw new JobEnded('canceled');
      if (Date.now() > message.deadline) {
        await facts.confirmed();
        await this.finish(msg, message, { status: 'timeout', error: { code: 'job_timeout' satisfies ErrorCode, message: `the job passed its deadline during step ${index} (${item.step})`, step: item.step }, index });
        throw new JobEnded('timeout');
      }

      const findings = { ...message.findings, ...output.result?.findings };
      const run = this.stageRun(message, attempt, provenance, event === 'step.finished' ? 'ok' : 'skipped', '', output.input, output.result);
      const history = [...message.provenance, provenance];
      const hostedNext = pipeline[index + 1] && this.options.hosted.get(pipeline[index + 1]!.step);
      const move = decideNext({
        index, length: pipeline.length, output: stage.output, frameInHand: output.frame !== undefined,
        nextHostedInput: hostedNext?.stage.input, fusion: this.config.stageFusion,
      });
      const stepEvent = {
        type: event, jobId, at: Date.now(), step: item.step, index, steps: pipeline.length, attempt, run,
        ...(event === 'step.finished' ? { ms: provenance.ms } : { reason: provenance.reason }),
        ...(output.result?.findings ? { findings: output.result.findings } : {}),
      };

      const fact = publishStepEvent(this.bus.js, stepEvent, `${index}:${event === 'step.finished' ? 'finished' : 'skipped'}`);
      facts.add(fact);
      if (move === 'continue') {
        // The next step runs here: its message stays in memory (the input is the carried frame).
        position.message = nextStep(message, { input: message.input, findings, provenance: history });
        position.carried = output.frame;
        continue;
      }

      await this.options.hooks?.beforeStore?.(message);
      // Store what the next step (or the client) needs, while the step's fact is written.
      const [stored] = await Promise.all([this.storeOutput(message, stage.output, output, move === 'finish', digest), facts.confirmed()]);
      if (move === 'publish') {
        if (!stored.ref) throw appError('no_output', `step ${item.step} gave no output for the next step`);
        await enqueueStep(this.bus.js, nextStep(message, { input: stored.ref, findings, provenance: history }));
        await stored.durable;
      } else {
        const result: ResultInfo = { findings, provenance: history };
        if (stored.ref?.kind === 'blob') {
          result.image = stored.ref;
          result.url = `/api/jobs/${jobId}/result`;
        }
        const ended = await this.finish(msg, message, { status: 'done', result });
        if (!ended) await this.lostTheEnd(message, stored.ref, log);
      }
      await this.options.hooks?.beforeAck?.(message);
      // A plain ack: a lost one only means a redelivery, whose re-published facts and next step
      // are dropped as duplicates (message ids, 2-minute window, ack_wait well inside it).
      msg.ack();
      return;
    }
  }

  /**
   * A step that resized the frame: earlier findings it did not return itself follow the pixels,
   * so later steps and the result agree with the image (each kind by its declared geometry).
   */
  private moveFindings(earlier: JobMessage['findings'], input: Input, result: StageResult): void {
    const before = input.frame;
    const after = result.frame;
    if (!before || !after || (before.width === after.width && before.height === after.height)) return;
    const untouched = Object.fromEntries(Object.entries(earlier).filter(([kind]) => !(result.findings && kind in result.findings)));
    const moved = rescaleFindings(untouched, after.width / before.width, after.height / before.height, this.geometry);
    if (Object.keys(moved).length) result.findings = { ...result.findings, ...moved };
  }

  private get geometry(): ReadonlyMap<string, FindingGeometry> {
    return this.options.findingGeometry ?? NO_GEOMETRY;
  }

  /** Runs the stage function with the message kept alive and a cancel able to abort it. */
  private async runStage(msg: JsMsg, message: JobMessage, prepared: HostedStep['prepared'], input: StageInput, params: Record<string, unknown>, log: Logger): Promise<StageResult> {
    const abort = new AbortController();
    const stopKeeping = this.keepAlive(msg);
    const stopListening = this.options.ends.onEnd(message.jobId, (type) => abort.abort(new JobEnded(type)));
    const deadline = setTimeout(() => abort.abort(new JobEnded('timeout')), Math.max(0, message.deadline - Date.now()));
    try {
      const result = await prepared.run(input, params, {
        log, signal: abort.signal, findings: message.findings, inputFormat: message.findings.image?.format,
        heartbeat: () => msg.working(),
        rescale: (findings, sx, sy) => rescaleFindings(findings, sx, sy, this.geometry),
      });
      await this.options.hooks?.afterRun?.(message);
      return result;
    } catch (error) {
      // A step aborted by the end of its job reports the end, whatever it threw.
      if (abort.signal.aborted && abort.signal.reason instanceof JobEnded) throw abort.signal.reason;
      throw error;
    } finally {
      stopKeeping();
      clearTimeout(deadline);
      stopListening();
    }
  }

  /**
   * The job ended otherwise while this run stored its result. Canceled or timed out at the last
   * moment: the result it would have had goes. Done by another run of this step (a redelivery
   * after this process stalled past ack_wait): the result blob has one name per job, so it is
   * that run's result too, the one its end points to, and stays.
   */
  private async lostTheEnd(message: JobMessage, ref: BlobRef | FrameRef | undefined, log: Logger): Promise<void> {
    if (ref?.kind !== 'blob') return;
    const end = await this.bus.jobs.terminal(message.jobId, { fromLeader: true }).catch(() => undefined);
    if (end === undefined || end?.type === 'job.done') {
      log.info({ end: end?.type ?? 'unknown' }, 'another run of this step ended the job; its result stays');
      return;
    }
    await this.bus.blobs.delete(ref.name).catch(() => undefined);
    log.info({ end: end?.type }, 'job ended before its result was stored; result discarded');
  }

  /**
   * A bus that is away (nats-server restarting, a cluster electing leaders, a publish whose ack
   * was lost) is not the step's failure: the runner keeps the delivery and runs it again once the
   * bus answers, instead of a nak that spends one of max_deliver's deliveries. Retried at once,
   * a 3-node cluster's election used up a step's deliveries before JetStream answered, and the
   * job could not even record its failure (RELIABILITY.md). Bounded by the job's deadline.
   */
  private mayWaitOutBus(error: unknown, message: JobMessage): boolean {
    return isBusOutage(error) && !this.stopping && !this.bus.nc.isClosed() && !this.bus.nc.isDraining() && Date.now() < message.deadline;
  }

  /**
   * Waits before the next try (outageWaitMs; each try after one is a re-run of the step), keeping
   * the message with in-progress acks; the wait ends early once the topology is whole after a
   * reconnect, or at stop().
   */
  private async waitOutBus(msg: JsMsg, outage: number, log: Logger, error: unknown): Promise<void> {
    const delay = outageWaitMs(outage);
    this.busWaits++;
    this.options.observer?.waitedForBus?.();
    log.warn({ err: error, delay, waits: outage + 1 }, 'the bus is away; the step runs again in this delivery once it answers');
    const stopKeeping = this.keepAlive(msg, true);
    try {
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.busBack.delete(wake);
          this.stopWaits.signal.removeEventListener('abort', wake);
          resolve();
        };
        const timer = setTimeout(wake, delay);
        this.busBack.add(wake);
        this.stopWaits.signal.addEventListener('abort', wake, { once: true });
      });
    } finally {
      stopKeeping();
    }
  }

  /**
   * The terminal event's id is the delivery's, so that a try after a lost ack (waitOutBus, same
   * delivery) knows the stored end as its own instead of taking it for a racer's: the finished
   * run would otherwise delete the result blob that the stored end points to.
   */
  /**
   * Sends in-progress acks every third of ack_wait (and one at once when `now`: a wait for the
   * bus may follow a long stall) until the returned function is called.
   */
  private keepAlive(msg: JsMsg, now = false): () => void {
    const working = () => {
      try {
        msg.working(); // buffered while disconnected, sent at the reconnect
      } catch {
        // closed for good: the stop that follows hands the message back
      }
    };
    if (now) working();
    const beat = setInterval(working, Math.max(1000, Math.floor(this.config.ackWaitMs / 3)));
    return () => clearInterval(beat);
  }

  private finish(msg: JsMsg, message: JobMessage, outcome: Omit<Outcome, 'eventId'>) {
    const eventId = `${message.jobId}/${msg.info.streamSequence}.${msg.info.deliveryCount}`;
    return finishJob(this.bus, jobFacts(message), { ...outcome, eventId }, this.config.hostId);
  }

  private async handleFailure(msg: JsMsg, message: JobMessage, attempt: number, startedAt: number, log: Logger, raw: unknown): Promise<void> {
    const current = message.pipeline[message.index]!;
    if (raw instanceof JobEnded) {
      log.info({ how: raw.how }, 'job ended while the step ran; output discarded');
      msg.ack();
      return;
    }
    const error = toAppError(raw);
    const provenance: Provenance = { index: message.index, step: current.step, params: current.params ?? {}, status: 'done', attempt, startedAt, finishedAt: Date.now() };
    const run = this.stageRun(message, attempt, provenance, 'error', error.code);
    if (error.retryable && attempt < this.config.maxAttempts) {
      const delay = this.config.retryDelayMs * 2 ** (attempt - 1);
      log.warn({ err: error, delay }, 'step failed; retrying');
      await publishStepEvent(this.bus.js, {
        type: 'step.retrying', jobId: message.jobId, at: Date.now(), step: current.step, index: message.index, attempt, run,
        error: { ...error.toInfo(), step: current.step },
      }, `${message.index}:retry:${attempt}`).catch((e) => log.warn({ err: e }, 'step.retrying not stored'));
      msg.nak(delay);
      return;
    }
    // A bad input is the caller's problem, not an operator's: warn, not error.
    (error.status < 500 ? log.warn.bind(log) : log.error.bind(log))({ err: error }, 'step failed; job fails');
    for (let outage = 0; ; outage++) {
      try {
        await this.finish(msg, message, { status: 'failed', error: { ...error.toInfo(), step: current.step }, run, index: message.index });
        await this.deadLetter(msg, message, error);
        return;
      } catch (finishError) {
        // The step's failure stands; only its recording waits for the bus (same delivery).
        if (this.mayWaitOutBus(finishError, message)) {
          await this.waitOutBus(msg, outage, log, finishError);
          continue;
        }
        // NATS itself is failing: leave the message for redelivery rather than lose it.
        log.error({ err: finishError }, 'could not record the failure; message will be redelivered');
        msg.nak(this.config.retryDelayMs);
        return;
      }
    }
  }

  private async loadInput(stage: StageDefinition, jobId: string, ref: BlobRef | FrameRef): Promise<Input> {
    if (stage.input === 'encoded') {
      if (ref.kind !== 'blob') throw appError('invalid_message', `${stage.step} needs an encoded image`);
      // The edge's copy on this host when there is one (same digest), else the stored blob.
      const local = await this.bus.localFrames?.getInput(jobId, ref);
      const bytes = local ?? await this.bus.blobs.get(ref);
      return { encoded: { bytes, format: '', contentType: ref.contentType ?? 'application/octet-stream' } };
    }
    if (ref.kind !== 'frame') throw appError('invalid_message', `${stage.step} needs a frame`);
    const frame = await this.bus.frames.get(ref);
    if (ref.sha256) knownPixelDigest(frame, ref.sha256);
    return { frame };
  }

  /** The output as the next step or the client reads it: a stored frame, the result blob, or the input ref passed through. */
  private async storeOutput(message: JobMessage, kind: StageDefinition['output'], output: { frame?: Frame; ref?: BlobRef | FrameRef; result?: StageResult }, last: boolean, digest?: () => OutputDigest): Promise<{ ref?: BlobRef | FrameRef; durable?: Promise<void> }> {
    if (kind === 'encoded' && output.result?.encoded) {
      const { bytes, contentType } = output.result.encoded;
      const name = resultBlobName(message.jobId);
      // The output digest of an encoded image is its sha256: the blob's reference reuses it.
      const sha256 = digest?.().outputSha256;
      return { ref: await this.bus.blobs.put(name, bytes, contentType, sha256 ? this.bus.blobs.refFor(name, bytes, contentType, sha256) : undefined) };
    }
    if (output.frame) {
      // A pipeline ending on a frame step (decode -> detect) returns findings only.
      if (last) return {};
      // Already stored (the step's own input, unchanged): passed on, not copied. Either way the
      // reference carries the pixel digest, so the next step never hashes these pixels again.
      const stored = output.ref ? { ref: output.ref } : await this.bus.frames.put(frameId(message.jobId, message.index), output.frame);
      return stored.ref?.kind === 'frame' ? { ...stored, ref: { ...stored.ref, sha256: pixelDigest(output.frame) } } : stored;
    }
    return { ref: output.ref };
  }

  /** The stage_runs row of this attempt; it travels inside the step's event. */
  private stageRun(message: JobMessage, attempt: number, p: Provenance, status: StageMetric['status'], errorCode: string, input?: Input, result?: StageResult): StageMetric {
    const pixels = (f?: Frame) => (f ? f.width * f.height : 0);
    const startedAt = p.startedAt ?? Date.now();
    const finishedAt = p.finishedAt ?? Date.now();
    const run: StageMetric = {
      runId: `${message.jobId}:${message.index}:${attempt}`,
      jobId: message.jobId,
      sub: message.owner.sub,
      tenant: message.owner.tenant ?? '',
      step: p.step,
      index: message.index,
      attempt,
      status,
      errorCode,
      model: p.model ?? '',
      modelSha256: p.modelSha256 ?? '',
      provider: p.provider ?? '',
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
    this.options.observer?.finished(status, run.runMs, errorCode || undefined);
    return run;
  }

  private async deadLetter(msg: JsMsg, message: Partial<JobMessage> | undefined, error: AppError): Promise<void> {
    const letter: DeadLetter = {
      step: this.step,
      subject: msg.subject,
      error: error.toInfo(),
      attempts: msg.info.deliveryCount,
      at: Date.now(),
      payload: msg.string(),
    };
    if (message?.jobId) letter.jobId = message.jobId;
    await this.bus.js.publish(subjects.deadLetter(this.step), JSON.stringify(letter));
    this.log.warn({ code: error.code, jobId: message?.jobId }, 'message dead-lettered');
    msg.term();
  }
}

/** What ending the job needs, from its routing slip. */
function jobFacts(message: JobMessage): JobFacts {
  return {
    jobId: message.jobId, owner: message.owner, pipeline: message.pipeline,
    createdAt: message.submittedAt ?? message.enqueuedAt ?? Date.now(),
    inputBytes: message.source?.bytes ?? (message.input.kind === 'blob' ? message.input.bytes : 0),
  };
}

/**
 * The step facts of a fused chain that are still being stored. The next step in the chain does
 * not wait for them (1-2 ms a hop); the hand-off, the job's end and the ack do (`confirmed`).
 * They go out in order on one connection, and their message ids make a re-run's copies
 * duplicates, so waiting later loses nothing. Also what still completes the chain's provenance
 * (the output digests), done at `confirmed` at the latest.
 */
class PendingFacts {
  private readonly pending: Promise<unknown>[] = [];
  private completions: { provenance: Provenance; digest: () => OutputDigest }[] = [];

  complete(provenance: Provenance, digest: () => OutputDigest): void {
    this.completions.push({ provenance, digest });
  }

  add(fact: Promise<unknown>): void {
    fact.catch(() => undefined); // awaited by confirmed(): a failure then fails the step (retried)
    this.pending.push(fact);
  }

  /** All stored, or the first failure; the provenance complete. */
  confirmed(): Promise<unknown> {
    for (const { provenance, digest } of this.completions.splice(0)) Object.assign(provenance, digest());
    return Promise.all(this.pending.splice(0));
  }

  /** All answered, stored or not. */
  settled(): Promise<unknown> {
    return Promise.allSettled(this.pending.splice(0));
  }
}
