/**
 * A stage service: `node dist/services/stages/worker.js <step>`.
 * Prepares the step (models loaded and warmed up), then consumes photolab.stage.<step>
 * through the shared StageRunner. Run N of these for N replicas: they share one durable
 * consumer, so each message goes to one of them.
 */
import { connectBus } from '../bus/bus.js';
import { announceStage } from '../bus/stage-presence.js';
import { StageRunner, type RunnerHooks } from '../runner/stage-runner.js';
import { config as defaultConfig, type Config } from '../shared/config.js';
import { AppError } from '../shared/errors.js';
import { runUntilStopped } from '../shared/lifecycle.js';
import { createLogger } from '../shared/logger.js';
import { Registry } from '../metrics/prometheus.js';
import { loadStage } from './registry.js';
import { serveStageMetrics, stageObserver } from './stage-metrics.js';

export async function startStageWorker(step: string, config: Config = defaultConfig) {
  const log = createLogger(`stage-${step}`);
  const stage = await loadStage(step);
  const prepared = await stage.prepare({ log, modelsDir: config.modelsDir });
  const bus = await connectBus(config, log, `photolab-stage-${step}`, { steps: [step] });
  const registry = new Registry();
  const runner = new StageRunner(bus, stage, prepared as never, config, log, testPauses(), stageObserver(registry, step));
  await runner.start();
  const closeMetrics = config.stageMetricsPort > 0
    ? await serveStageMetrics(config.stageMetricsPort, config.httpHost, registry, bus.jsm, step)
    : undefined;
  const leave = await announceStage(bus.nc, {
    step, worker: `${config.hostId}-${process.pid}`, host: config.hostId, pid: process.pid, startedAt: Date.now(),
  }, () => ({ handled: runner.handled, info: prepared.describe?.() ?? {} }));
  const sweep = setInterval(() => void bus.localFrames.sweep(config.frameTtlS * 1000).catch(() => undefined), 60_000);
  sweep.unref();
  log.info({ step, ...prepared.describe?.() }, 'stage ready');
  return {
    runner,
    registry,
    async stop() {
      clearInterval(sweep);
      await runner.stop();
      await leave();
      await closeMetrics?.();
      await prepared.close?.();
      await bus.close();
    },
  };
}

/**
 * Test hooks for crash tests: PHOTOLAB_TEST_PAUSE_AT=afterRun|beforeAck holds the step there
 * for PHOTOLAB_TEST_PAUSE_MS, so a test can SIGKILL the process at exactly that point.
 */
function testPauses(): RunnerHooks {
  const at = process.env.PHOTOLAB_TEST_PAUSE_AT;
  const ms = Number(process.env.PHOTOLAB_TEST_PAUSE_MS ?? 0);
  if (!at || !ms) return {};
  const pause = () => new Promise<void>((resolve) => setTimeout(resolve, ms));
  return at === 'beforeAck' ? { beforeAck: pause } : { afterRun: pause };
}

const isMain = process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isMain) {
  const step = process.argv[2];
  if (!step) {
    console.error('usage: worker.js <step>');
    process.exit(2);
  }
  const log = createLogger(`stage-${step}`);
  startStageWorker(step).then((worker) => runUntilStopped(log, () => worker.stop()), (error) => {
    log.fatal({ err: error }, `stage failed to start: ${(error as Error).message}`);
    // A missing model will still be missing after a restart: tell the launcher not to retry.
    process.exit(error instanceof AppError && !error.retryable ? 78 : 1);
  });
}
