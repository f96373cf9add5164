/** Routes without a token: health, hello, and CORS preflights. */
import type { TemplatedApp } from 'uWebSockets.js';
import { checkHealth } from '../../health.js';
import type { ApiContext } from '../api.js';
import { json, route } from '../uws-http.js';

export function mountSystemRoutes(app: TemplatedApp, ctx: ApiContext): void {
  route(app, 'get', '/api/health', async () => {
    const health = await checkHealth(ctx.bus, ctx.steps);
    return json(health.status === 'down' ? 503 : 200, health);
  }, ctx.http);

  // The PLAYE front end's connectivity check.
  route(app, 'get', '/api/hello', async () => json(200, { message: 'Hello from PhotoLab', service: 'photolab-edge', time: new Date().toISOString() }), ctx.http);

  // CORS preflight: the allowed-origin headers come from the common headers (CORS_ORIGINS);
  // an origin that is not allowed gets the 204 without them, and the browser then refuses.
  route(app, 'options', '/*', async () => ({ status: 204, headers: { 'access-control-max-age': '600' } }), ctx.http);
}
