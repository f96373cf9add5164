/**
 * What the edge does with jobs, independent of HTTP or WebSocket: submit (admission, quota,
 * store the upload, create the record, publish the first step), read, list, cancel, fetch
 * the result. Every read is scoped to the caller: someone else's job is "not found".
 */
import { createHash } from 'node:crypto';
import type { Bus } from '../lib/bus/bus.js';
import { publishProgress } from '../lib/bus/events.js';
import { ownerHash } from '../lib/bus/job-store.js';
import { isTerminal } from '../lib/shared/job-status.js';
import { isWrongLastSequence } from '../lib/bus/nats-errors.js';
import type { OpenJob, OpenJobsView } from '../lib/bus/open-jobs-view.js';
import { uploadBlobName } from '../lib/bus/subjects.js';
import { enqueueStep, firstStep } from '../lib/bus/step-queue.js';
import { finishJob, type Outcome } from '../lib/pipeline/job-lifecycle.js';
import { validatePipeline } from '../lib/pipeline/pipeline.js';
import { admitStep } from '../lib/pipeline/admission.js';
import type { StepManifest } from '../lib/pipeline/stage.js';
import type { StagePresenceView } from '../lib/bus/stage-presence.js';
import type { Config } from '../lib/shared/config.js';
import { AppError, appError, type ErrorCode } from '../lib/shared/errors.js';
import { idTime, newId } from '../lib/shared/ids.js';
import type { Logger } from '../lib/shared/logger.js';
import type { BlobRef, JobMessage, JobRecord, JobStatus, Owner } from '../lib/shared/schema-types.js';
import { sameOwner } from './auth.js';
import { assertPixelLimit } from '../lib/imaging/image-size.js';
import type { BacklogGate } from './limits.js';
import type { LiveJobs } from './live-jobs.js';
import type { CasesService } from './cases.js';
import type { Custody } from '../lib/forensics/custody.js';
import { caseScope } from '../lib/bus/case-store.js';

export interface SubmitRequest {
  pipeline: unknown;
  /** The image bytes (needed unless originalSha256 names them: the pixel limit is checked from the header). */
  image?: Buffer;
  /** Its content type as the caller gave it (kept with the evidence). */
  contentType?: string;
  /** The case the job belongs to: the image is kept as its evidence, the job listed in it. */
  caseId?: string;
  /** Start from an original already kept for the case (no upload). */
  originalSha256?: string;
  /** Set on a replay: the job re-run. */
  replayOf?: string;
  /** Set when the image is already stored (an uploaded blob): it is not stored again. */
  input?: BlobRef;
  deadlineMs?: number;
  idempotencyKey?: string;
  requestId?: string;
  /** Called once the job exists and before its first step is published (a WebSocket follows it from there). */
  beforeStart?(job: JobRecord): Promise<void>;
}

export interface ListRequest {
  status?: JobStatus;
  limit: number;
  /** Opaque cursor from an earlier page. */
  cursor?: string;
}

/** A retried submission re-sends its first step only this long after the first try: inside the 120 s duplicate window of the streams (topology.ts), with a margin. */
const RESUME_WINDOW_MS = 100_000;
const JOB_ID = /^[0-9A-HJKMNP-TV-Z]{26}$/;
const NO_RESULT = {
  pending: 'job_not_completed', running: 'job_not_completed', failed: 'job_failed', canceled: 'job_canceled', timeout: 'job_timeout',
} as const satisfies Record<Exclude<JobStatus, 'done'>, ErrorCode>;

/**
 * Why a job that is not done has no result, as an error code: the 409 of GET .../result, and
 * the PLAYE answer for a job that ended without an error of its own.
 */
export const noResultCode = (status: Exclude<JobStatus, 'done'>): ErrorCode => NO_RESULT[status];

