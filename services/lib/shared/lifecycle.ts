/**
 * Process lifecycle shared by every service: clean shutdown on SIGINT/SIGTERM, and exit when
 * the parent (the launcher) is gone, so no service outlives `npm start` as an orphan.
 */
import type { Logger } from './logger.js';

export function runUntilStopped(log: Logger, stop: () => Promise<void>, options: { watchParent?: boolean } = {}): void {
  let stopping = false;
  const shutdown = async (reason: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ reason }, 'stopping');
    const force = setTimeout(() => {
      log.error('did not stop within 10 s; exiting');
      process.exit(1);
    }, 10_000);
    force.unref();
    try {
      await stop();
      log.info('stopped');
      process.exit(0);
    } catch (error) {
      log.error({ err: error }, 'error while stopping');
      process.exit(1);
    }
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  if (options.watchParent ?? process.env.PHOTOLAB_LAUNCHED === '1') {
    const parent = process.ppid;
    const timer = setInterval(() => {
      if (process.ppid !== parent) void shutdown('parent exited');
    }, 1000);
    timer.unref();
  }
  // One bad request must never take a service down: log and carry on.
  process.on('unhandledRejection', (error) => log.error({ err: error }, 'unhandled rejection'));
}

/** Whether the module at `moduleUrl` is the script node was started with (`node dist/…/main.js`), not an import. */
export function isEntryPoint(moduleUrl: string): boolean {
  return Boolean(process.argv[1]) && moduleUrl === new URL(`file://${process.argv[1]}`).href;
}
