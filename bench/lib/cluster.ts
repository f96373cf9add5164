/**
 * The system as production runs it, on this machine: a nats-server on a free loopback port
 * with a temporary store, the edge and the stage services as separate Node processes
 * (dist/services/edge/main.js, dist/services/stage-worker/main.js <step>), and a client that
 * submits over HTTP and follows the job's events on NATS.
 *
 * Everything started here is stopped by `stop()`, and also when the bench process exits or
 * is interrupted (see `onExit`): no orphan nats-server or service processes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, closeSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { signDevToken } from '../../services/lib/shared/dev-token.js';
import { withAllocatorDefaults } from '../../services/lib/shared/config.js';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { freePort, startTemporaryNatsServer, stopProcess, type RunningNatsServer } from '../../services/launcher/nats-server.js';
import type { JobEvent } from '../../services/lib/shared/schema-types.js';
import { cpuMs, DIST, MODELS_DIR, now, sleep } from './util.js';
import { isTerminalEvent } from '../../services/lib/shared/job-status.js';

export const JWT_SECRET = 'bench-secret-not-for-production';

/** Children and servers to stop whatever happens. */
const live = new Set<ChildProcess>();
let hooked = false;
function track(child: ChildProcess): ChildProcess {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!hooked) {
    hooked = true;
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.once(signal, () => {
        for (const c of live) c.kill('SIGKILL');
        process.exit(130);
      });
    }
  }
  return child;
}

export interface NatsHandle extends RunningNatsServer { storeDir: string }

export async function startNats(options: { monitorPort?: number } = {}): Promise<NatsHandle> {
  const server = await startTemporaryNatsServer('photolab-bench-nats-', { maxMemoryStore: 4 * 1024 * 1024 * 1024, ...options });
  track(server.process);
  return server;
}

/** The processes a bench starts: script under dist/ and its arguments. */
const SERVICES = {
  edge: ['services/edge/main.js'],
  worker: ['services/stage-worker/main.js'],
  'node-edge': ['bench/ingest/node-edge.js'],
  'node-front': ['bench/ingest/node-edge.js', '--front-only'],
  'uws-front': ['bench/ingest/uws-front.js'],
} as const;
export type ServiceKind = keyof typeof SERVICES;

export interface ClusterOptions {
  /** Stage services to run: step -> replicas. */
  workers: Record<string, number>;
  /** Start the edge (uWebSockets.js) as its own process. */
  edge?: boolean;
  env?: Record<string, string>;
  /** nats-server's HTTP monitoring port (/varz, /connz: messages per connection), for profiling. */
  monitorPort?: number;
}

export interface Cluster {
  nats: NatsHandle;
  nc: NatsConnection;
  jsm: JetStreamManager;
  env: Record<string, string>;
  dataDir: string;
  baseUrl: string;
  token: string;
  client: JobClient;
  /** Spawns one more service process and waits until it is ready. */
  spawnService(script: ServiceKind, step?: string, port?: number): Promise<ChildProcess>;
  stop(): Promise<void>;
}

export function benchEnv(nats: NatsHandle, dataDir: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    NATS_URL: nats.url,
    JWT_SECRET,
    HTTP_HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    FRAME_CACHE_DIR: path.join('/dev/shm', `photolab-bench-${path.basename(dataDir)}`),
    MODELS_DIR,
    LOG_LEVEL: 'info',
    MAX_BACKLOG: '1000000',
    RATE_LIMIT_PER_MINUTE: '100000000',
    MAX_CONCURRENT_JOBS: '100000000',
    MAX_UPLOAD_BYTES: String(200 * 1024 * 1024),
    MAX_INPUT_PIXELS: String(60_000_000),
    JOB_DEADLINE_MS: String(30 * 60_000),
    ...extra,
  };
}

