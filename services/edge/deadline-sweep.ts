/**
 * Ends jobs that passed their deadline even when nothing else would notice: a job whose step
 * waits in a queue that no stage consumes never reaches the runner's own deadline checks.
 * Every DEADLINE_SWEEP_MS the edge looks at the unfinished jobs (held in memory: OpenJobsView)
 * and times out the late ones. Several edges may sweep at once; the terminal event's expected
 * sequence lets exactly one of them end each job.
 */
import type { Bus } from '../lib/bus/bus.js';
import type { Logger } from '../lib/shared/logger.js';
import type { JobsService } from './jobs.js';

export function startDeadlineSweep(bus: Bus, jobs: JobsService, intervalMs: number, log: Logger): { stop(): Promise<void> } {
  let running: Promise<void> | undefined;
  const sweep = async () => {
    const now = Date.now();
    const late = (await jobs.openJobs()).filter((entry) => entry.deadline < now);
    for (const entry of late) {
      if (await jobs.timeOutEntry(entry)) log.info({ jobId: entry.jobId }, 'job timed out (deadline sweep)');
    }
  };
  const timer = setInterval(() => {
    if (running || bus.nc.isClosed()) return;
    running = sweep().catch((error) => log.warn({ err: error }, 'deadline sweep failed')).finally(() => {
      running = undefined;
    });
  }, Math.max(100, intervalMs));
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
