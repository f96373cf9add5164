/**
 * Prometheus metrics of a stage process: runs by status, run time, messages in flight, and
 * its step's backlog, served as text on STAGE_METRICS_PORT (/metrics).
 */
import http from 'node:http';
import type { JetStreamManager } from '@nats-io/jetstream';
import { PROMETHEUS_CONTENT_TYPE, Registry } from '../metrics/prometheus.js';
import { registerBacklogGauges } from '../metrics/backlog.js';
import type { RunObserver } from '../runner/stage-runner.js';

export function stageObserver(registry: Registry, step: string): RunObserver {
  const runs = registry.counter('photolab_stage_runs_total', 'Stage runs by outcome.', ['step', 'status']);
  const seconds = registry.histogram('photolab_stage_run_seconds', 'Time a stage function ran (including failed runs).', ['step']);
  const inFlight = registry.gauge('photolab_stage_in_flight', 'Messages this process is working on.', ['step']);
  let current = 0;
  return {
    started: () => inFlight.set({ step }, ++current),
    settled: () => inFlight.set({ step }, --current),
    finished: (status, ms) => {
      runs.inc({ step, status });
      seconds.observe({ step }, ms / 1000);
    },
  };
}

/** Serves /metrics; resolves with a function that closes the server. */
export async function serveStageMetrics(port: number, host: string, registry: Registry, jsm: JetStreamManager, steps: string[]): Promise<() => Promise<void>> {
  registerBacklogGauges(registry, jsm, steps);
  const server = http.createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only /metrics here\n');
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
