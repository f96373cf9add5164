/**
 * A stage service: `node dist/services/stage-worker/main.js <step>`.
 * Prepares the step (models loaded and warmed up), then consumes photolab.stage.<step>
 * through the shared StageRunner. Run N of these for N replicas: they share one durable
 * consumer, so each message goes to one of them.
 */
import { connectBus } from '../lib/bus/bus.js';
import { JobEnds } from '../lib/bus/job-ends.js';
import { announceStage } from '../lib/bus/stage-presence.js';
import { packageInfo } from '../lib/shared/package-info.js';
import { addMicroService, type MicroService } from '../lib/bus/micro.js';
import { STREAMS, stageConsumer, subjects } from '../lib/bus/subjects.js';
import { StageRunner, type ColocatedSteps, type RunnerHooks, type RunObserver } from '../lib/pipeline/stage-runner.js';
import type { PreparedStage } from '../lib/pipeline/stage.js';
import { applyCollectorSettings, loadConfig, type Config } from '../lib/shared/config.js';
import { AppError } from '../lib/shared/errors.js';
import { isEntryPoint, runUntilStopped } from '../lib/shared/lifecycle.js';
import { createLogger } from '../lib/shared/logger.js';
import { Registry } from '../lib/metrics/prometheus.js';
import { findingGeometry, loadStages } from '../lib/steps/registry.js';
import { installedModelIds } from '../lib/models/installed.js';
import { configureRuntime } from '../lib/models/runtime.js';
import { serveStageMetrics, stageObserver } from './stage-metrics.js';

/**
 * Starts the runners of one or more steps in this process. With several steps, a job whose
 * next step is also hosted here continues in this process (STAGE_FUSION), frame in memory.
 */
export interface StageWorkerOptions {
  /** Points where a test holds a step (crash tests kill the process there). */
  hooks?: RunnerHooks;
}