export class JobsService {
  constructor(
    private readonly bus: Bus,
    private readonly manifests: ReadonlyMap<string, StepManifest>,
    private readonly config: Config,
    private readonly log: Logger,
    private readonly backlog?: BacklogGate,
    /**
     * open: unfinished jobs in memory (quota, deadline sweep; without it the bus is asked);
     * live: running jobs' progress as it went by (GET shows running steps without reads);
     * cases and custody: jobs in a case, and the chain-of-custody records of their evidence.
     */
    parts: { open?: OpenJobsView; live?: LiveJobs; cases?: CasesService; custody?: Custody; presence?: StagePresenceView } = {},
  ) {
    this.open = parts.open;
    this.presence = parts.presence;
    this.live = parts.live;
    if (parts.cases && parts.custody) this.forensics = { cases: parts.cases, custody: parts.custody };
  }

  private readonly open?: OpenJobsView;
  private readonly live?: LiveJobs;
  /** Live stage processes and the models they serve (admission); without it nothing is refused for models. */
  private readonly presence?: StagePresenceView;
  private readonly forensics?: { cases: CasesService; custody: Custody };

  get steps(): ReadonlyMap<string, StepManifest> {
    return this.manifests;
  }

  /**
   * Accepts a job. Written: the upload (one message up to 4 MB), the record (which is also the
   * quota reservation and the caller's job list entry), the first step's message; job.accepted
   * goes out live only. The upload and the record are written at the same time.
   */
  async submit(owner: Owner, request: SubmitRequest): Promise<{ job: JobRecord; created: boolean }> {
    const pipeline = validatePipeline(request.pipeline, this.manifests);
    for (const [i, item] of pipeline.entries()) {
      try {
        const needs = this.manifests.get(item.step)!.models?.(item.params ?? {}) ?? [];
        if (this.presence) admitStep(item.step, needs, this.presence.hostsOf(item.step));
      } catch (error) {
        if (error instanceof AppError) throw error.withMessage(`/pipeline/${i}: ${error.message}`);
        throw error;
      }
    }
    let image = request.image;
    let original: BlobRef | undefined;
    if (request.originalSha256 !== undefined) {
      if (!request.caseId) throw appError('case_required', 'originalSha256 names an original of a case: give caseId too');
      original = (await this.caseService().originalRef(owner, request.caseId, request.originalSha256)).ref;
      image = await this.bus.blobs.get(original);
    }
    if (!image || image.length === 0) throw appError('image_required', 'the image is empty');
    if (image.length > this.config.maxUploadBytes) {
      throw appError('payload_too_large', `the image is ${image.length} bytes; the limit is ${this.config.maxUploadBytes}`,
        { details: { limit: this.config.maxUploadBytes } });
    }
    await assertPixelLimit(image, this.config.maxInputPixels);
    const deadlineMs = request.deadlineMs ?? this.config.jobDeadlineMs;
    if (!Number.isInteger(deadlineMs) || deadlineMs < 1000 || deadlineMs > this.config.jobMaxDeadlineMs) {
      throw appError('invalid_deadline', `deadlineMs must be an integer between 1000 and ${this.config.jobMaxDeadlineMs}`);
    }
    await this.backlog?.admit();

    const jobId = newId();
    const now = Date.now();
    const deadline = now + deadlineMs;
    let idempotencyKvKey: string | undefined;
    /** The key's revision while it names this job (deleted on failure only if still ours). */
    let keyRevision: number | undefined;
    if (request.idempotencyKey) {
      idempotencyKvKey = idempotencyKvKeyOf(owner, request.idempotencyKey);
      const claim = await this.claimIdempotencyKey(owner, idempotencyKvKey, jobId);
      if ('existing' in claim) {
        await this.resumeSubmission(claim.existing);
        return { job: claim.existing, created: false };
      }
      keyRevision = claim.revision;
    }
    let revision: number | undefined;
    let attachedTo: string | undefined;
    let uploadName: string | undefined;
    let enqueueing = false;
    let handedOff = false;
    let input: BlobRef;
    try {
      if (request.caseId) {
        // First, so a closed case (409) or another tenant's (404) refuses before anything is stored.
        await this.caseService().attachJob(owner, request.caseId, jobId, now);
        attachedTo = request.caseId;
      }
      // In a case the input is the original kept as evidence (no TTL), not an upload blob.
      // Otherwise the upload's reference is known before it is stored: record and upload go together.
      input = request.caseId
        ? original ?? (await this.caseService().keepOriginal({ owner, requestId: request.requestId }, request.caseId, image, request.contentType ?? request.input?.contentType ?? 'application/octet-stream', false)).ref
        : request.input ?? this.bus.blobs.refFor(uploadBlobName(jobId), image, 'application/octet-stream');
      if (!request.caseId && !request.input) uploadName = input.name;
      const job: JobRecord = {
        jobId, owner, status: 'pending', pipeline, createdAt: now, deadline, input,
        steps: pipeline.map((item, index) => ({ index, step: item.step, status: 'pending' as const })),
      };
      if (request.idempotencyKey) job.idempotencyKey = request.idempotencyKey;
      if (request.caseId) job.caseId = request.caseId;
      if (request.replayOf) job.replayOf = request.replayOf;
      handedOff = this.firstStepOnThisHost(pipeline[0]!.step);
      const [created, stored] = await Promise.allSettled([
        this.bus.jobs.create(job),
        uploadName ? this.bus.blobs.put(uploadName, image, input.contentType, input) : Promise.resolve(input),
        // Without the copy the step reads the stored blob: a failed write costs time, not the job.
        handedOff ? this.bus.localFrames?.putInput(jobId, image).catch((e) => this.log.warn({ err: e, jobId }, 'input not left in the host cache')) : undefined,
      ]);
      if (created.status === 'fulfilled') revision = created.value;
      if (created.status === 'rejected') throw created.reason;
      if (stored.status === 'rejected') throw stored.reason;
      await this.checkQuota(owner, jobId, revision!);
      await request.beforeStart?.(job);
      if (idempotencyKvKey && (await this.bus.idempotency.get(idempotencyKvKey))?.revision !== keyRevision) {
        // A retry took the key over while this submission was stalled before its record (see
        // claimIdempotencyKey): that one is the key's job, so this one goes without running,
        // and before anything that cannot be taken back (the custody record, the first step).
        keyRevision = undefined;
        throw appError('idempotency_key_in_use', 'a later request with this Idempotency-Key took it over; retry to get its job', { details: { retryAfterS: 1 } });
      }
      if (request.caseId) {
        await this.forensics!.custody.record({
          action: request.replayOf ? 'job.replayed' : 'job.created', owner, caseId: request.caseId, jobId, requestId: request.requestId,
          sha256: input.sha256, bytes: input.bytes, detail: request.replayOf ? `replay of ${request.replayOf}` : pipeline.map((s) => s.step).join(','),
        });
      }
      enqueueing = true;
      await this.enqueue(job, firstStep(job, { requestId: request.requestId, now }));
      this.log.info({ jobId, sub: owner.sub, steps: pipeline.map((s) => s.step) }, 'job accepted');
      return { job, created: true };
    } catch (error) {
      if (enqueueing) {
        // The first step's publish failed, but it may have been stored all the same (an ack lost
        // with a server that died: the 3-node cluster test found jobs whose upload this cleanup
        // had deleted under a running step). Nothing is taken back: a retry with the same
        // Idempotency-Key resumes the job (resumeSubmission), and the deadline sweep ends it if
        // nothing ever does.
        this.log.warn({ err: error, jobId }, 'first step not confirmed; job left to a retry or the deadline sweep');
        throw error;
      }
      // A job refused or broken before its first step went out leaves nothing behind: no record
      // (it would count against the quota and show in the list), no upload, no idempotency key.
      if (revision !== undefined) await this.bus.jobs.withdraw(owner, jobId).catch(() => undefined);
      this.open?.forget(ownerHash(owner), jobId);
      if (uploadName) await this.bus.blobs.delete(uploadName).catch(() => undefined);
      if (handedOff) await this.bus.localFrames?.deleteJob(jobId).catch(() => undefined);
      if (attachedTo) await this.bus.cases.removeJob(caseScope(owner), attachedTo, jobId, ownerHash(owner)).catch(() => undefined);
      // Only while it still names this job: a retry may have taken it over.
      if (idempotencyKvKey && keyRevision !== undefined) await this.bus.idempotency.delete(idempotencyKvKey, { previousSeq: keyRevision }).catch(() => undefined);
      throw error;
    }
  }

