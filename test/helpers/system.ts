/**
 * Runs the real system for integration tests: a real nats-server on a free loopback port,
 * the edge (in this process) and stage workers (in this process, or as child processes when
 * a test needs to SIGKILL one). Nothing of the bus is mocked.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SignJWT } from 'jose';
import WebSocket from 'ws';
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { freePort, stopProcess } from '../../services/launcher/nats-server.js';
import { startEdge, type Edge } from '../../services/edge/server.js';
import { startStageWorker } from '../../services/stage-worker/main.js';
import { loadConfig, type Config } from '../../services/lib/shared/config.js';
import { createLogger } from '../../services/lib/shared/logger.js';
import type { JobEvent, JobView } from '../../services/lib/shared/schema-types.js';
import { STREAMS, subjects } from '../../services/lib/bus/subjects.js';
import { REPO_ROOT, MODELS_DIR } from './paths.js';
import { startNatsServer, type TestNatsServer } from './nats-server.js';

export const JWT_SECRET = 'integration-test-secret';

export interface SystemOptions {
  /** Steps run in this process (one worker each). */
  steps?: string[];
  env?: Record<string, string>;
}

export interface TestSystem {
  nats: TestNatsServer;
  config: Config;
  env: Record<string, string>;
  edge: Edge;
  baseUrl: string;
  nc: NatsConnection;
  js: JetStreamClient;
  token(sub?: string, tenant?: string): Promise<string>;
  startWorker(steps: string): Promise<{ stop(): Promise<void> }>;
  /** A stage in its own process; `pause` holds every step there for `ms` (to SIGKILL it exactly then). */
  spawnWorker(step: string, env?: Record<string, string>, pause?: { at: 'afterRun' | 'beforeAck'; ms: number }): ChildProcess;
  submit(image: Buffer, pipeline: unknown, options?: { sub?: string; filename?: string }): Promise<JobView>;
  waitForJob(jobId: string, options?: { sub?: string; timeoutMs?: number }): Promise<JobView>;
  /** The job's stored history (PHOTOLAB_EVENTS): step facts and the end, in order. */
  events(jobId: string): Promise<JobEvent[]>;
  /** Everything of the job that went over the wire since the system started, live progress included. */
  liveEvents(jobId: string): JobEvent[];
  /** Stops every worker process spawned so far. */
  stopSpawned(): Promise<void>;
  stop(): Promise<void>;
}

