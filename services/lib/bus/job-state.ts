/**
 * The job a client sees, projected from what was written once: the record as submitted, the
 * job's durable step events, its terminal event, and (where the caller holds it) live progress
 * that never went to disk (step.started). Pure: unit-tested in test/unit/job-state.test.ts.
 */
import type { JobEvent, JobRecord, StepProgress } from '../shared/schema-types.js';
import { TERMINAL_EVENT } from '../shared/job-status.js';

/** What a process saw live of a job (core subscriptions on photolab.events.> and photolab.progress.*). */
export interface LiveProgress {
  /** step index -> when it started and which attempt (step.started: never stored) */
  started: Map<number, { at: number; attempt: number }>;
  /** The job's step events as they went by. */
  stepEvents: JobEvent[];
  /** Seen from job.accepted on: stepEvents is then the whole step history. */
  complete: boolean;
}

/** The status each terminal event stands for (TERMINAL_EVENT read backwards). */
const STATUS_OF_END: Record<string, JobRecord['status']> = Object.fromEntries(Object.entries(TERMINAL_EVENT).map(([status, type]) => [type, status as JobRecord['status']]));

export function projectJob(record: JobRecord, stepEvents: JobEvent[], end: JobEvent | null, live?: LiveProgress): JobRecord {
  const job: JobRecord = structuredClone(record);
  const steps = job.steps;
  const at = (index: number | undefined): StepProgress | undefined => (index === undefined ? undefined : steps[index]);

  for (const [index, started] of live?.started ?? []) {
    const step = at(index);
    if (step) Object.assign(step, { status: 'running', startedAt: started.at, attempt: started.attempt });
  }
  for (const event of stepEvents) {
    const step = at(event.index);
    if (!step) continue;
    const run = event.run;
    if (event.type === 'step.finished' || event.type === 'step.skipped') {
      step.status = event.type === 'step.finished' ? 'done' : 'skipped';
      step.startedAt = run?.startedAt ?? step.startedAt ?? event.at;
      step.finishedAt = run?.finishedAt ?? event.at;
      if (event.ms !== undefined) step.ms = event.ms;
      if (event.attempt !== undefined) step.attempt = event.attempt;
    } else if (event.type === 'step.retrying' && step.status !== 'done' && step.status !== 'skipped') {
      // A failed attempt: the step is still underway (its retry is queued).
      step.status = 'running';
      step.startedAt ??= run?.startedAt ?? event.at;
      if (event.attempt !== undefined) step.attempt = event.attempt + 1;
    }
  }
  // A done job's provenance is the complete per-step record (its step events are not read).
  for (const p of end?.result?.provenance ?? []) {
    const step = at(p.index);
    if (!step) continue;
    step.status = p.status === 'skipped' ? 'skipped' : 'done';
    if (p.startedAt !== undefined) step.startedAt = p.startedAt;
    if (p.finishedAt !== undefined) step.finishedAt = p.finishedAt;
    if (p.ms !== undefined) step.ms = p.ms;
    if (p.attempt !== undefined) step.attempt = p.attempt;
  }

  const startedAt = steps.map((s) => s.startedAt).filter((t): t is number => t !== undefined);
  if (startedAt.length) job.startedAt = Math.min(...startedAt);
  if (!end) {
    job.status = steps.some((s) => s.status !== 'pending') ? 'running' : 'pending';
    return job;
  }
  job.status = STATUS_OF_END[end.type] ?? 'failed';
  job.finishedAt = end.at;
  if (end.error) job.error = end.error;
  if (end.result) job.result = end.result;
  const failedIndex = job.status === 'failed' ? end.run?.index ?? end.index : undefined;
  for (const step of steps) {
    if (step.status !== 'pending' && step.status !== 'running') continue;
    if (job.status === 'done') continue;
    step.status = step.index === failedIndex || (job.status === 'failed' && failedIndex === undefined && step.status === 'running') ? 'failed' : 'canceled';
  }
  if (failedIndex !== undefined && end.run) {
    const step = at(failedIndex);
    if (step) Object.assign(step, { startedAt: step.startedAt ?? end.run.startedAt, finishedAt: end.run.finishedAt, attempt: end.run.attempt });
  }
  return job;
}