export async function startStageWorker(steps: string | string[], config: Config = loadConfig(), options: StageWorkerOptions = {}) {
  const stepList = typeof steps === 'string' ? steps.split(',') : steps;
  const name = stepList.length === 1 ? stepList[0]! : 'fused';
  const log = createLogger(`stage-${name}`, { config });
  configureRuntime(config); // the models this process loads follow its Config, not the environment at import
  const colocated: ColocatedSteps = new Map();
  const stages = await loadStages({ extraDirs: config.stepsDirs });
  for (const step of stepList) {
    const stage = stages.get(step);
    if (!stage) throw new Error(`unknown step "${step}"; known: ${[...stages.keys()].join(', ')}`);
    colocated.set(step, { stage, prepared: await stage.prepare({ log, modelsDir: config.modelsDir, config }) as PreparedStage<Record<string, unknown>> });
  }
  const bus = await connectBus(config, log, `photolab-stage-${name}`, { steps: stepList });
  const registry = new Registry();
  const worker = `${config.hostId}-${process.pid}`;
  // One NATS micro service per hosted step, so `nats micro ls|info|stats` (and `photolab
  // stages`) show every stage process with its counts, processing time and backlog.
  const micros: MicroService[] = stepList.map((step) => addMicroService(bus.nc, {
    name: `photolab-${step}`,
    version: packageInfo().version,
    description: `PhotoLab stage ${step}: consumes ${subjects.stage(step)} through the JetStream consumer ${stageConsumer(step)}`,
    metadata: { step, worker, host: config.hostId, pid: String(process.pid), steps: stepList.join(',') },
    endpoint: {
      name: step,
      subject: subjects.stage(step),
      queue_group: stageConsumer(step),
      metadata: { transport: 'jetstream', stream: STREAMS.stages, consumer: stageConsumer(step) },
      data: async (): Promise<Record<string, unknown>> => {
        const describe = colocated.get(step)!.prepared.describe?.() ?? {};
        const backlog = await bus.jsm.consumers.info(STREAMS.stages, stageConsumer(step))
          .then((info) => info.num_pending + info.num_ack_pending, () => null);
        // Model steps list their loaded models, each with its provider; pixel-only steps (sharp) have none.
        const models = Array.isArray(describe.models) ? describe.models as { model?: string; provider?: string }[] : [];
        const providers = [...new Set(models.map((m) => m.provider).filter(Boolean))];
        return { backlog, handled: runners[stepList.indexOf(step)]?.handled ?? 0, provider: providers.join(',') || null, ...describe, models };
      },
    },
  }));
  const ends = new JobEnds(bus.nc, bus.jobs);
  ends.start();
  const hooks = options.hooks;
  // Every step's manifest, not only the hosted ones': findings of any kind follow a resize here.
  const geometry = findingGeometry(stages.values());
  const runners: StageRunner[] = stepList.map((step, i) => new StageRunner({
    bus, step, hosted: colocated, ends, config, log: log.child({ step }), hooks, findingGeometry: geometry,
    observer: bothObservers(stageObserver(registry, step), microObserver(micros[i]!)),
  }));
  for (const runner of runners) await runner.start();
  const closeMetrics = config.stageMetricsPort > 0
    ? await serveStageMetrics(config.stageMetricsPort, config.httpHost, registry, bus.jsm, stepList, bus.nc)
    : undefined;
  // The models each step can serve, re-read at every refresh: a `models fetch` while the stage
  // runs is admitted by the edge within one presence interval, without a restart.
  const servedModels = (step: string): string[] => {
    const installed = installedModelIds(config.modelsDir);
    return colocated.get(step)!.prepared.servedModels?.(installed) ?? installed;
  };
  const leaves = await Promise.all(stepList.map((step, i) => announceStage(bus.nc, {
    step, worker, host: config.hostId, pid: process.pid, startedAt: Date.now(), version: colocated.get(step)!.stage.version,
  }, () => ({ handled: runners[i]!.handled, models: servedModels(step), info: colocated.get(step)!.prepared.describe?.() ?? {} }), (refresh) => bus.topology.onRestored(refresh))));
  const sweep = setInterval(() => void bus.localFrames?.sweep(config.frameTtlS * 1000).catch(() => undefined), 60_000);
  sweep.unref();
  log.info({ steps: stepList }, 'stage ready');
  return {
    async stop() {
      clearInterval(sweep);
      await Promise.all(runners.map((r) => r.stop()));
      ends.stop();
      await Promise.all(micros.map((m) => m.stop()));
      await Promise.all(leaves.map((leave) => leave()));
      await closeMetrics?.();
      for (const { prepared } of colocated.values()) await prepared.close?.();
      await bus.close();
    },
  };
}

/** Micro service statistics from the runner: a request per message, its time from start to settling. */
function microObserver(micro: MicroService): RunObserver {
  return {
    started: () => micro.started(),
    settled: () => micro.settled(),
    finished: (status, _ms, errorCode) => {
      if (status === 'error') micro.failed(errorCode ?? 'error');
    },
  };
}

function bothObservers(a: RunObserver, b: RunObserver): RunObserver {
  return {
    started: () => { a.started(); b.started(); },
    settled: () => { a.settled(); b.settled(); },
    finished: (status, ms, errorCode) => { a.finished(status, ms, errorCode); b.finished(status, ms, errorCode); },
  };
}


if (isEntryPoint(import.meta.url)) {
  const arg = process.argv[2];
  // `all`: every registered step in this one process (STAGE_LAYOUT=fused).
  const config = loadConfig();
  applyCollectorSettings(config);
  const step = arg === 'all' ? [...(await loadStages({ extraDirs: config.stepsDirs })).keys()].join(',') : arg;
  if (!step) {
    console.error('usage: stage-worker/main.js <step>[,<step>...] | all');
    process.exit(2);
  }
  const log = createLogger(`stage-${step}`);
  startStageWorker(step, config).then((worker) => runUntilStopped(log, () => worker.stop()), (error) => {
    log.fatal({ err: error }, `stage failed to start: ${(error as Error).message}`);
    // A missing model will still be missing after a restart: tell the launcher not to retry.
    process.exit(error instanceof AppError && !error.retryable ? 78 : 1);
  });
}
