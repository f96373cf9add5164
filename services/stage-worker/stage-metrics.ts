/**
 * Prometheus metrics of a stage process: runs by status, run time, messages in flight, and
 * its step's backlog, served as text on STAGE_METRICS_PORT (/metrics), beside the process's
 * own health for orchestrators (Kubernetes probes, compose healthchecks):
 *   /healthz  200 while the process serves and its NATS connection is not closed for good.
 *             A NATS outage alone does not fail it: restarting every stage while the bus is
 *             away would only add a cold start (models) to the outage.
 *   /readyz   200 when the runners are started and the server answers a round trip now.
 */
import http from 'node:http';
import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { PROMETHEUS_CONTENT_TYPE, Registry } from '../lib/metrics/prometheus.js';
import { registerBacklogGauges } from '../lib/metrics/backlog.js';
import type { RunObserver } from '../lib/pipeline/stage-runner.js';

export function stageObserver(registry: Registry, step: string): RunObserver {
  const runs = registry.counter('photolab_stage_runs_total', 'Stage runs by outcome.', ['step', 'status']);
  const seconds = registry.histogram('photolab_stage_run_seconds', 'Time a stage function ran (including failed runs).', ['step']);
  const inFlight = registry.gauge('photolab_stage_in_flight', 'Messages this process is working on.', ['step']);
  const busWaits = registry.counter('photolab_stage_bus_waits_total', 'Times a step waited for a bus that was away, keeping its delivery.', ['step']);
  let current = 0;
  return {
    started: () => inFlight.set({ step }, ++current),
    settled: () => inFlight.set({ step }, --current),
    finished: (status, ms) => {
      runs.inc({ step, status });
      seconds.observe({ step }, ms / 1000);
    },
    waitedForBus: () => busWaits.inc({ step }),
  };
}

const READY_RTT_TIMEOUT_MS = 2000;

/** Ready: a round trip to the server within READY_RTT_TIMEOUT_MS (rtt() throws at once while disconnected). */
async function natsAnswers(nc: NatsConnection): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), READY_RTT_TIMEOUT_MS); });
  try {
    return await Promise.race([nc.rtt().then(() => true, () => false), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Serves /metrics, /healthz and /readyz; resolves with a function that closes the server. */
export async function serveStageMetrics(port: number, host: string, registry: Registry, jsm: JetStreamManager, steps: string[], nc?: NatsConnection): Promise<() => Promise<void>> {
  registerBacklogGauges(registry, jsm, steps);
  const server = http.createServer((req, res) => {
    if (req.url === '/healthz') {
      const live = !nc || !nc.isClosed();
      res.writeHead(live ? 200 : 503, { 'content-type': 'text/plain' }).end(live ? 'ok\n' : 'NATS connection closed\n');
      return;
    }
    if (req.url === '/readyz') {
      void (nc ? natsAnswers(nc) : Promise.resolve(true)).then((ready) => {
        res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(ready ? `ready: ${steps.join(',')}\n` : 'NATS not reachable\n');
      });
      return;
    }
    if (req.url !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('/metrics, /healthz, /readyz here\n');
      return;
    }
    registry.collect().then(
      (text) => res.writeHead(200, { 'content-type': PROMETHEUS_CONTENT_TYPE }).end(text),
      (error: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${error.message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return () => new Promise((resolve) => server.close(() => resolve()));
}