  /**
   * Whether a live stage process on this host runs the job's first step: the input is then left
   * in the host's frame cache for it (LocalFrames.putInput), and the step reads it from there
   * instead of through nats-server. Should another host's process take the step, it reads the
   * blob, and the copy goes with the job's frames (FRAME_TTL_S at the latest).
   */
  private firstStepOnThisHost(step: string): boolean {
    if (!this.bus.localFrames || !this.presence) return false;
    return this.presence.hostsOf(step).some((stage) => stage.host === this.config.hostId);
  }

  private caseService(): CasesService {
    if (!this.forensics) throw appError('cases_unavailable', 'this edge was started without the case store');
    return this.forensics.cases;
  }

  /**
   * What follows the record: job.accepted (live) and the first step message. A retried
   * submission sends the step again only: its message id makes a second one a duplicate, and
   * job.accepted is progress that the first try's clients already had (or can do without).
   */
  private async enqueue(job: JobRecord, first: JobMessage, options: { retry?: boolean } = {}): Promise<void> {
    // job.accepted goes out before the first step can be taken, so it precedes step.started.
    if (!options.retry) publishProgress(this.bus.nc, { type: 'job.accepted', jobId: job.jobId, at: job.createdAt, steps: job.pipeline.length });
    await enqueueStep(this.bus.js, first);
  }

