/** Synthetic job events carrying StageMetric / JobMetric rows for the metrics tests, published like the runner does. */
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { JobEvent, JobMetric, StageMetric } from '../../services/lib/shared/schema-types.js';

export const STEPS = ['decode', 'upscale', 'encode'];
const MODEL_OF: Record<string, string> = { decode: '', upscale: 'sr-nomos-compact-x2', encode: '' };

/** Run time of step `index` of job `n`: distinct, known values so percentiles can be checked. */
export const runMsOf = (n: number, index: number) => 10 * (index + 1) + n;

export function stageMetric(jobId: string, n: number, index: number, now: number, status: StageMetric['status'] = 'ok'): StageMetric {
  const step = STEPS[index % STEPS.length]!;
  return {
    runId: `${jobId}:${index}:1`,
    jobId,
    sub: 'user-1',
    tenant: 'acme',
    step,
    index,
    attempt: 1,
    status,
    errorCode: status === 'error' ? 'model_failed' : '',
    model: MODEL_OF[step] ?? '',
    modelSha256: '',
    provider: step === 'upscale' ? 'cpu' : 'none',
    inputPixels: 640 * 480,
    outputPixels: 1280 * 960,
    inputBytes: 1000,
    outputBytes: 2000,
    queueWaitMs: 1.5,
    runMs: runMsOf(n, index),
    host: 'test-host',
    startedAt: now - 100,
    finishedAt: now,
  };
}

export function jobMetric(jobId: string, now: number, steps = STEPS.length): JobMetric {
  return {
    jobId,
    sub: 'user-1',
    tenant: 'acme',
    status: 'done',
    errorCode: '',
    steps,
    pipeline: STEPS.slice(0, steps).join('>'),
    inputBytes: 1000,
    outputBytes: 2000,
    totalMs: 123.5,
    host: 'test-host',
    createdAt: now - 1000,
    finishedAt: now,
  };
}

/** A job id of the real shape (26 Crockford base32 characters), readable in test output. */
export const jobIdOf = (prefix: string, n: number) => `${prefix}${String(n).padStart(26 - prefix.length, '0')}`;

/** The step event that carries a stage run, on the subject the runner publishes it to. */
export function stageEvent(m: StageMetric, jobId = m.jobId): { subject: string; event: JobEvent } {
  return {
    subject: `photolab.events.${jobId}.step`,
    event: { type: m.status === 'skipped' ? 'step.skipped' : m.status === 'error' ? 'step.retrying' : 'step.finished', jobId, at: m.finishedAt, step: m.step, index: m.index, attempt: m.attempt, ms: m.runMs, run: m },
  };
}

/** The terminal event that carries a job row. */
export function jobEvent(m: JobMetric, jobId = m.jobId): { subject: string; event: JobEvent } {
  return { subject: `photolab.events.${jobId}.end`, event: { type: 'job.done', jobId, at: m.finishedAt, steps: m.steps, eventId: 'fixture', summary: m } };
}

/**
 * Publishes, for jobs first..first+count-1, one step event per step (with its StageMetric) and
 * one terminal event (with its JobMetric), as the runner does. Returns the numbers of rows.
 */
export async function publishJobs(nc: NatsConnection, prefix: string, first: number, count: number, now: number): Promise<{ stage: number; job: number }> {
  const js = jetstream(nc);
  const acks: Promise<unknown>[] = [];
  for (let n = first; n < first + count; n++) {
    const jobId = jobIdOf(prefix, n);
    for (let i = 0; i < STEPS.length; i++) {
      const { subject, event } = stageEvent(stageMetric(jobId, n, i, now));
      acks.push(js.publish(subject, JSON.stringify(event), { msgID: `${jobId}:${i}:finished` }));
    }
    const { subject, event } = jobEvent(jobMetric(jobId, now));
    acks.push(js.publish(subject, JSON.stringify(event), { msgID: `${jobId}:end` }));
  }
  await Promise.all(acks);
  return { stage: count * STEPS.length, job: count };
}

export { waitFor } from './wait.js';
