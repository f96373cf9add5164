/**
 * The edge: HTTP API and WebSocket gateway on uWebSockets.js, in front of NATS.
 */
import './http/uws-env.js';
import uWS from 'uWebSockets.js';
import { connectBus, type Bus } from '../lib/bus/bus.js';
import { loadManifests } from '../lib/steps/registry.js';
import { StagePresenceView } from '../lib/bus/stage-presence.js';
import type { Config } from '../lib/shared/config.js';
import type { Logger } from '../lib/shared/logger.js';
import { checkAnonymousSetting } from './anonymous.js';
import { createAuthenticator } from './auth.js';
import { corsHeaders } from './cors.js';
import { CallerBlobs } from './blobs.js';
import { startDeadlineSweep } from './deadline-sweep.js';
import { mountApi } from './http/api.js';
import { httpObserver } from './http/routes/observability.js';
import { Registry } from '../lib/metrics/prometheus.js';
import type { HttpOptions } from './http/uws-http.js';
import type { MountedRoute } from './http/api.js';
import { JobsService } from './jobs.js';
import { logFinishedJobs } from './job-log.js';
import { LiveJobs } from './live-jobs.js';
import { OpenJobsView } from '../lib/bus/open-jobs-view.js';
import { CasesService } from './cases.js';
import { Custody } from '../lib/forensics/custody.js';
import { loadSigningKey } from '../lib/forensics/signing.js';
import { ForensicsService } from './forensics.js';
import { BacklogGate, RateLimiter } from './limits.js';
import { mountWebSocket, type GatewayStats } from './ws/gateway.js';

export interface Edge {
  port: number;
  bus: Bus;
  jobs: JobsService;
  /** The live stage processes as this edge sees them (admission reads it). */
  presence: StagePresenceView;
  /** WebSocket connections and their unsent bytes (backpressure). */
  wsStats(): GatewayStats;
  /** The HTTP routes mounted (method, uWS pattern). */
  routes: MountedRoute[];
  close(): Promise<void>;
}

export async function startEdge(config: Config, log: Logger): Promise<Edge> {
  checkAnonymousSetting(config, log); // before anything is started: a refused setting leaves nothing behind
  // The steps as data only: the edge loads no model, no model runtime and no step's pixel code.
  const manifests = await loadManifests({ extraDirs: config.stepsDirs });
  const steps = [...manifests.keys()];
  const bus = await connectBus(config, log, 'photolab-edge', { steps });
  // The launcher's generated secret counts only when no operator configured keys; the edge then
  // verifies with it and may issue development tokens (POST /api/dev/token).
  const devTokenSecret = !config.jwtSecret && !config.jwksFile && !config.jwksUrl && config.jwtDevSecret ? config.jwtDevSecret : undefined;
  const auth = createAuthenticator(devTokenSecret ? { ...config, jwtSecret: devTokenSecret } : config);
  const backlog = new BacklogGate(bus.jsm, steps, config.maxBacklog);
  const open = await OpenJobsView.start(bus.js, config.jobMaxDeadlineMs, log);
  const live = new LiveJobs();
  live.start(bus.nc);
  const custody = new Custody(bus.js);
  const cases = new CasesService(bus, custody);
  const presence = await StagePresenceView.start(bus.nc, { log });
  bus.topology.onRestored(() => {
    presence.restart();
    open.afterReconnect();
  });
  const jobs = new JobsService(bus, manifests, config, log, backlog, { cases, custody, open, live, presence });
  const forensics = new ForensicsService(bus, jobs, custody, await loadSigningKey({ keyFile: config.reportSigningKeyFile, dataDir: config.dataDir }), config);
  const blobs = await CallerBlobs.open(bus, bus.nc, config.maxUploadBytes);
  const rateLimiter = new RateLimiter(config.rateLimitPerMinute);
  const prune = setInterval(() => rateLimiter.prune(), 60_000);
  prune.unref();
  const app = uWS.App();
  const registry = new Registry();
  const http: HttpOptions = {
    log,
    onReply: httpObserver(registry),
    // Uploads (multipart or raw) may carry MAX_UPLOAD_BYTES plus form overhead; JSON bodies
    // may carry the same image in base64. Larger declared bodies get 413 before being read.
    maxBodyBytes: (headers) => (headers['content-type'] ?? '').startsWith('application/json')
      ? Math.ceil((config.maxUploadBytes * 4) / 3) + config.maxJsonBytes + 1024
      : config.maxUploadBytes + 64 * 1024,
    commonHeaders: (req) => corsHeaders(config.corsOrigins, req),
    maxUrlBytes: config.maxUrlBytes,
    maxHeaderBytes: config.maxHeaderBytes,
    bodyTimeoutMs: config.bodyTimeoutMs,
  };
  const gateway = mountWebSocket(app, { bus, jobs, cases, custody, forensics, blobs, auth, rateLimiter, config, log });
  const routes = mountApi(app, { bus, jobs, cases, custody, forensics, blobs, auth, rateLimiter, presence, config, log, steps, devTokenSecret }, http, { registry, wsConnections: () => gateway.stats().connections });
  const sweep = startDeadlineSweep(bus, jobs, config.deadlineSweepMs, log);
  const jobLog = logFinishedJobs(bus, log);

  const listenSocket = await new Promise<uWS.us_listen_socket>((resolve, reject) => {
    app.listen(config.httpHost, config.httpPort, (socket) => (socket ? resolve(socket) : reject(new Error(`edge cannot listen on ${config.httpHost}:${config.httpPort}`))));
  });
  const port = uWS.us_socket_local_port(listenSocket);
  log.info({ port, url: `http://${config.httpHost === '0.0.0.0' ? '127.0.0.1' : config.httpHost}:${port}` }, 'edge listening');
  return {
    presence,
    port,
    bus,
    jobs,
    wsStats: () => gateway.stats(),
    routes,
    async close() {
      clearInterval(prune);
      await sweep.stop();
      jobLog.stop();
      open.stop();
      live.stop();
      presence.stop();
      uWS.us_listen_socket_close(listenSocket);
      gateway.closeAll();
      app.close();
      await bus.close();
    },
  };
}