  /**
   * A retry (same Idempotency-Key) of a submission that failed after its record was written:
   * the first request may have died before the first step message was stored (a NATS server
   * lost mid-submission: the 3-node cluster test found jobs left pending for good that way).
   * Within the streams' duplicate window (2 min) the first step is sent again with the same
   * message id, so a message that did get stored is dropped as a duplicate and never forks the
   * job; past the window, re-sending could run the first step twice, so the deadline sweep is
   * left to end such a job.
   */
  private async resumeSubmission(job: JobRecord): Promise<void> {
    if (job.status !== 'pending' || job.steps[0]?.status !== 'pending' || Date.now() - job.createdAt > RESUME_WINDOW_MS) return;
    await this.enqueue(job, firstStep(job), { retry: true });
  }

  /**
   * The caller's concurrent-job quota, counted after the record (the reservation) is written:
   * of two submissions racing for the last slot only the earlier record wins. Entries whose
   * end the view has not applied yet are checked against their terminal event before refusing.
   */
  private async checkQuota(owner: Owner, jobId: string, revision: number): Promise<void> {
    const max = this.config.maxConcurrentJobs;
    if (max <= 0) return;
    let open = await this.openJobs(owner, revision);
    if (open.length <= max) return;
    const stillOpen = await Promise.all(open.map(async (entry) => {
      if (entry.jobId === jobId) return true;
      if (!(await this.bus.jobs.terminal(entry.jobId))) return true;
      this.open?.forget(entry.ownerHash, entry.jobId);
      return false;
    }));
    open = open.filter((_, i) => stillOpen[i]);
    if (open.length <= max) return;
    throw appError('too_many_jobs', `you have ${open.length - 1} unfinished jobs; the limit is ${max}. Wait for one to finish or cancel one`,
      { details: { retryAfterS: 5, unfinished: open.length - 1, limit: max } });
  }

