/**
 * The edge: HTTP API and WebSocket gateway on uWebSockets.js, in front of NATS.
 */
import uWS from 'uWebSockets.js';
import { connectBus, type Bus } from '../bus/bus.js';
import { loadStages } from '../stages/registry.js';
import type { Config } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';
import { createAuthenticator } from './auth.js';
import { mountApi } from './http/api.js';
import type { HttpOptions, Request } from './http/uws-http.js';
import { JobsService } from './jobs.js';
import { mountWebSocket } from './ws/gateway.js';

export interface Edge {
  port: number;
  bus: Bus;
  close(): Promise<void>;
}

export async function startEdge(config: Config, log: Logger): Promise<Edge> {
  const stages = await loadStages();
  const steps = [...stages.keys()];
  const bus = await connectBus(config, log, 'photolab-edge', { steps });
  const auth = createAuthenticator(config);
  const jobs = new JobsService(bus, stages, config, log);
  const app = uWS.App();
  const http: HttpOptions = {
    log,
    maxBodyBytes: config.maxUploadBytes + 1024 * 1024,
    commonHeaders: (req) => corsHeaders(config.corsOrigins, req),
  };
  mountWebSocket(app, { bus, jobs, auth, config, log });
  mountApi(app, { bus, jobs, auth, config, log, steps }, http);

  const listenSocket = await new Promise<uWS.us_listen_socket>((resolve, reject) => {
    app.listen(config.httpHost, config.httpPort, (socket) => (socket ? resolve(socket) : reject(new Error(`edge cannot listen on ${config.httpHost}:${config.httpPort}`))));
  });
  const port = uWS.us_socket_local_port(listenSocket);
  log.info({ port }, 'edge listening');
  return {
    port,
    bus,
    async close() {
      uWS.us_listen_socket_close(listenSocket);
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
    'access-control-expose-headers': 'x-request-id, retry-after, location',
    vary: 'origin',
  };
}
