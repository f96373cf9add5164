/**
 * The one way a job's step is handed to its stage: the step message (the routing slip) is built
 * here, and published here on photolab.stage.<step> with the message id <jobId>:<index>, so that
 * a re-send (a retried submission, a step that ran twice after a crash) is a duplicate that the
 * stream drops and never forks the job. The edge enqueues a job's first step, the stage runner
 * every next one; nobody else builds a JobMessage or a stage subject.
 */
import type { JetStreamClient, PubAck } from '@nats-io/jetstream';
import type { BlobRef, Findings, FrameRef, JobMessage, JobRecord, Provenance } from '../shared/schema-types.js';
import { msgIds, subjects } from './subjects.js';

/** The first step's message of a job whose record was written (fresh, or a retried submission). */
export function firstStep(job: JobRecord, options: { requestId?: string; now?: number } = {}): JobMessage {
  return {
    v: 1, jobId: job.jobId, owner: job.owner, pipeline: job.pipeline, index: 0, input: job.input, source: job.input,
    findings: {}, provenance: [], deadline: job.deadline, submittedAt: job.createdAt, enqueuedAt: options.now ?? Date.now(),
    ...(options.requestId ? { requestId: options.requestId } : {}),
  };
}

/** The message for the step after `message`'s, carrying what that step left. */
export function nextStep(message: JobMessage, left: { input: BlobRef | FrameRef; findings: Findings; provenance: Provenance[] }): JobMessage {
  return { ...message, index: message.index + 1, input: left.input, findings: left.findings, provenance: left.provenance, enqueuedAt: Date.now() };
}

/** Stores the step message on its stage's subject (resolves once JetStream has it). */
export function enqueueStep(js: JetStreamClient, message: JobMessage): Promise<PubAck> {
  const item = message.pipeline[message.index];
  if (!item) throw new Error(`job ${message.jobId} has no step ${message.index}`);
  return js.publish(subjects.stage(item.step), JSON.stringify(message), { msgID: msgIds.step(message.jobId, message.index) });
}