  /**
   * Unfinished jobs, of one caller or everyone, submitted up to `upTo` (a record revision).
   * From the view in memory; without one, or when it does not catch up within 2 s, from the
   * caller's records and their terminal events (in proportion to the caller's recent jobs).
   */
  async openJobs(owner?: Owner, upTo?: number): Promise<OpenJob[]> {
    if (this.open && (upTo === undefined || await this.open.caughtUp(upTo, 2000))) return this.open.entries(owner && ownerHash(owner), upTo);
    if (!owner) return [];
    const since = Date.now() - this.config.jobMaxDeadlineMs - 10 * 60_000;
    const ids = (await this.bus.jobs.jobIds(owner)).filter((id) => idTime(id) >= since);
    const entries = await Promise.all(ids.map(async (id) => {
      const [record, end] = await Promise.all([this.bus.jobs.submitted(owner, id), this.bus.jobs.terminal(id)]);
      return record && !end ? { ownerHash: ownerHash(owner), jobId: id, deadline: record.deadline, revision: 0 } : null;
    }));
    return entries.filter((e): e is OpenJob => e !== null);
  }

  /**
   * Takes the key for jobId, or returns the job that holds it. A key that has named a missing
   * record for longer than IDEMPOTENCY_STALE_MS is taken over, because its submission failed before
   * its record was written and could not remove the key. That happens when NATS goes away in
   * mid-submission: the 3-node cluster test saw a retry refused with 409 for 7 minutes that way,
   * and the key would have blocked it for the bucket's 24 h. A submission that was only stalled
   * finds the key taken before it enqueues anything, and gives way (submit).
   */
  private async claimIdempotencyKey(owner: Owner, kvKey: string, jobId: string): Promise<{ revision: number } | { existing: JobRecord }> {
    for (let tries = 0; tries < 3; tries++) {
      try {
        return { revision: await this.bus.idempotency.create(kvKey, jobId) };
      } catch (error) {
        if (!isWrongLastSequence(error)) throw error;
      }
      const entry = await this.bus.idempotency.get(kvKey);
      const existingId = entry?.operation === 'PUT' ? entry.string() : '';
      if (!entry || !existingId) continue; // removed meanwhile (a failed submission's clean-up): create again
      // The first request may still be creating its job record: give it a moment. (The key is
      // per caller, so the job found is the caller's own.)
      for (let i = 0; i < 100; i++) {
        const job = await this.bus.jobs.get(owner, existingId, this.live?.get(existingId));
        if (job) return { existing: job };
        await new Promise((r) => setTimeout(r, 20));
      }
      if (Date.now() - entry.created.getTime() < this.config.idempotencyStaleMs) break;
      try {
        const revision = await this.bus.idempotency.update(kvKey, jobId, entry.revision);
        this.log.warn({ key: kvKey, stale: existingId, jobId }, 'Idempotency-Key named no job record; taken over by this retry');
        return { revision };
      } catch (error) {
        if (!isWrongLastSequence(error)) throw error; // another retry took it first: look again
      }
    }
    throw appError('idempotency_key_in_use', 'a request with this Idempotency-Key is still being processed; retry shortly', { details: { retryAfterS: 1 } });
  }

  /** The caller's job; someone else's job is reported as not found. */
  async get(owner: Owner, jobId: string): Promise<JobRecord> {
    const job = JOB_ID.test(jobId) ? await this.bus.jobs.get(owner, jobId, this.live?.get(jobId)) : null;
    if (!job || !sameOwner(job.owner, owner)) throw appError('job_not_found', `no job ${jobId}`);
    return this.expireIfLate(job);
  }

  /** A job past its deadline that nothing ended yet ends now (lazily, on read). */
  private async expireIfLate(job: JobRecord): Promise<JobRecord> {
    if (isTerminal(job.status) || Date.now() <= job.deadline) return job;
    await this.timeOut(job);
    return (await this.bus.jobs.get(job.owner, job.jobId, this.live?.get(job.jobId))) ?? job;
  }

  /** Ends a job as timeout; false when something else ended it first. */
  async timeOut(job: JobRecord): Promise<boolean> {
    return (await this.end(job, { status: 'timeout', error: { code: 'job_timeout' satisfies ErrorCode, message: 'the job passed its deadline' } })) !== null;
  }

  /** Ends a job (cancel, timeout) from its record; null when something else ended it first. */
  private end(job: JobRecord, outcome: Outcome) {
    return finishJob(this.bus, { jobId: job.jobId, owner: job.owner, pipeline: job.pipeline, createdAt: job.createdAt, inputBytes: job.input.bytes }, outcome, this.config.hostId);
  }

