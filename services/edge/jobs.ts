/**
 * What the edge does with jobs, independent of HTTP or WebSocket: submit (admission, quota,
 * store the upload, create the record, publish the first step), read, list, cancel, fetch
 * the result. Every read is scoped to the caller: someone else's job is "not found".
 */
import { createHash } from 'node:crypto';
import type { Bus } from '../bus/bus.js';
import { publishEvent } from '../bus/events.js';
import { isTerminal } from '../bus/job-store.js';
import { msgIds, subjects, uploadBlobName } from '../bus/subjects.js';
import { finishJob } from '../runner/job-lifecycle.js';
import { validatePipeline } from '../runner/pipeline.js';
import type { StageDefinition } from '../runner/stage.js';
import type { Config } from '../shared/config.js';
import { AppError, badRequest, conflict, notFound } from '../shared/errors.js';
import { idTime, newId } from '../shared/ids.js';
import type { Logger } from '../shared/logger.js';
import type { BlobRef, JobMessage, JobRecord, JobStatus, Owner } from '../shared/schema-types.js';
import { sameOwner } from './auth.js';
import { assertPixelLimit } from './image-size.js';
import type { BacklogGate } from './limits.js';

export interface SubmitRequest {
  pipeline: unknown;
  /** The image bytes (always needed: the pixel limit is checked from its header). */
  image: Buffer;
  /** Set when the image is already stored (an uploaded blob): it is not stored again. */
  input?: BlobRef;
  deadlineMs?: number;
  idempotencyKey?: string;
  requestId?: string;
}

export interface ListRequest {
  status?: JobStatus;
  limit: number;
  /** Opaque cursor from an earlier page. */
  cursor?: string;
}

/** A quota slot reserved this long ago whose job record never came is an abandoned submission. */
const ABANDONED_RESERVATION_MS = 60_000;
/** A retried submission re-sends its first step only this long after the first try: inside the 120 s duplicate window of the streams (topology.ts), with a margin. */
const RESUME_WINDOW_MS = 100_000;
const JOB_ID = /^[0-9A-HJKMNP-TV-Z]{26}$/;
const RESULT_CONFLICT: Record<JobStatus, string> = {
  pending: 'job_not_completed', running: 'job_not_completed', done: '', failed: 'job_failed', canceled: 'job_canceled', timeout: 'job_timeout',
};

export class JobsService {
  constructor(
    private readonly bus: Bus,
    private readonly stages: Map<string, StageDefinition>,
    private readonly config: Config,
    private readonly log: Logger,
    private readonly backlog?: BacklogGate,
  ) {}

  get steps(): ReadonlyMap<string, StageDefinition> {
    return this.stages;
  }

