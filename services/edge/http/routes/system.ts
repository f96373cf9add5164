/** Routes without a token: the service description, health, hello, and CORS preflights. */
import type { TemplatedApp } from 'uWebSockets.js';
import { packageInfo } from '../../../lib/shared/package-info.js';
import { checkHealth } from '../../health.js';
import type { ApiContext } from '../api.js';
import { json, route } from '../uws-http.js';
import { playgroundAvailable } from './web.js';

export function mountSystemRoutes(app: TemplatedApp, ctx: ApiContext): void {
  // What answers at this address, as the old PLAYE backend's root did: at / when the playground
  // is not served there (WEB_PLAYGROUND=false, or not built), and always at /api;
  // schemas/http/service.schema.json.
  const service = { service: 'PhotoLab Pipeline (PLAYE PhotoLab compatible)', version: packageInfo().version, status: 'running', api: '/api', docs: 'docs/api.md' };
  if (!playgroundAvailable(ctx)) route(app, 'get', '/', async () => json(200, service), ctx.http);
  route(app, 'get', '/api', async () => json(200, service), ctx.http);

  route(app, 'get', '/api/health', async () => {
    const health = await checkHealth(ctx.bus, ctx.steps, ctx.presence);
    return json(health.status === 'down' ? 503 : 200, health);
  }, ctx.http);

  // The PLAYE front end's connectivity check.
  route(app, 'get', '/api/hello', async () => json(200, { message: 'Hello from PhotoLab', service: 'photolab-edge', time: new Date().toISOString() }), ctx.http);

  // CORS preflight: the allowed-origin headers come from the common headers (CORS_ORIGINS);
  // an origin that is not allowed gets the 204 without them, and the browser then refuses.
  route(app, 'options', '/*', async () => ({ status: 204, headers: { 'access-control-max-age': '600' } }), ctx.http);
}
