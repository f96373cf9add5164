/**
 * Ending a job, the same way wherever it ends: the last step (done), a step that gives up
 * (failed), the edge (canceled), or whoever sees the deadline pass (timeout).
 * One write: the terminal event on photolab.events.<jobId>.end, which also carries the job's
 * metrics row (`summary`). JobStore.end lets exactly one of several racers write it.
 */
import { randomUUID } from 'node:crypto';
import type { Bus } from '../bus/bus.js';
import { TERMINAL_EVENT, type TerminalStatus } from '../shared/job-status.js';
import type { ErrorInfo, JobEvent, JobMetric, Owner, PipelineStep, ResultInfo, StageMetric } from '../shared/schema-types.js';


/** What ending a job needs to know of it: the routing slip and the record both have it. */
export interface JobFacts {
  jobId: string;
  owner: Owner;
  pipeline: PipelineStep[];
  createdAt: number;
  /** Size of the original upload. */
  inputBytes: number;
}

export interface Outcome {
  status: TerminalStatus;
  error?: ErrorInfo;
  result?: ResultInfo;
  /** The failing attempt's stage run (job.failed): its stage_runs row travels with the end. */
  run?: StageMetric;
  /** The step index the job ended at, when a step ended it. */
  index?: number;
  /** Who ends it (the event's eventId): the same for every try of one ending, new by default. */
  eventId?: string;
}

/** Publishes the job's end; returns the event when this call ended the job, null when something else had. */
export async function finishJob(bus: Bus, job: JobFacts, outcome: Outcome, host: string): Promise<JobEvent | null> {
  const at = Date.now();
  const event: JobEvent & { eventId: string } = {
    type: TERMINAL_EVENT[outcome.status], jobId: job.jobId, at, steps: job.pipeline.length, eventId: outcome.eventId ?? randomUUID(),
    summary: jobMetric(job, outcome, at, host),
  };
  if (outcome.index !== undefined) event.index = outcome.index;
  if (outcome.error) event.error = outcome.error;
  if (outcome.result) event.result = outcome.result;
  if (outcome.run) event.run = outcome.run;
  const stored = await bus.jobs.end(event);
  if (!stored) return null;
  // Frames of the job's steps are of no use any more (they also expire by FRAME_TTL_S).
  await bus.frames.deleteJob(job.jobId).catch(() => undefined);
  return stored.event;
}

function jobMetric(job: JobFacts, outcome: Outcome, at: number, host: string): JobMetric {
  return {
    jobId: job.jobId,
    sub: job.owner.sub,
    tenant: job.owner.tenant ?? '',
    status: outcome.status,
    errorCode: outcome.error?.code ?? '',
    steps: job.pipeline.length,
    pipeline: job.pipeline.map((s) => s.step).join('>'),
    inputBytes: job.inputBytes,
    outputBytes: outcome.result?.image?.bytes ?? 0,
    totalMs: Math.max(0, at - job.createdAt),
    host,
    createdAt: job.createdAt,
    finishedAt: at,
  };
}
