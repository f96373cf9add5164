/**
 * GET /metrics: Prometheus text of the edge (requests by route and status, their durations,
 * WebSocket connections, and each step's backlog read from JetStream at scrape time).
 * GET /api/stats: stage-run statistics from ClickHouse over a time window, asked of the
 * metrics service over NATS (embedded chDB lives in that one process).
 */
import type { TemplatedApp } from 'uWebSockets.js';
import { registerBacklogGauges } from '../../../lib/metrics/backlog.js';
import { PROMETHEUS_CONTENT_TYPE, type Registry } from '../../../lib/metrics/prometheus.js';
import { requestStats } from '../../../lib/metrics/stats.js';
import type { ApiContext } from '../api.js';
import { json, route } from '../uws-http.js';

export function mountObservabilityRoutes(app: TemplatedApp, ctx: ApiContext, registry: Registry, wsConnections: () => number): void {
  registerBacklogGauges(registry, ctx.bus.jsm, ctx.steps);
  const connections = registry.gauge('photolab_edge_ws_connections', 'Open WebSocket connections.');
  registry.onCollect(() => connections.set(undefined, wsConnections()));

  route(app, 'get', '/metrics', async () => ({
    status: 200, headers: { 'content-type': PROMETHEUS_CONTENT_TYPE }, body: await registry.collect(),
  }), ctx.http);

  route(app, 'get', '/api/stats', async (req) => {
    await ctx.caller(req);
    const query: Record<string, string> = {};
    for (const key of ['from', 'to', 'groupBy']) {
      const value = req.query.get(key);
      if (value !== null) query[key] = value;
    }
    return json(200, await requestStats(ctx.bus.nc, query));
  }, ctx.http);
}

/** Request counters and durations for the edge's registry, fed by HttpOptions.onReply. */
export function httpObserver(registry: Registry): (route: string, method: string, status: number, ms: number) => void {
  const requests = registry.counter('photolab_edge_requests_total', 'HTTP answers by route and status.', ['route', 'method', 'status']);
  const seconds = registry.histogram('photolab_edge_request_seconds', 'Time to answer an HTTP request.', ['route']);
  return (routePattern, method, status, ms) => {
    requests.inc({ route: routePattern, method, status });
    seconds.observe({ route: routePattern }, ms / 1000);
  };
}
