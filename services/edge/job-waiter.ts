/**
 * Waits for a job to end without polling: a core NATS subscription on the job's event subject
 * (photolab.events.<jobId>; JetStream publishes reach core subscribers too), then one read of
 * the record, which closes the race with a job that ended before the subscription existed.
 */
import type { Bus } from '../bus/bus.js';
import { isTerminal } from '../bus/job-store.js';
import { subjects } from '../bus/subjects.js';
import type { JobRecord } from '../shared/schema-types.js';

const TERMINAL_EVENTS = new Set(['job.done', 'job.failed', 'job.canceled', 'job.timeout']);

/** The job's record once it ended, or null when it is still running after timeoutMs. */
export async function waitForJobEnd(bus: Bus, jobId: string, timeoutMs: number): Promise<JobRecord | null> {
  const sub = bus.nc.subscribe(subjects.events(jobId));
  const timer = setTimeout(() => sub.unsubscribe(), timeoutMs);
  try {
    const current = await bus.jobs.get(jobId);
    if (!current || isTerminal(current.status)) return current;
    for await (const message of sub) {
      const type = message.headers?.get('Photolab-Event') || (message.json<{ type: string }>().type);
      if (TERMINAL_EVENTS.has(type)) break;
    }
    const record = await bus.jobs.get(jobId);
    return record && isTerminal(record.status) ? record : null;
  } finally {
    clearTimeout(timer);
    sub.unsubscribe();
  }
}