  async submit(owner: Owner, request: SubmitRequest): Promise<{ job: JobRecord; created: boolean }> {
    const pipeline = validatePipeline(request.pipeline, this.stages);
    for (const [i, item] of pipeline.entries()) {
      try {
        this.stages.get(item.step)!.admit?.(item.params ?? {}, { log: this.log, modelsDir: this.config.modelsDir });
      } catch (error) {
        if (error instanceof AppError) throw new AppError(error.status, error.code, `/pipeline/${i}: ${error.message}`, { details: error.details, retryable: false });
        throw error;
      }
    }
    if (request.image.length === 0) throw badRequest('image_required', 'the image is empty');
    if (request.image.length > this.config.maxUploadBytes) {
      throw new AppError(413, 'payload_too_large', `the image is ${request.image.length} bytes; the limit is ${this.config.maxUploadBytes}`,
        { details: { limit: this.config.maxUploadBytes } });
    }
    await assertPixelLimit(request.image, this.config.maxInputPixels);
    const deadlineMs = request.deadlineMs ?? this.config.jobDeadlineMs;
    if (!Number.isInteger(deadlineMs) || deadlineMs < 1000 || deadlineMs > this.config.jobMaxDeadlineMs) {
      throw badRequest('invalid_deadline', `deadlineMs must be an integer between 1000 and ${this.config.jobMaxDeadlineMs}`);
    }
    await this.backlog?.admit();

    const jobId = newId();
    const now = Date.now();
    const deadline = now + deadlineMs;
    let idempotencyKvKey: string | undefined;
    if (request.idempotencyKey) {
      idempotencyKvKey = idempotencyKey(owner, request.idempotencyKey);
      const existing = await this.claimIdempotencyKey(idempotencyKvKey, jobId);
      if (existing) {
        if (!sameOwner(existing.owner, owner)) throw conflict('idempotency_key_in_use', 'this Idempotency-Key belongs to another job');
        await this.resumeSubmission(existing);
        return { job: existing, created: false };
      }
    }
    let recordCreated = false;
    try {
      // The quota slot and the upload are independent: both are written before the record.
      const [reserved, stored] = await Promise.allSettled([
        this.reserveSlot(owner, jobId, deadline),
        request.input ? Promise.resolve(request.input) : this.bus.blobs.put(uploadBlobName(jobId), request.image, 'application/octet-stream'),
      ]);
      if (reserved.status === 'rejected') {
        if (stored.status === 'fulfilled' && !request.input) await this.bus.blobs.delete(stored.value.name).catch(() => undefined);
        throw reserved.reason;
      }
      if (stored.status === 'rejected') throw stored.reason;
      const input = stored.value;
      const job: JobRecord = {
        jobId, owner, status: 'pending', pipeline, createdAt: now, deadline, input,
        steps: pipeline.map((item, index) => ({ index, step: item.step, status: 'pending' })),
      };
      if (request.idempotencyKey) job.idempotencyKey = request.idempotencyKey;
      await this.bus.jobs.create(job);
      recordCreated = true;
      const first: JobMessage = {
        v: 1, jobId, owner, pipeline, index: 0, input, findings: {}, provenance: [], deadline,
        submittedAt: now, enqueuedAt: now, ...(request.requestId ? { requestId: request.requestId } : {}),
      };
      await this.enqueue(job, first);
      this.log.info({ jobId, sub: owner.sub, steps: pipeline.map((s) => s.step) }, 'job accepted');
      return { job, created: true };
    } catch (error) {
      // A job that never came to exist must not hold a quota slot or an idempotency key.
      // One whose record exists keeps its open entry: the deadline sweep ends it.
      if (!recordCreated) {
        await this.bus.jobIndex.markFinished({ jobId, owner, deadline }).catch(() => undefined);
        if (idempotencyKvKey) await this.bus.idempotency.delete(idempotencyKvKey).catch(() => undefined);
      }
      throw error;
    }
  }

  /**
   * What follows the record: the caller's listing, job.accepted, the first step message. Each
   * write is idempotent (a KV put, message ids), so a retried submission may run it again.
   */
  private async enqueue(job: JobRecord, first: JobMessage): Promise<void> {
    // job.accepted goes out before the first step can be taken, so it precedes step.started.
    await Promise.all([
      this.bus.jobIndex.add(job),
      publishEvent(this.bus.js, { type: 'job.accepted', jobId: job.jobId, at: job.createdAt, steps: job.pipeline.length }, 'accepted'),
    ]);
    await this.bus.js.publish(subjects.stage(job.pipeline[0]!.step), JSON.stringify(first), { msgID: msgIds.step(job.jobId, 0) });
  }