export async function startSystem(options: SystemOptions = {}): Promise<TestSystem> {
  const nats = await startNatsServer();
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'photolab-test-'));
  const env: Record<string, string> = {
    NATS_URL: nats.url,
    JWT_SECRET,
    HTTP_PORT: String(await freePort()),
    HTTP_HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    FRAME_CACHE_DIR: path.join(dataDir, 'frames'),
    MODELS_DIR,
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
    ACK_WAIT_MS: '3000',
    RETRY_DELAY_MS: '200',
    ...options.env,
  };
  const config = loadConfig({ ...process.env, ...env });
  const log = createLogger('test-edge');
  const edge = await startEdge(config, log);
  const baseUrl = `http://127.0.0.1:${edge.port}`;
  const nc = await connect({ servers: nats.url });
  const js = jetstream(nc);
  // Progress (job.accepted, step.started) is never stored: the tests see it the way a live client does.
  const live = new Map<string, JobEvent[]>();
  for (const subject of [subjects.eventsAll, subjects.progressAll]) {
    nc.subscribe(subject, {
      callback: (_error, m) => {
        const event = m.json<JobEvent>();
        live.set(event.jobId, [...(live.get(event.jobId) ?? []), event]);
      },
    });
  }
  await nc.flush();
  const workers: { stop(): Promise<void> }[] = [];
  const children: ChildProcess[] = [];

  const system: TestSystem = {
    nats, config, env, edge, baseUrl, nc, js,
    token: (sub = 'alice', tenant?: string) => {
      const jwt = new SignJWT(tenant ? { tenant } : {}).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setIssuedAt().setExpirationTime('1h');
      return jwt.sign(new TextEncoder().encode(JWT_SECRET));
    },
    async startWorker(step) {
      const worker = await startStageWorker(step, config);
      workers.push(worker);
      // The edge admits from what it has seen of the stages: a test submits once it has seen these.
      await waitFor(() => step.split(',').every((s) => edge.presence.hostsOf(s).length > 0), `the edge to see the ${step} stage`);
      return worker;
    },
    spawnWorker(step, extraEnv = {}, pause) {
      const args = pause
        ? [path.join(REPO_ROOT, 'dist/test/helpers/paused-stage-worker.js'), step, pause.at, String(pause.ms)]
        : [path.join(REPO_ROOT, 'dist/services/stage-worker/main.js'), step];
      const child = spawn(process.execPath, args, {
        env: { ...process.env, ...env, ...extraEnv },
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      children.push(child);
      return child;
    },
    async submit(image, pipeline, submitOptions = {}) {
      const form = new FormData();
      form.set('file', new Blob([new Uint8Array(image)]), submitOptions.filename ?? 'image.jpg');
      form.set('pipeline', JSON.stringify(pipeline));
      const response = await fetch(`${baseUrl}/api/jobs`, { method: 'POST', body: form, headers: { authorization: `Bearer ${await system.token(submitOptions.sub)}` } });
      const body = await response.json() as JobView;
      if (response.status !== 202) throw new Error(`submit answered ${response.status}: ${JSON.stringify(body)}`);
      return body;
    },
    async waitForJob(jobId, waitOptions = {}) {
      const until = Date.now() + (waitOptions.timeoutMs ?? 30_000);
      const token = await system.token(waitOptions.sub);
      for (;;) {
        const response = await fetch(`${baseUrl}/api/jobs/${jobId}`, { headers: { authorization: `Bearer ${token}` } });
        const job = await response.json() as JobView;
        if (['done', 'failed', 'canceled', 'timeout'].includes(job.status)) return job;
        if (Date.now() > until) throw new Error(`job ${jobId} still ${job.status} after the wait: ${JSON.stringify(job)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    liveEvents: (jobId) => [...(live.get(jobId) ?? [])],
    async events(jobId) {
      const jsm = await jetstreamManager(nc);
      const events: JobEvent[] = [];
      const consumer = await js.consumers.get(STREAMS.events, { filter_subjects: subjects.jobEvents(jobId) });
      const info = await jsm.streams.info(STREAMS.events, { subjects_filter: subjects.jobEvents(jobId) });
      const count = Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
      if (count === 0) return events;
      const messages = await consumer.fetch({ max_messages: count, expires: 2000 });
      for await (const m of messages) {
        events.push(m.json<JobEvent>());
        if (events.length >= count) break;
      }
      await consumer.delete().catch(() => undefined);
      return events;
    },
    async stopSpawned() {
      await Promise.all(children.splice(0).map((child) => stopProcess(child, 3000)));
    },
    async stop() {
      await system.stopSpawned();
      await Promise.all(workers.map((w) => w.stop()));
      await edge.close();
      await nc.close();
      await nats.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  for (const step of options.steps ?? []) await system.startWorker(step);
  return system;
}

/** A WebSocket client that collects what the edge sends. */
export async function openSocket(url: string, headers: Record<string, string> = {}): Promise<{ ws: WebSocket; messages: unknown[]; binary: Buffer[]; next(predicate: (m: any) => boolean, timeoutMs?: number): Promise<any>; closed: Promise<{ code: number; reason: string }> }> {
  const ws = new WebSocket(url, { headers });
  const messages: unknown[] = [];
  const binary: Buffer[] = [];
  const waiters: { predicate: (m: any) => boolean; resolve: (m: any) => void }[] = [];
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  ws.on('message', (data, isBinary) => {
    if (isBinary) {
      binary.push(Buffer.from(data as Buffer));
      return;
    }
    const message = JSON.parse(data.toString());
    messages.push(message);
    for (const w of [...waiters]) {
      if (w.predicate(message)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(message);
      }
    }
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return {
    ws, messages, binary, closed,
    next(predicate, timeoutMs = 20_000) {
      const already = messages.find(predicate);
      if (already) return Promise.resolve(already);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no matching WebSocket message within ${timeoutMs} ms; got ${JSON.stringify(messages)}`)), timeoutMs);
        waiters.push({ predicate, resolve: (m) => { clearTimeout(timer); resolve(m); } });
      });
    },
  };
}

import { waitFor } from './wait.js';

export { waitFor };
