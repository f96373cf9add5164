/**
 * What this edge saw of running jobs as their events went by (one core subscription on
 * photolab.events.> and photolab.progress.*: step facts, ends and progress), so that GET /api/jobs/:id and the job
 * list show a running step and the steps done without reading the job's events back from the
 * stream. A job seen from its job.accepted on is complete; one that started before this edge
 * did is read from the stream instead (JobStore.get).
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { isTerminalEvent } from '../lib/shared/job-status.js';
import type { LiveProgress } from '../lib/bus/job-state.js';
import { subjects } from '../lib/bus/subjects.js';
import type { JobEvent } from '../lib/shared/schema-types.js';

/** Ended jobs stay a little (a client reading the job right after its end). */
const KEEP_AFTER_END_MS = 30_000;
/** Bound on memory: beyond this many jobs the oldest entries go (they are read from the stream). */
const MAX_JOBS = 50_000;

export class LiveJobs {
  private readonly jobs = new Map<string, LiveProgress & { endedAt?: number }>();
  private readonly subs: Subscription[] = [];
  private timer?: NodeJS.Timeout;

  start(nc: NatsConnection): void {
    for (const subject of [subjects.eventsAll, subjects.progressAll]) {
      this.subs.push(nc.subscribe(subject, {
        callback: (error, message) => {
          if (error) return;
          try {
            this.apply(message.json<JobEvent>());
          } catch {
            // Not an event of ours: nothing to show.
          }
        },
      }));
    }
    this.timer = setInterval(() => this.prune(), 10_000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    for (const sub of this.subs) sub.unsubscribe();
  }

  get(jobId: string): LiveProgress | undefined {
    return this.jobs.get(jobId);
  }

  private apply(event: JobEvent): void {
    let job = this.jobs.get(event.jobId);
    if (!job) {
      if (isTerminalEvent(event.type)) return;
      job = { started: new Map(), stepEvents: [], complete: event.type === 'job.accepted' };
      this.jobs.set(event.jobId, job);
      if (this.jobs.size > MAX_JOBS) this.jobs.delete(this.jobs.keys().next().value!);
    }
    if (event.type === 'step.started' && event.index !== undefined) job.started.set(event.index, { at: event.at, attempt: event.attempt ?? 1 });
    else if (event.type.startsWith('step.')) job.stepEvents.push(event);
    else if (isTerminalEvent(event.type)) job.endedAt = Date.now();
  }

  private prune(): void {
    const old = Date.now() - KEEP_AFTER_END_MS;
    for (const [jobId, job] of this.jobs) if (job.endedAt !== undefined && job.endedAt < old) this.jobs.delete(jobId);
  }
}