  /** The deadline sweep's way in: the late job by its open entry. */
  async timeOutEntry(entry: OpenJob): Promise<boolean> {
    const job = await this.bus.jobs.submittedByKey(`${entry.ownerHash}.${entry.jobId}`);
    const ended = job ? await this.timeOut(job) : false;
    this.open?.forget(entry.ownerHash, entry.jobId);
    return ended;
  }

  async result(owner: Owner, jobId: string, requestId?: string): Promise<{ job: JobRecord; bytes?: Buffer; contentType?: string }> {
    const job = await this.get(owner, jobId);
    if (job.status !== 'done') {
      throw appError(noResultCode(job.status), `job ${jobId} has no result: it is ${job.status}`, { details: { status: job.status, ...(job.error ? { error: job.error } : {}) } });
    }
    return { job, ...(await this.readResult(owner, job, requestId)) };
  }

  /** A done job's result image (none for a findings-only pipeline); a read of a case's job is a custody record. */
  async readResult(owner: Owner, job: JobRecord, requestId?: string): Promise<{ bytes?: Buffer; contentType?: string }> {
    const image = job.result?.image;
    if (!image) return {};
    const bytes = await this.bus.blobs.get(image);
    if (job.caseId) await this.forensics?.custody.record({ action: 'result.read', owner, caseId: job.caseId, jobId: job.jobId, requestId, sha256: image.sha256, bytes: bytes.length });
    return { bytes, contentType: image.contentType ?? 'application/octet-stream' };
  }

  async cancel(owner: Owner, jobId: string, requestId?: string): Promise<JobRecord> {
    const job = await this.get(owner, jobId);
    if (isTerminal(job.status)) throw appError('job_not_cancelable', `job ${jobId} already ended: ${job.status}`, { details: { status: job.status } });
    const ended = await this.end(job, { status: 'canceled', error: { code: 'job_canceled' satisfies ErrorCode, message: 'canceled by the caller' } });
    const now = (await this.bus.jobs.get(owner, jobId, this.live?.get(jobId))) ?? job;
    if (!ended) throw appError('job_not_cancelable', `job ${jobId} already ended: ${now.status}`, { details: { status: now.status } });
    if (job.caseId) await this.forensics?.custody.record({ action: 'job.canceled', owner, caseId: job.caseId, jobId, requestId });
    return now;
  }

  /**
   * The caller's jobs, newest first, from the caller's index (never the whole jobs bucket).
   * With a status filter a page may come back short (at most SCAN_LIMIT records are read per
   * request); nextCursor then continues the scan.
   */
  async list(owner: Owner, request: ListRequest): Promise<{ jobs: JobRecord[]; nextCursor?: string }> {
    const before = request.cursor === undefined ? undefined : decodeCursor(request.cursor);
    const ids = await this.bus.jobs.jobIds(owner);
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
      const records = await Promise.all(batch.map((id) => this.bus.jobs.get(owner, id, this.live?.get(id))));
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

/** The caller's Idempotency-Key as its key in the photolab-idempotency bucket. */
export function idempotencyKvKeyOf(owner: Owner, key: string): string {
  return createHash('sha256').update(`${owner.tenant ?? ''}\u0000${owner.sub}\u0000${key}`).digest('hex');
}

/** Cursors are opaque to clients: base64url of "v1:<last job id of the previous page>". */
export function encodeCursor(jobId: string): string {
  return Buffer.from(`v1:${jobId}`).toString('base64url');
}

export function decodeCursor(cursor: string): string {
  const text = /^[A-Za-z0-9_-]{1,100}$/.test(cursor) ? Buffer.from(cursor, 'base64url').toString('utf8') : '';
  const match = /^v1:([0-9A-HJKMNP-TV-Z]{26})$/.exec(text);
  if (!match) throw appError('invalid_cursor', 'cursor is not one this API gave out; start again without it');
  return match[1]!;
}
