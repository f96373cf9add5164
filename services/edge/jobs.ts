/**
 * What the edge does with jobs, independent of HTTP or WebSocket: submit (store the upload,
 * create the record, publish the first step), read, cancel, fetch the result.
 */
import { createHash } from 'node:crypto';
import sharp, { type Metadata } from 'sharp';
import type { Bus } from '../bus/bus.js';
import { publishEvent } from '../bus/events.js';
import { isTerminal } from '../bus/job-store.js';
import { msgIds, subjects, uploadBlobName } from '../bus/subjects.js';
import { finishJob } from '../runner/job-lifecycle.js';
import { validatePipeline } from '../runner/pipeline.js';
import type { StageDefinition } from '../runner/stage.js';
import type { Config } from '../shared/config.js';
import { AppError, badRequest, conflict, notFound } from '../shared/errors.js';
import { newId } from '../shared/ids.js';
import type { Logger } from '../shared/logger.js';
import type { JobMessage, JobRecord, Owner } from '../shared/schema-types.js';
import { sameOwner } from './auth.js';

export interface SubmitRequest {
  pipeline: unknown;
  image: Buffer;
  deadlineMs?: number;
  idempotencyKey?: string;
  requestId?: string;
}

export class JobsService {
  constructor(
    private readonly bus: Bus,
    private readonly stages: Map<string, StageDefinition>,
    private readonly config: Config,
    private readonly log: Logger,
  ) {}

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
      throw new AppError(413, 'payload_too_large', `the image is ${request.image.length} bytes; the limit is ${this.config.maxUploadBytes}`);
    }
    await this.checkPixels(request.image);
    const deadlineMs = request.deadlineMs ?? this.config.jobDeadlineMs;
    if (!Number.isInteger(deadlineMs) || deadlineMs < 1000 || deadlineMs > this.config.jobMaxDeadlineMs) {
      throw badRequest('invalid_deadline', `deadlineMs must be an integer between 1000 and ${this.config.jobMaxDeadlineMs}`);
    }

    const jobId = newId();
    if (request.idempotencyKey) {
      const existing = await this.claimIdempotencyKey(owner, request.idempotencyKey, jobId);
      if (existing) return { job: existing, created: false };
    }
    const now = Date.now();
    const input = await this.bus.blobs.put(uploadBlobName(jobId), request.image, 'application/octet-stream');
    const job: JobRecord = {
      jobId, owner, status: 'pending', pipeline, createdAt: now, deadline: now + deadlineMs, input,
      steps: pipeline.map((item, index) => ({ index, step: item.step, status: 'pending' })),
    };
    if (request.idempotencyKey) job.idempotencyKey = request.idempotencyKey;
    await this.bus.jobs.create(job);
    const first: JobMessage = {
      v: 1, jobId, owner, pipeline, index: 0, input, findings: {}, provenance: [], deadline: job.deadline,
      submittedAt: now, enqueuedAt: now, ...(request.requestId ? { requestId: request.requestId } : {}),
    };
    await publishEvent(this.bus.js, { type: 'job.accepted', jobId, at: now, steps: pipeline.length }, 'accepted');
    await this.bus.js.publish(subjects.stage(pipeline[0]!.step), JSON.stringify(first), { msgID: msgIds.step(jobId, 0) });
    this.log.info({ jobId, sub: owner.sub, steps: pipeline.map((s) => s.step) }, 'job accepted');
    return { job, created: true };
  }

  /** The pixel limit is checked from the header, before anything decodes the image in full. */
  private async checkPixels(image: Buffer): Promise<void> {
    let meta: Metadata;
    try {
      meta = await sharp(image, { limitInputPixels: false }).metadata();
    } catch {
      return; // not an image we can read: decode fails the job with a clear error
    }
    const pixels = (meta.width ?? 0) * (meta.height ?? 0);
    if (pixels > this.config.maxInputPixels) {
      throw new AppError(413, 'image_too_large', `the image is ${meta.width}x${meta.height} (${pixels} pixels); the limit is ${this.config.maxInputPixels} pixels`,
        { details: { width: meta.width, height: meta.height, maxPixels: this.config.maxInputPixels } });
    }
  }

  /** Returns the job that already holds this key, or null if the key is now ours. */
  private async claimIdempotencyKey(owner: Owner, key: string, jobId: string): Promise<JobRecord | null> {
    const kvKey = createHash('sha256').update(`${owner.tenant ?? ''}\u0000${owner.sub}\u0000${key}`).digest('hex');
    try {
      await this.bus.idempotency.create(kvKey, jobId);
      return null;
    } catch (error) {
      if (!/wrong last sequence|key exists/i.test(String(error))) throw error;
    }
    const existingId = (await this.bus.idempotency.get(kvKey))?.string();
    // The first request may still be creating its job record: give it a moment.
    for (let i = 0; existingId && i < 50; i++) {
      const job = await this.bus.jobs.get(existingId);
      if (job) return job;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw conflict('idempotency_key_in_use', 'a request with this Idempotency-Key is still being processed; retry shortly');
  }

  /** The caller's job; someone else's job is reported as not found. */
  async get(owner: Owner, jobId: string): Promise<JobRecord> {
    const job = /^[0-9A-HJKMNP-TV-Z]{26}$/.test(jobId) ? await this.bus.jobs.get(jobId) : null;
    if (!job || !sameOwner(job.owner, owner)) throw notFound('job_not_found', `no job ${jobId}`);
    if (!isTerminal(job.status) && Date.now() > job.deadline) {
      const ended = await finishJob(this.bus, jobId, { status: 'timeout', error: { code: 'job_timeout', message: 'the job passed its deadline' } });
      return ended ?? (await this.bus.jobs.get(jobId)) ?? job;
    }
    return job;
  }

  async result(owner: Owner, jobId: string): Promise<{ job: JobRecord; bytes?: Buffer; contentType?: string }> {
    const job = await this.get(owner, jobId);
    if (job.status !== 'done') {
      const code = { pending: 'job_not_completed', running: 'job_not_completed', failed: 'job_failed', canceled: 'job_canceled', timeout: 'job_timeout' }[job.status] ?? 'job_not_completed';
      throw conflict(code, `job ${jobId} has no result: it is ${job.status}`, job.error ? { error: job.error } : undefined);
    }
    const image = job.result?.image;
    if (!image) return { job };
    return { job, bytes: await this.bus.blobs.get(image), contentType: image.contentType ?? 'application/octet-stream' };
  }

  async cancel(owner: Owner, jobId: string): Promise<JobRecord> {
    const job = await this.get(owner, jobId);
    if (isTerminal(job.status)) throw conflict('job_not_cancelable', `job ${jobId} already ended: ${job.status}`);
    const ended = await finishJob(this.bus, jobId, { status: 'canceled', error: { code: 'job_canceled', message: 'canceled by the caller' } });
    if (!ended) {
      const now = await this.bus.jobs.get(jobId);
      throw conflict('job_not_cancelable', `job ${jobId} already ended: ${now?.status}`);
    }
    return ended;
  }
}
