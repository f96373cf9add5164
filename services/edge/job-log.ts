/**
 * One info line per finished job (id, pipeline, status, total ms), so the console says when a
 * job ends and not only when it was accepted. The edges listen to the job events in one queue
 * group: with several edges each job is still logged once.
 */
import type { Bus } from '../bus/bus.js';
import type { Logger } from '../shared/logger.js';
import type { JobEvent } from '../shared/schema-types.js';

const TERMINAL = new Set(['job.done', 'job.failed', 'job.canceled', 'job.timeout']);

export function logFinishedJobs(bus: Bus, log: Logger, queue = 'photolab-edge-job-log'): { stop(): void } {
  const sub = bus.nc.subscribe('photolab.events.*', {
    queue,
    callback: (error, msg) => {
      if (error) return;
      const type = msg.headers?.get('Photolab-Event');
      if (type && !TERMINAL.has(type)) return; // most events: skip before parsing
      let event: JobEvent;
      try {
        event = msg.json<JobEvent>();
      } catch {
        return;
      }
      if (!TERMINAL.has(event.type)) return;
      void bus.jobs.get(event.jobId).then((job) => {
        const fields = {
          jobId: event.jobId,
          pipeline: job?.pipeline.map((s) => s.step).join(','),
          status: event.type.slice(4),
          ms: job ? (job.finishedAt ?? event.at) - job.createdAt : undefined,
          ...(event.error ? { error: event.error.code, step: event.error.step } : {}),
        };
        if (event.type === 'job.done') log.info(fields, 'job finished');
        else log.warn(fields, 'job finished');
      }, () => undefined);
    },
  });
  return { stop: () => sub.unsubscribe() };
}