export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const nats = await startNats({ monitorPort: options.monitorPort });
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'photolab-bench-data-'));
  const children: ChildProcess[] = [];
  let port = 0;
  const env = benchEnv(nats, dataDir, options.env);
  mkdirSync(env.FRAME_CACHE_DIR!, { recursive: true });
  let serial = 0;

  const spawnService = async (kind: ServiceKind, step?: string, servicePort?: number): Promise<ChildProcess> => {
    const logFile = path.join(dataDir, `${kind}${step ? `-${step}` : ''}-${++serial}.log`);
    const fd = openSync(logFile, 'a');
    const [script, ...args] = SERVICES[kind];
    // The allocator settings that `npm start` and the images give every service, unless set.
    const childEnv = withAllocatorDefaults({ ...process.env, ...env }) as Record<string, string>;
    if (kind !== 'worker') childEnv.HTTP_PORT = String(servicePort ?? port);
    const child = track(spawn(process.execPath, [path.join(DIST, script!), ...args, ...(step ? [step] : [])], { env: childEnv, stdio: ['ignore', fd, fd] }));
    closeSync(fd);
    children.push(child);
    const ready = kind !== 'worker' ? /"msg":"edge listening"/ : /"msg":"stage ready"/;
    const until = Date.now() + 120_000;
    for (;;) {
      const text = readFileSync(logFile, 'utf8');
      if (ready.test(text)) return child;
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${kind} ${step ?? ''} exited at start:\n${text.slice(-3000)}`);
      if (Date.now() > until) throw new Error(`${kind} ${step ?? ''} not ready after 120 s:\n${text.slice(-3000)}`);
      await sleep(50);
    }
  };

  const nc = await connect({ servers: nats.url, name: 'photolab-bench' });
  const cluster: Cluster = {
    nats, nc, jsm: await jetstreamManager(nc), env, dataDir, baseUrl: '', token: '',
    client: undefined as unknown as JobClient,
    spawnService,
    async stop() {
      await Promise.all(children.map((c) => stopProcess(c, 5000)));
      cluster.client?.close();
      await nc.close().catch(() => undefined);
      await nats.stop();
      rmSync(dataDir, { recursive: true, force: true });
      rmSync(env.FRAME_CACHE_DIR!, { recursive: true, force: true });
    },
  };
  try {
    if (options.edge !== false) {
      port = await freePort();
      await spawnService('edge');
      cluster.baseUrl = `http://127.0.0.1:${port}`;
    }
    await Promise.all(Object.entries(options.workers).flatMap(([step, replicas]) => Array.from({ length: replicas }, () => spawnService('worker', step))));
    cluster.token = await benchToken();
    cluster.client = new JobClient(nc, cluster.baseUrl, cluster.token);
    return cluster;
  } catch (error) {
    await cluster.stop().catch(() => undefined);
    throw error;
  }
}

/** What the bus has done so far: messages stored in all streams (KV buckets included) and nats-server's CPU. */
export interface BusCost {
  writes: number;
  natsCpuMs: number;
  byStream: Record<string, number>;
}

/** Persisted writes are read from the streams' last sequence numbers: every stored message takes one. */
export async function busCost(cluster: Pick<Cluster, 'jsm' | 'nats'>): Promise<BusCost> {
  const byStream: Record<string, number> = {};
  for await (const info of cluster.jsm.streams.list()) byStream[info.config.name] = info.state.last_seq;
  return { writes: Object.values(byStream).reduce((a, b) => a + b, 0), natsCpuMs: cpuMs(cluster.nats.process.pid!), byStream };
}

/** Per job between two snapshots. */
export function costPerJob(before: BusCost, after: BusCost, jobs: number): { writes: number; natsCpuMs: number; byStream: Record<string, number> } {
  const byStream: Record<string, number> = {};
  for (const [name, seq] of Object.entries(after.byStream)) {
    const delta = seq - (before.byStream[name] ?? 0);
    if (delta) byStream[name] = delta / jobs;
  }
  return { writes: (after.writes - before.writes) / jobs, natsCpuMs: (after.natsCpuMs - before.natsCpuMs) / jobs, byStream };
}

