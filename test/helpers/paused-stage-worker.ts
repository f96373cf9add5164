/**
 * A stage process that holds each step at one point for a while, so that a crash test can
 * SIGKILL it exactly there: `node paused-stage-worker.js <steps> afterRun|beforeAck <ms>`.
 * The production worker has no such switch; this wraps it with the runner's hooks.
 */
import { startStageWorker } from '../../services/stage-worker/main.js';
import { loadConfig } from '../../services/lib/shared/config.js';
import { createLogger } from '../../services/lib/shared/logger.js';
import { runUntilStopped } from '../../services/lib/shared/lifecycle.js';

const [steps, at, ms] = process.argv.slice(2);
if (!steps || (at !== 'afterRun' && at !== 'beforeAck') || !Number(ms)) {
  console.error('usage: paused-stage-worker.js <steps> afterRun|beforeAck <ms>');
  process.exit(2);
}
const pause = () => new Promise<void>((resolve) => setTimeout(resolve, Number(ms)));
const worker = await startStageWorker(steps, loadConfig(), { hooks: at === 'beforeAck' ? { beforeAck: pause } : { afterRun: pause } });
runUntilStopped(createLogger(`stage-${steps}`), () => worker.stop());
