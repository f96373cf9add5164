/**
 * The HTTP API under /api. Every route but /, health, hello and CORS preflights needs a bearer
 * token; each authenticated request takes one token of the caller's rate limit.
 * docs/api.md documents every route; schemas/http/ has every body.
 */
import type { TemplatedApp } from 'uWebSockets.js';
import { ownerHash } from '../../bus/job-store.js';
import { AppError } from '../../shared/errors.js';
import type { Owner } from '../../shared/schema-types.js';
import { anonymousOwner } from '../anonymous.js';
import { bearerToken } from '../auth.js';
import { mountBlobRoutes } from './routes/blobs.js';
import { mountCaseRoutes } from './routes/cases.js';
import { mountForensicsRoutes } from './routes/forensics.js';
import { mountJobRoutes } from './routes/jobs.js';
import { mountPlayeRoutes } from './routes/playe.js';
import { mountSystemRoutes } from './routes/system.js';
import { mountObservabilityRoutes } from './routes/observability.js';
import { mountDevTokenRoute } from './routes/dev-token.js';
import { mountStepRoutes } from './routes/steps.js';
import { mountWebRoutes, playgroundAvailable } from './routes/web.js';
import type { Registry } from '../../metrics/prometheus.js';
import { route, type HttpOptions, type Request } from './uws-http.js';
import type { EdgeDeps } from '../deps.js';

export interface ApiDeps extends EdgeDeps {
  steps: string[];
  /** The launcher's generated session secret (JWT_DEV_SECRET) when the edge verifies with it: POST /api/dev/token exists only then. */
  devTokenSecret?: string;
}

export interface ApiContext extends ApiDeps {
  http: HttpOptions;
  /** The authenticated caller of a request (401 otherwise), after taking a rate-limit token (429). */
  caller(req: Request): Promise<Owner>;
}

export function mountApi(app: TemplatedApp, deps: ApiDeps, http: HttpOptions, observability: { registry: Registry; wsConnections: () => number }): void {
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
  if (playgroundAvailable(ctx)) mountWebRoutes(app, ctx);
  route(app, 'any', '/*', async (req) => {
    throw new AppError(404, 'route_not_found', `no route ${req.method} ${req.path}`);
  }, http);
}
