/**
 * Waits for a job to end without polling: a core NATS subscription on the job's terminal
 * subject (photolab.events.<jobId>.end; JetStream publishes reach core subscribers too), then
 * one read of the terminal event, which closes the race with a job that ended before the
 * subscription existed.
 */
import type { Bus } from '../lib/bus/bus.js';
import { subjects } from '../lib/bus/subjects.js';

/** Resolves true once the job ended, false when it still runs after timeoutMs. */
export async function waitForJobEnd(bus: Bus, jobId: string, timeoutMs: number): Promise<boolean> {
  const sub = bus.nc.subscribe(subjects.endEvent(jobId), { max: 1 });
  const timer = setTimeout(() => sub.unsubscribe(), timeoutMs);
  try {
    if (await bus.jobs.terminal(jobId)) return true;
    for await (const _ of sub) return true;
    return (await bus.jobs.terminal(jobId)) !== null;
  } finally {
    clearTimeout(timer);
    sub.unsubscribe();
  }
}
