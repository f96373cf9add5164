/**
 * `npm start`: the whole system on one machine.
 *   - NATS_URL empty: starts nats-server with JetStream (data under DATA_DIR/nats);
 *   - creates streams, consumers and buckets (idempotent);
 *   - runs the edge, one process per stage step (STAGE_REPLICAS each) and the metrics sink,
 *     restarting any that dies (the embedded nats-server too, on its port and store);
 *   - Ctrl-C / SIGTERM stops the services first, then nats-server: no orphan process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { ensureTopology } from '../lib/bus/topology.js';
import { anonymousRefusal } from '../edge/anonymous.js';
import { loadManifests } from '../lib/steps/registry.js';
import { loadConfig, withAllocatorDefaults } from '../lib/shared/config.js';
import { createLogger } from '../lib/shared/logger.js';
import { devSecretPath, signDevToken } from '../lib/shared/dev-token.js';
import { startNatsServer, stopProcess, type RunningNatsServer } from './nats-server.js';

const log = createLogger('launcher');
/** A service exits with this when retrying cannot help (missing model): sysexits' EX_CONFIG. */
const EXIT_CANNOT_RUN_HERE = 78;
/** Pause before the next start of a process that exited: doubling from 0.5 s, at most 30 s. */
const restartDelayMs = (restarts: number) => Math.min(30_000, 500 * 2 ** Math.min(restarts, 6));
const servicesDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

interface Service {
  name: string;
  script: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  child?: ChildProcess;
  restarts: number;
}

