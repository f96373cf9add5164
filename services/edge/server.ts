/**
 * The edge: HTTP API and WebSocket gateway on uWebSockets.js, in front of NATS.
 */
import './http/uws-env.js';
import uWS from 'uWebSockets.js';
import { connectBus, type Bus } from '../bus/bus.js';
import { loadStages } from '../stages/registry.js';
import type { Config } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';
import { createAuthenticator } from './auth.js';
import { CallerBlobs } from './blobs.js';
import { startDeadlineSweep } from './deadline-sweep.js';
import { mountApi } from './http/api.js';
import { httpObserver } from './http/routes/observability.js';
import { Registry } from '../metrics/prometheus.js';
import type { HttpOptions, Request } from './http/uws-http.js';
import { JobsService } from './jobs.js';
import { BacklogGate, RateLimiter } from './limits.js';
import { mountWebSocket, type GatewayStats } from './ws/gateway.js';

export interface Edge {
  port: number;
  bus: Bus;
  jobs: JobsService;
  /** WebSocket connections and their unsent bytes (backpressure). */
  wsStats(): GatewayStats;
  close(): Promise<void>;
}

export async function startEdge(config: Config, log: Logger): Promise<Edge> {
  const stages = await loadStages();
  const steps = [...stages.keys()];
  const bus = await connectBus(config, log, 'photolab-edge', { steps });
  const auth = createAuthenticator(config);
  const backlog = new BacklogGate(bus.jsm, steps, config.maxBacklog);
  await bus.jobIndex.watchOpen(log);
  const jobs = new JobsService(bus, stages, config, log, backlog);
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
  const gateway = mountWebSocket(app, { bus, jobs, blobs, auth, rateLimiter, config, log });
  mountApi(app, { bus, jobs, blobs, auth, rateLimiter, config, log, steps }, http, { registry, wsConnections: () => gateway.stats().connections });
  const sweep = startDeadlineSweep(bus, jobs, config.deadlineSweepMs, log);

  const listenSocket = await new Promise<uWS.us_listen_socket>((resolve, reject) => {
    app.listen(config.httpHost, config.httpPort, (socket) => (socket ? resolve(socket) : reject(new Error(`edge cannot listen on ${config.httpHost}:${config.httpPort}`))));
  });
  const port = uWS.us_socket_local_port(listenSocket);
  log.info({ port }, 'edge listening');
  return {
    port,
    bus,
    jobs,
    wsStats: () => gateway.stats(),
    async close() {
      clearInterval(prune);
      await sweep.stop();
      bus.jobIndex.unwatchOpen();
      uWS.us_listen_socket_close(listenSocket);
      gateway.closeAll();
      app.close();
      await bus.close();
    },
  };
}

function corsHeaders(origins: string[], req: Request): Record<string, string> {
  const origin = req.headers.origin;
  if (!origin || origins.length === 0) return {};
  if (!origins.includes('*') && !origins.includes(origin)) return {};
  return {
    'access-control-allow-origin': origins.includes('*') ? '*' : origin,
    'access-control-allow-headers': 'authorization, content-type, idempotency-key, prefer, x-request-id',
    'access-control-allow-methods': 'GET, POST, OPTIONS',
    'access-control-expose-headers': 'x-request-id, retry-after, location, x-task-id, x-content-sha256',
    vary: 'origin',
  };
}
