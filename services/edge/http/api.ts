/**
 * The HTTP API under /api. Every route but /, health, hello and CORS preflights needs a bearer
 * token; each authenticated request takes one token of the caller's rate limit.
 * docs/api.md documents every route; schemas/http/ has every body.
 */
import type { TemplatedApp } from 'uWebSockets.js';
import { ownerHash } from '../../lib/bus/job-store.js';
import { appError } from '../../lib/shared/errors.js';
import type { Owner } from '../../lib/shared/schema-types.js';
import { anonymousOwner } from '../anonymous.js';
import { bearerToken } from '../auth.js';
import { mountBlobRoutes } from './routes/blobs.js';
import { mountCaseRoutes } from './routes/cases.js';
import { mountForensicsRoutes } from './routes/forensics.js';
import { mountDocsRoutes } from './routes/docs.js';
import { mountJobRoutes } from './routes/jobs.js';
import { mountPlayeRoutes } from './routes/playe.js';
import { mountSystemRoutes } from './routes/system.js';
import { mountObservabilityRoutes } from './routes/observability.js';
import { mountDevTokenRoute } from './routes/dev-token.js';
import { mountStepRoutes } from './routes/steps.js';
import { mountWebRoutes, playgroundAvailable } from './routes/web.js';
import type { Registry } from '../../lib/metrics/prometheus.js';
import { route, type HttpOptions, type Request } from './uws-http.js';
import type { EdgeDeps } from '../deps.js';
import type { StagePresenceView } from '../../lib/bus/stage-presence.js';

export interface ApiDeps extends EdgeDeps {
  steps: string[];
  /** The live stage processes, for the health report. */
  presence: StagePresenceView;
  /** The launcher's generated session secret (JWT_DEV_SECRET) when the edge verifies with it: POST /api/dev/token exists only then. */
  devTokenSecret?: string;
}

export interface ApiContext extends ApiDeps {
  http: HttpOptions;
  /** The authenticated caller of a request (401 otherwise), after taking a rate-limit token (429). */
  caller(req: Request): Promise<Owner>;
}

/** A mounted route: method and uWS pattern (`/api/jobs/:id`). */
export interface MountedRoute {
  method: string;
  pattern: string;
}

const METHODS = new Set(['get', 'post', 'put', 'del', 'patch', 'options', 'any']);

/** The app with its route-mounting methods noted down, so the OpenAPI test can compare the two. */
function recording(app: TemplatedApp, routes: MountedRoute[]): TemplatedApp {
  return new Proxy(app, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver);
      if (typeof key !== 'string' || !METHODS.has(key) || typeof value !== 'function') return value;
      return (pattern: string, handler: unknown) => {
        routes.push({ method: key, pattern });
        value.call(target, pattern, handler);
        return receiver;
      };
    },
  });
}

/** Mounts every route; answers the list of what it mounted. */
export function mountApi(rawApp: TemplatedApp, deps: ApiDeps, http: HttpOptions, observability: { registry: Registry; wsConnections: () => number }): MountedRoute[] {
  const routes: MountedRoute[] = [];
  const app = recording(rawApp, routes);
  const ctx: ApiContext = {
    ...deps,
    http,
    async caller(req) {
      // No Authorization header at all: the configured anonymous subject, when ANONYMOUS_SUBJECT allows it.
      const owner = anonymousOwner(deps.config, req.headers) ?? await deps.auth.verify(bearerToken(req.headers.authorization));
      deps.rateLimiter.take(ownerHash(owner));
      return owner;
    },
  };
  mountSystemRoutes(app, ctx);
  mountJobRoutes(app, ctx);
  mountBlobRoutes(app, ctx);
  mountCaseRoutes(app, ctx);
  mountForensicsRoutes(app, ctx);
  mountPlayeRoutes(app, ctx);
  mountObservabilityRoutes(app, ctx, observability.registry, observability.wsConnections);
  mountStepRoutes(app, ctx);
  if (deps.devTokenSecret) mountDevTokenRoute(app, ctx, deps.devTokenSecret);
  mountDocsRoutes(app, ctx);
  if (playgroundAvailable(ctx)) mountWebRoutes(app, ctx);
  route(app, 'any', '/*', async (req) => {
    throw appError('route_not_found', `no route ${req.method} ${req.path}`);
  }, http);
  return routes;
}
