/**
 * Ending a job, the same way wherever it ends: the last step (done), a step that gives up
 * (failed), the edge (canceled), or whoever sees the deadline pass (timeout).
 * The compare-and-set on the job record makes exactly one of several racers the winner;
 * only the winner publishes the terminal event and the job's metrics record.
 */
import type { Bus } from '../bus/bus.js';
import { publishEvent } from '../bus/events.js';
import { isTerminal } from '../bus/job-store.js';
import { subjects } from '../bus/subjects.js';
import { config } from '../shared/config.js';
import type { ErrorInfo, JobEvent, JobMetric, JobRecord, ResultInfo } from '../shared/schema-types.js';

export type TerminalStatus = 'done' | 'failed' | 'canceled' | 'timeout';

const EVENT_OF: Record<TerminalStatus, JobEvent['type']> = {
  done: 'job.done', failed: 'job.failed', canceled: 'job.canceled', timeout: 'job.timeout',
};

export async function finishJob(bus: Bus, jobId: string, outcome: { status: TerminalStatus; error?: ErrorInfo; result?: ResultInfo }): Promise<JobRecord | null> {
  let won = false;
  const now = Date.now();
  const updated = await bus.jobs.update(jobId, (job) => {
    if (isTerminal(job.status)) return null;
    won = true;
    job.status = outcome.status;
    job.finishedAt = now;
    if (outcome.error) job.error = outcome.error;
    if (outcome.result) job.result = outcome.result;
    for (const step of job.steps) {
      if (step.status === 'pending' || step.status === 'running') {
        step.status = outcome.status === 'failed' && step.status === 'running' ? 'failed' : outcome.status === 'done' ? step.status : 'canceled';
      }
    }
    return job;
  });
  if (!won || !updated) return null;
  const record = updated.record;
  const event: JobEvent = { type: EVENT_OF[outcome.status], jobId, at: now, steps: record.pipeline.length };
  if (outcome.error) event.error = outcome.error;
  if (outcome.result) event.result = outcome.result;
  // Independent of each other, so one round trip for all. The caller's concurrent-job quota
  // counts unfinished jobs; a lost delete is repaired by the edge's sweep.
  await Promise.all([
    publishEvent(bus.js, event, 'terminal'),
    publishJobMetric(bus, record),
    bus.jobIndex.markFinished(record).catch(() => undefined),
    bus.frames.deleteJob(jobId).catch(() => undefined),
  ]);
  return record;
}

async function publishJobMetric(bus: Bus, job: JobRecord): Promise<void> {
  const metric: JobMetric = {
    jobId: job.jobId,
    sub: job.owner.sub,
    tenant: job.owner.tenant ?? '',
    status: job.status as TerminalStatus,
    errorCode: job.error?.code ?? '',
    steps: job.pipeline.length,
    pipeline: job.pipeline.map((s) => s.step).join('>'),
    inputBytes: job.input.bytes,
    outputBytes: job.result?.image?.bytes ?? 0,
    totalMs: (job.finishedAt ?? Date.now()) - job.createdAt,
    host: config.hostId,
    createdAt: job.createdAt,
    finishedAt: job.finishedAt ?? Date.now(),
  };
  await bus.js.publish(subjects.jobMetric, JSON.stringify(metric), { msgID: job.jobId });
}