  /**
   * A retry (same Idempotency-Key) of a submission that failed after its record was written:
   * the first request may have died before the first step message was stored (a NATS server
   * lost mid-submission: the 3-node cluster test found jobs left pending for good that way).
   * Within the streams' duplicate window (2 min) the writes are sent again with the same
   * message ids, so a message that did get stored is dropped as a duplicate and never forks
   * the job; past the window, re-sending could run the first step twice, so the deadline sweep
   * is left to end such a job.
   */
  private async resumeSubmission(job: JobRecord): Promise<void> {
    if (job.status !== 'pending' || job.steps[0]?.status !== 'pending' || Date.now() - job.createdAt > RESUME_WINDOW_MS) return;
    await this.enqueue(job, {
      v: 1, jobId: job.jobId, owner: job.owner, pipeline: job.pipeline, index: 0, input: job.input, findings: {}, provenance: [],
      deadline: job.deadline, submittedAt: job.createdAt, enqueuedAt: Date.now(),
    });
  }

  /**
   * Marks the job open (its entry also drives the deadline sweep) and checks the caller's
   * concurrent-job quota. The slot is reserved first and then counted, so of two submissions
   * racing for the last slot only the earlier reservation wins.
   */
  private async reserveSlot(owner: Owner, jobId: string, deadline: number): Promise<void> {
    const revision = await this.bus.jobIndex.markOpen({ jobId, owner, deadline });
    const max = this.config.maxConcurrentJobs;
    if (max <= 0) return;
    let open = await this.bus.jobIndex.openJobs(owner, revision);
    if (open.length <= max) return;
    // Entries of jobs that already ended (a finish whose index delete was lost), or whose
    // submission was abandoned long ago, do not count. An entry without a record is usually a
    // submission still on its way (slot reserved, upload being stored): that one counts.
    const stillOpen = await Promise.all(open.map(async (entry) => {
      if (entry.jobId === jobId) return true;
      const job = await this.bus.jobs.get(entry.jobId);
      if (job ? !isTerminal(job.status) : Date.now() - idTime(entry.jobId) < ABANDONED_RESERVATION_MS) return true;
      await this.bus.jobIndex.removeOpen(entry).catch(() => undefined);
      return false;
    }));
    open = open.filter((_, i) => stillOpen[i]);
    if (open.length <= max) return;
    await this.bus.jobIndex.markFinished({ jobId, owner, deadline });
    throw new AppError(429, 'too_many_jobs', `you have ${open.length - 1} unfinished jobs; the limit is ${max}. Wait for one to finish or cancel one`,
      { details: { retryAfterS: 5, unfinished: open.length - 1, limit: max } });
  }

