/**
 * The uWebSockets.js side of the ingest bench's "front only" pair: the edge's own HTTP layer
 * (route(), body reading, error replies) serving POST /api/jobs with frontOnlyHandler.
 *
 *   node dist/bench/ingest/uws-front.js   (same environment variables as the edge)
 */
import uWS from 'uWebSockets.js';
import { connectBus } from '../../services/lib/bus/bus.js';
import { createAuthenticator } from '../../services/edge/auth.js';
import { CallerBlobs } from '../../services/edge/blobs.js';
import { route } from '../../services/edge/http/uws-http.js';
import { RateLimiter } from '../../services/edge/limits.js';
import { loadStages } from '../../services/lib/steps/registry.js';
import { loadConfig } from '../../services/lib/shared/config.js';
import { createLogger } from '../../services/lib/shared/logger.js';
import { frontOnlyHandler } from './front-only.js';

const config = loadConfig();

const log = createLogger('uws-front');
const stages = await loadStages();
const bus = await connectBus(config, log, 'photolab-uws-front', { steps: [...stages.keys()] });
const deps = { bus, auth: createAuthenticator(config), rateLimiter: new RateLimiter(config.rateLimitPerMinute), blobs: await CallerBlobs.open(bus, bus.nc, config.maxUploadBytes), stages, config };
const app = uWS.App();
route(app, 'post', '/api/jobs', frontOnlyHandler(deps), { log, maxBodyBytes: config.maxUploadBytes + 64 * 1024 });
app.listen(config.httpHost, config.httpPort, (socket) => {
  if (!socket) throw new Error(`cannot listen on ${config.httpPort}`);
  log.info({ port: config.httpPort }, 'edge listening');
});
const stop = () => {
  app.close();
  void bus.close().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
