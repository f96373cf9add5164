/**
 * One info line per finished job (id, pipeline, status, total ms), so the console says when a
 * job ends and not only when it was accepted. The edges listen to the terminal events in one
 * queue group: with several edges each job is still logged once. Everything the line says is
 * in the event (its `summary`): nothing is read.
 */
import type { Bus } from '../lib/bus/bus.js';
import { subjects } from '../lib/bus/subjects.js';
import type { Logger } from '../lib/shared/logger.js';
import type { JobEvent } from '../lib/shared/schema-types.js';

export function logFinishedJobs(bus: Bus, log: Logger, queue = 'photolab-edge-job-log'): { stop(): void } {
  const sub = bus.nc.subscribe(subjects.endEventsAll, {
    queue,
    callback: (error, msg) => {
      if (error) return;
      let event: JobEvent;
      try {
        event = msg.json<JobEvent>();
      } catch {
        return;
      }
      const fields = {
        jobId: event.jobId,
        pipeline: event.summary?.pipeline.replaceAll('>', ','),
        status: event.type.slice(4),
        ms: event.summary?.totalMs,
        ...(event.error ? { error: event.error.code, step: event.error.step } : {}),
      };
      if (event.type === 'job.done') log.info(fields, 'job finished');
      else log.warn(fields, 'job finished');
    },
  });
  return { stop: () => sub.unsubscribe() };
}