  /** Returns the job that already holds this key, or null if the key is now ours. */
  private async claimIdempotencyKey(kvKey: string, jobId: string): Promise<JobRecord | null> {
    try {
      await this.bus.idempotency.create(kvKey, jobId);
      return null;
    } catch (error) {
      if (!/wrong last sequence|key exists/i.test(String(error))) throw error;
    }
    const existingId = (await this.bus.idempotency.get(kvKey))?.string();
    // The first request may still be creating its job record: give it a moment.
    for (let i = 0; existingId && i < 100; i++) {
      const job = await this.bus.jobs.get(existingId);
      if (job) return job;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new AppError(409, 'idempotency_key_in_use', 'a request with this Idempotency-Key is still being processed; retry shortly', { details: { retryAfterS: 1 } });
  }

  /** The caller's job; someone else's job is reported as not found. */
  async get(owner: Owner, jobId: string): Promise<JobRecord> {
    const job = JOB_ID.test(jobId) ? await this.bus.jobs.get(jobId) : null;
    if (!job || !sameOwner(job.owner, owner)) throw notFound('job_not_found', `no job ${jobId}`);
    return this.expireIfLate(job);
  }

  /** A job past its deadline that nothing ended yet ends now (lazily, on read). */
  private async expireIfLate(job: JobRecord): Promise<JobRecord> {
    if (isTerminal(job.status) || Date.now() <= job.deadline) return job;
    const ended = await this.timeOut(job.jobId);
    return ended ?? (await this.bus.jobs.get(job.jobId)) ?? job;
  }

  /** Ends a job as timeout; null when something else ended it first. */
  timeOut(jobId: string): Promise<JobRecord | null> {
    return finishJob(this.bus, jobId, { status: 'timeout', error: { code: 'job_timeout', message: 'the job passed its deadline' } });
  }

  async result(owner: Owner, jobId: string): Promise<{ job: JobRecord; bytes?: Buffer; contentType?: string }> {
    const job = await this.get(owner, jobId);
    if (job.status !== 'done') {
      throw conflict(RESULT_CONFLICT[job.status], `job ${jobId} has no result: it is ${job.status}`, { status: job.status, ...(job.error ? { error: job.error } : {}) });
    }
    const image = job.result?.image;
    if (!image) return { job };
    return { job, bytes: await this.bus.blobs.get(image), contentType: image.contentType ?? 'application/octet-stream' };
  }

  async cancel(owner: Owner, jobId: string): Promise<JobRecord> {
    const job = await this.get(owner, jobId);
    if (isTerminal(job.status)) throw conflict('job_not_cancelable', `job ${jobId} already ended: ${job.status}`, { status: job.status });
    const ended = await finishJob(this.bus, jobId, { status: 'canceled', error: { code: 'job_canceled', message: 'canceled by the caller' } });
    if (!ended) {
      const now = await this.bus.jobs.get(jobId);
      throw conflict('job_not_cancelable', `job ${jobId} already ended: ${now?.status}`, { status: now?.status });
    }
    return ended;
  }

  /**
   * The caller's jobs, newest first, from the caller's index (never the whole jobs bucket).
   * With a status filter a page may come back short (at most SCAN_LIMIT records are read per
   * request); nextCursor then continues the scan.
   */
  async list(owner: Owner, request: ListRequest): Promise<{ jobs: JobRecord[]; nextCursor?: string }> {
    const before = request.cursor === undefined ? undefined : decodeCursor(request.cursor);
    const ids = await this.bus.jobIndex.jobIds(owner);
    let end = ids.length;
    if (before !== undefined) {
      end = 0;
      while (end < ids.length && ids[end]! < before) end++;
    }
    const scanLimit = Math.max(request.limit * 10, 200);
    const jobs: JobRecord[] = [];
    let next = end - 1; // index of the next id to look at, walking towards older jobs
    let scanned = 0;
    while (next >= 0 && jobs.length < request.limit && scanned < scanLimit) {
      const batch = ids.slice(Math.max(0, next - (request.limit - jobs.length) + 1), next + 1).reverse();
      const records = await Promise.all(batch.map((id) => this.bus.jobs.get(id)));
      for (const record of records) {
        next--;
        scanned++;
        if (!record || !sameOwner(record.owner, owner)) continue; // expired, or a hash collision
        const job = await this.expireIfLate(record);
        if (request.status && job.status !== request.status) continue;
        jobs.push(job);
        if (jobs.length >= request.limit) break;
      }
    }
    // The cursor names the last id looked at; the next page starts just below it.
    const nextCursor = next >= 0 ? encodeCursor(ids[next + 1]!) : undefined;
    return { jobs, ...(nextCursor ? { nextCursor } : {}) };
  }
}

function idempotencyKey(owner: Owner, key: string): string {
  return createHash('sha256').update(`${owner.tenant ?? ''}\u0000${owner.sub}\u0000${key}`).digest('hex');
}

/** Cursors are opaque to clients: base64url of "v1:<last job id of the previous page>". */
export function encodeCursor(jobId: string): string {
  return Buffer.from(`v1:${jobId}`).toString('base64url');
}

export function decodeCursor(cursor: string): string {
  const text = /^[A-Za-z0-9_-]{1,100}$/.test(cursor) ? Buffer.from(cursor, 'base64url').toString('utf8') : '';
  const match = /^v1:([0-9A-HJKMNP-TV-Z]{26})$/.exec(text);
  if (!match) throw badRequest('invalid_cursor', 'cursor is not one this API gave out; start again without it');
  return match[1]!;
}