async function main(): Promise<void> {
  const config = loadConfig();
  // Checked here too, before anything starts: the edge would refuse it at every restart.
  const refusal = anonymousRefusal(config);
  if (refusal) throw new Error(refusal);
  const env: NodeJS.ProcessEnv = withAllocatorDefaults({ ...process.env, PHOTOLAB_LAUNCHED: '1' });
  let nats: RunningNatsServer | undefined;
  let stopping = false;
  if (!config.natsUrl) {
    const natsOptions = {
      port: config.natsPort,
      host: '127.0.0.1',
      storeDir: path.join(config.dataDir, 'nats'),
      maxPayload: config.natsMaxPayload,
      maxMemoryStore: config.frameStreamMaxBytes + 512 * 1024 * 1024,
      logFile: path.join(config.dataDir, 'nats', 'nats-server.log'),
      goMaxProcs: config.natsGoMaxProcs,
    };
    nats = await startNatsServer(natsOptions);
    natsOptions.port = nats.port;
    // Restarted like the services, on the same port and store: they reconnect by themselves and
    // make again the memory streams a restarted server no longer has (topology-keeper.ts).
    let natsRestarts = 0;
    const restartNatsWhenItExits = (server: RunningNatsServer) => server.process.once('exit', (code, signal) => {
      if (stopping) return;
      const delay = restartDelayMs(natsRestarts++);
      log.error({ code, signal, restartInMs: delay }, 'embedded nats-server exited; restarting it on the same port and store');
      const restart = async () => {
        if (stopping) return;
        try {
          nats = await startNatsServer(natsOptions);
          restartNatsWhenItExits(nats);
          log.info({ url: nats.url }, 'embedded nats-server restarted');
        } catch (error) {
          log.error({ err: error, retryInMs: 5000 }, 'embedded nats-server did not restart; trying again');
          setTimeout(() => void restart(), 5000);
        }
      };
      setTimeout(() => void restart(), delay);
    });
    restartNatsWhenItExits(nats);
    env.NATS_URL = nats.url;
    // Everything runs on this machine: frames need not cross the bus (BENCHMARKS.md: local vs auto).
    if (!process.env.FRAME_TRANSPORT) env.FRAME_TRANSPORT = 'local';
    log.info({ url: nats.url, log: path.join(config.dataDir, 'nats', 'nats-server.log') }, 'embedded nats-server started');
  }
  if (!config.jwtSecret && !config.jwksFile && !config.jwksUrl) {
    // Passed as JWT_DEV_SECRET, not JWT_SECRET, so the edge knows the secret is this session's own
    // and may hand development tokens to the web playground (never for an operator's secret).
    env.JWT_DEV_SECRET = randomBytes(32).toString('hex');
    // `photolab token` (and the CLI's other commands) sign development tokens with this
    // session's secret: kept where only this user can read it, replaced at each start.
    mkdirSync(config.dataDir, { recursive: true });
    writeFileSync(devSecretPath(config.dataDir), env.JWT_DEV_SECRET, { mode: 0o600 });
    const token = await signDevToken(env.JWT_DEV_SECRET, { issuer: config.jwtIssuer, audience: config.jwtAudience });
    log.warn('JWT_SECRET not set: generated one for this run. A token for user "dev", valid 12 h:');
    process.stderr.write(`\n  export TOKEN=${token}\n\n`);
  }

  // Development default: a browser front end served from this machine (the PLAYE one, on any
  // local dev-server port) can read the answers. Set CORS_ORIGINS to choose; it is never widened.
  if (process.env.CORS_ORIGINS === undefined) {
    env.CORS_ORIGINS = 'http://localhost:*,http://127.0.0.1:*';
    log.info({ corsOrigins: env.CORS_ORIGINS }, 'CORS_ORIGINS not set: allowing local front ends');
  }

  const stages = await loadManifests({ extraDirs: config.stepsDirs });
  const steps = config.stages.length > 0 ? config.stages : [...stages.keys()];
  const nc = await connect({ servers: env.NATS_URL!.split(','), name: 'photolab-launcher' });
  await ensureTopology(nc, await jetstreamManager(nc), { ...config, natsUrl: env.NATS_URL! }, steps);
  await nc.close();

  const services: Service[] = [{ name: 'edge', script: path.join(servicesDir, 'edge/main.js'), args: [], restarts: 0 }];
  let metricsPort = config.stageMetricsPort;
  // Each stage process on this host needs its own /metrics port.
  const nextMetricsEnv = () => (metricsPort > 0 ? { STAGE_METRICS_PORT: String(metricsPort++) } : {});
  const replicas = Math.max(1, config.stageReplicas);
  if (config.stageLayout === 'fused') {
    for (let r = 0; r < replicas; r++) {
      services.push({ name: `stages-fused-${r + 1}`, script: path.join(servicesDir, 'stage-worker/main.js'), args: [steps.join(',')], env: nextMetricsEnv(), restarts: 0 });
    }
  } else {
    for (const step of steps) {
      for (let r = 0; r < replicas; r++) {
        services.push({ name: `stage-${step}${replicas > 1 ? `-${r + 1}` : ''}`, script: path.join(servicesDir, 'stage-worker/main.js'), args: [step], env: nextMetricsEnv(), restarts: 0 });
      }
    }
  }
  const sink = path.join(servicesDir, 'metrics-sink/main.js');
  if (existsSync(sink)) services.push({ name: 'metrics-sink', script: sink, args: [], restarts: 0 });

  const startService = (service: Service) => {
    const child = spawn(process.execPath, [service.script, ...service.args], { env: { ...env, ...service.env }, stdio: service.name === 'edge' ? ['ignore', 'inherit', 'inherit', 'ipc'] : ['ignore', 'inherit', 'inherit'] });
    service.child = child;
    child.on('message', (message: { type?: string; port?: number }) => {
      if (message?.type !== 'edge.listening') return;
      const host = config.httpHost === '0.0.0.0' ? '127.0.0.1' : config.httpHost;
      const url = `http://${host}:${message.port}`;
      log.info({ url, docs: `${url}/api/docs` }, `PhotoLab Pipeline ready at ${url}; Ctrl-C stops everything`);
      process.stderr.write(`\n  ready: ${url}   (try: npx photolab submit photo.jpg --steps decode,upscale:factor=2,encode -o out.jpg)\n\n`);
    });
    child.once('exit', (code, signal) => {
      if (stopping) return;
      if (code === EXIT_CANNOT_RUN_HERE) {
        log.error({ service: service.name }, 'service cannot run on this machine (see its log, e.g. a model to fetch); not restarting it');
        return;
      }
      service.restarts++;
      const delay = restartDelayMs(service.restarts);
      log.error({ service: service.name, code, signal, restartInMs: delay }, 'service exited; restarting');
      setTimeout(() => !stopping && startService(service), delay);
    });
  };
  services.forEach(startService);
  // Not "ready" yet: the edge says when it listens (IPC message above).
  log.info({ services: services.map((s) => s.name) }, 'starting services');

  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping services');
    await Promise.all(services.map((s) => (s.child ? stopProcess(s.child, 10_000) : undefined)));
    if (nats) {
      log.info('stopping nats-server');
      await nats.stop();
    }
    log.info('all stopped');
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGHUP', () => void shutdown('SIGHUP'));
}

main().catch((error) => {
  log.fatal({ err: error }, `cannot start: ${(error as Error).message}`);
  process.exit(1);
});