export function benchToken(sub = 'bench'): Promise<string> {
  return signDevToken(JWT_SECRET, { sub, ttlS: 4 * 3600 });
}

/** A multipart/form-data body (file + pipeline), built once and sent many times. */
export function multipartBody(image: Buffer, pipeline: unknown): { body: Buffer; contentType: string } {
  const boundary = `----photolabbench${Math.random().toString(16).slice(2)}`;
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="pipeline"\r\n\r\n${JSON.stringify(pipeline)}\r\n`
    + `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="photo.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  return { body: Buffer.concat([head, image, tail]), contentType: `multipart/form-data; boundary=${boundary}` };
}

/** POST with a keep-alive agent; resolves with status and body text. */
export function post(agent: http.Agent, url: string, body: Buffer, headers: Record<string, string>): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent, headers: { ...headers, 'content-length': String(body.length) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

export interface JobOutcome {
  jobId: string;
  status: string;
  /** Client-side: POST sent -> terminal event received. */
  e2eMs: number;
  /** Client-side: POST sent -> 202 received. */
  submitMs: number;
  /** step.finished ms per step (the runner's run time: input load + stage function). */
  stepMs: Record<string, number>;
  events: JobEvent[];
}

/** Submits jobs over HTTP and follows their events with a core NATS subscription. */
export class JobClient {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  private readonly waiting = new Map<string, { events: JobEvent[]; resolve: (at: number) => void }>();
  private readonly early = new Map<string, JobEvent[]>();
  private readonly subs;

  constructor(nc: NatsConnection, private readonly baseUrl: string, private readonly token: string) {
    // Stored facts and live progress (photolab.progress.*: step.started) both.
    this.subs = ['photolab.events.>', 'photolab.progress.*'].map((subject) => nc.subscribe(subject, {
      callback: (_err, msg) => {
        if (!msg) return;
        const at = now();
        const event = msg.json<JobEvent>();
        const entry = this.waiting.get(event.jobId);
        const list = entry?.events ?? this.early.get(event.jobId) ?? [];
        list.push(event);
        if (!entry) this.early.set(event.jobId, list);
        if (entry && isTerminalEvent(event.type)) entry.resolve(at);
      },
    }));
  }

  async run(body: { body: Buffer; contentType: string }, timeoutMs = 600_000): Promise<JobOutcome> {
    const t0 = now();
    const answer = await post(this.agent, `${this.baseUrl}/api/jobs`, body.body, { 'content-type': body.contentType, authorization: `Bearer ${this.token}` });
    const submitMs = now() - t0;
    if (answer.status !== 202) throw new Error(`submit answered ${answer.status}: ${answer.text.slice(0, 500)}`);
    const { jobId } = JSON.parse(answer.text) as { jobId: string };
    const events = this.early.get(jobId) ?? [];
    this.early.delete(jobId);
    const done = events.find((e) => isTerminalEvent(e.type));
    const endAt = done ? now() : await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`job ${jobId} did not end within ${timeoutMs} ms`)), timeoutMs);
      this.waiting.set(jobId, { events, resolve: (at) => { clearTimeout(timer); resolve(at); } });
    });
    this.waiting.delete(jobId);
    const terminal = events.find((e) => /^job\./.test(e.type) && e.type !== 'job.accepted');
    const stepMs: Record<string, number> = {};
    for (const e of events) if (e.type === 'step.finished') stepMs[`${e.index}:${e.step}`] = (e as { ms?: number }).ms ?? 0;
    return { jobId, status: terminal?.type.slice(4) ?? 'unknown', e2eMs: endAt - t0, submitMs, stepMs, events };
  }

  close(): void {
    for (const sub of this.subs) sub.unsubscribe();
    this.agent.destroy();
  }
}
