/**
 * The product as separate processes (edge, one process per step) against a NATS cluster, and a
 * load client that survives server crashes: the cluster test and the replication bench use it.
 *
 * The client is built to count, not to hide, what a crash does:
 *  - submits carry an Idempotency-Key and are retried with the same key on any network error,
 *    5xx, 409 (key still being processed) or 429, so a submit that failed half-way can only
 *    come back as the same job; two job ids for one key would be a duplicate;
 *  - ends are read from the job records through the edge while servers die, and the terminal
 *    events are counted from PHOTOLAB_EVENTS afterwards: a job with two is a duplicate, a job
 *    that ended with none fails the run;
 *  - a job that never ends before the deadline is lost.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DeliverPolicy, jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { SignJWT } from 'jose';
import { freePort, stopProcess } from '../../services/launcher/nats-server.js';
import { STREAMS } from '../../services/lib/bus/subjects.js';
import { loadConfig } from '../../services/lib/shared/config.js';
import type { JobEvent } from '../../services/lib/shared/schema-types.js';
import { connectAll, ensureTopologyWhenReady } from './nats-cluster.js';
import { MODELS_DIR, REPO_ROOT } from './paths.js';
import { waitFor } from './wait.js';

const JWT_SECRET = 'cluster-test-secret';
const TERMINAL = /^job\.(done|failed|canceled|timeout)$/;

export interface ServicesOptions {
  natsUrls: string;
  replicas: number;
  steps: string[];
  env?: Record<string, string>;
}

export interface RunningServices {
  baseUrl: string;
  dataDir: string;
  env: Record<string, string>;
  nc: NatsConnection;
  processes: { name: string; child: ChildProcess; logFile: string }[];
  /** STAGE_METRICS_PORT of each stage process (/metrics, /healthz, /readyz). */
  stagePorts: Record<string, number>;
  /** "NATS connection status" reconnect lines per service log: proof they reconnected by themselves. */
  reconnects(): Record<string, number>;
  /** Lines of a service's log (pino JSON), for a failure message. */
  tail(name: string, lines?: number): string;
  stop(): Promise<void>;
}

export async function startServices(options: ServicesOptions): Promise<RunningServices> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'photolab-cluster-data-'));
  const port = await freePort();
  const env: Record<string, string> = {
    NATS_URL: options.natsUrls,
    NATS_REPLICAS: String(options.replicas),
    JWT_SECRET,
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: String(port),
    DATA_DIR: dataDir,
    FRAME_CACHE_DIR: path.join(dataDir, 'frames'),
    MODELS_DIR,
    LOG_LEVEL: 'info',
    MAX_BACKLOG: '100000',
    RATE_LIMIT_PER_MINUTE: '1000000',
    MAX_CONCURRENT_JOBS: '100000',
    // A consumer whose server died redelivers unacked messages after the ack wait: keep it short
    // so that recovery is measured in seconds, not in the 30 s default.
    ACK_WAIT_MS: '5000',
    // A server loss costs a leader election, and every request to that stream times out until
    // it is over; on 2 shared cores that can outlast the default 3 tries (1 s + 2 s apart).
    // Six tries, 0.5 s doubling, span about 15 s plus the timeouts: what deploy/k8s sets too.
    MAX_ATTEMPTS: '6',
    RETRY_DELAY_MS: '500',
    // The frames stream is memory on every replica: keep it well inside the test servers' limit.
    FRAME_STREAM_MAX_BYTES: String(256 * 1024 * 1024),
    ...options.env,
  };
  mkdirSync(env.FRAME_CACHE_DIR!, { recursive: true });
  const nc = await connectAll(options.natsUrls, 'photolab-cluster-client');
  // Topology first, from here, once the cluster can hold R3 streams: then no service races the election.
  await ensureTopologyWhenReady(nc, loadConfig({ ...process.env, ...env }), options.steps);

  const processes: RunningServices['processes'] = [];
  const stagePorts: Record<string, number> = {};
  for (const step of options.steps) stagePorts[step] = await freePort();
  const spawnService = async (name: string, script: string, args: string[], ready: RegExp, extra: Record<string, string> = {}) => {
    const logFile = path.join(dataDir, `${name}.log`);
    const fd = openSync(logFile, 'a');
    const child = spawn(process.execPath, [path.join(REPO_ROOT, 'dist', script), ...args], { env: { ...process.env, ...env, ...extra }, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    processes.push({ name, child, logFile });
    const until = Date.now() + 120_000;
    for (;;) {
      const text = readFileSync(logFile, 'utf8');
      if (ready.test(text)) return;
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${name} exited at start:\n${text.slice(-3000)}`);
      if (Date.now() > until) throw new Error(`${name} not ready after 120 s:\n${text.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const running: RunningServices = {
    baseUrl: `http://127.0.0.1:${port}`,
    dataDir,
    env,
    nc,
    processes,
    stagePorts,
    reconnects() {
      return Object.fromEntries(processes.map((p) => [p.name, (readFileSync(p.logFile, 'utf8').match(/"nats":"reconnect"/g) ?? []).length]));
    },
    tail(name, lines = 20) {
      const p = processes.find((x) => x.name === name);
      return p ? readFileSync(p.logFile, 'utf8').split('\n').slice(-lines).join('\n') : '';
    },
    async stop() {
      await Promise.all(processes.map((p) => stopProcess(p.child, 5000)));
      await nc.close().catch(() => undefined);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  try {
    await spawnService('edge', 'services/edge/main.js', [], /"msg":"edge listening"/);
    for (const step of options.steps) await spawnService(step, 'services/stage-worker/main.js', [step], /"msg":"stage ready"/, { STAGE_METRICS_PORT: String(stagePorts[step]) });
  } catch (error) {
    await running.stop();
    throw error;
  }
  return running;
}

export interface LoadFigures {
  submitted: number;
  completed: number;
  failed: number;
  duplicated: number;
  lost: number;
  /** Submits that needed at least one retry (the edge could not reach the bus for a moment). */
  submitRetries: number;
  seconds: number;
}

export interface Load {
  /** Jobs that reached done so far. */
  done(): number;
  /** Wall-clock ms of every job end seen, in order (for recovery times). */
  completionTimes: number[];
  finished: Promise<LoadFigures>;
  /** Status per accepted job as last seen (with the error of a failed one), for a failure message. */
  statuses(): Map<string, string>;
  /** The submission under way and its last answer, for a failure message. */
  submitting(): string;
  close(): Promise<void>;
}

/**
 * Submits `jobs` jobs with at most `inFlight` unfinished at a time and follows them to their end.
 * `finished` resolves when every job has ended or `timeoutMs` has passed (the rest are lost).
 *
 * Ends are seen by asking the edge for each unfinished job (GET /api/jobs/<id>, the job record
 * in KV): that path has no state of its own to lose when a server dies. Duplicates are counted
 * afterwards from the events stream itself, once nothing is being killed: every terminal event
 * this run wrote, per job.
 */
export async function runLoad(services: RunningServices, options: {
  jobs: number;
  inFlight: number;
  image: Buffer;
  pipeline: unknown;
  timeoutMs: number;
  /** What the cluster holds of jobs that ended without a terminal event read back: for the failure message. */
  explainSilent?: (jobIds: string[]) => Promise<string>;
}): Promise<Load> {
  const token = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('cluster-test').setIssuedAt().setExpirationTime('2h')
    .sign(new TextEncoder().encode(JWT_SECRET));
  const js = jetstream(services.nc, { timeout: 10_000 });
  const jsm = await js.jetstreamManager();
  const firstEventSeq = (await jsm.streams.info(STREAMS.events)).state.last_seq + 1;
  const status = new Map<string, string>();
  const errors = new Map<string, string>();
  const completionTimes: number[] = [];
  let doneCount = 0;
  let closed = false;

  const form = () => {
    const f = new FormData();
    f.set('file', new Blob([new Uint8Array(options.image)]), 'photo.jpg');
    f.set('pipeline', JSON.stringify(options.pipeline));
    return f;
  };
  const started = Date.now();
  const deadline = started + options.timeoutMs;
  const idsByKey = new Map<string, Set<string>>();
  let submitRetries = 0;
  let submitting = '';
  const submit = async (key: string): Promise<string | undefined> => {
    for (let attempt = 0; Date.now() < deadline; attempt++) {
      if (attempt === 1) submitRetries++;
      try {
        submitting = `${key} attempt ${attempt + 1}`;
        // Bounded: an edge request that hangs must show up as a retry, not as a silent stall.
        const response = await fetch(`${services.baseUrl}/api/jobs`, { method: 'POST', body: form(), headers: { authorization: `Bearer ${token}`, 'idempotency-key': key }, signal: AbortSignal.timeout(30_000) });
        const body = await response.json() as { jobId?: string };
        submitting = `${key} attempt ${attempt + 1}: ${response.status} ${JSON.stringify(body).slice(0, 300)}`;
        if (response.status === 202 || response.status === 200) {
          const ids = idsByKey.get(key) ?? new Set();
          ids.add(body.jobId!);
          idsByKey.set(key, ids);
          return body.jobId!;
        }
        if (![409, 429].includes(response.status) && response.status < 500) throw new Error(`submit answered ${response.status}: ${JSON.stringify(body)}`);
      } catch (error) {
        if (/submit answered/.test(String(error))) throw error;
        submitting = `${key} attempt ${attempt + 1}: ${String(error)}`;
      }
      // Growing pause between tries of one submit (not a proof of anything: the loop retries until accepted).
      await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** attempt)));
    }
    return undefined;
  };
  const accepted: string[] = [];
  const ended = (id: string) => TERMINAL.test(`job.${status.get(id)}`);
  const unfinished = () => accepted.filter((id) => !ended(id));
  // Watches the unfinished jobs (at most inFlight of them) until the run is over.
  const watching = (async () => {
    while (!closed) {
      await Promise.all(unfinished().map(async (id) => {
        try {
          const response = await fetch(`${services.baseUrl}/api/jobs/${id}`, { headers: { authorization: `Bearer ${token}` } });
          if (response.status !== 200) return; // the edge may not reach the bus for a moment
          const job = await response.json() as { status: string; error?: { code?: string; message?: string } };
          if (ended(id)) return;
          status.set(id, job.status);
          if (job.error) errors.set(id, `${job.error.code}: ${job.error.message}`);
          if (ended(id)) {
            completionTimes.push(Date.now());
            if (job.status === 'done') doneCount++;
          }
        } catch { /* edge unreachable for a moment: ask again */ }
      }));
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const waitUntil = async (condition: () => boolean) => {
    while (!condition() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  };

  /** Terminal events per job written since the run began, read from the stream once the run is over. */
  const terminalEvents = async (): Promise<Map<string, number>> => {
    const counts = new Map<string, number>();
    const lastSeq = (await jsm.streams.info(STREAMS.events)).state.last_seq;
    if (lastSeq < firstEventSeq) return counts;
    const consumer = await js.consumers.get(STREAMS.events, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: firstEventSeq });
    for (let seq = firstEventSeq - 1; seq < lastSeq;) {
      const batch = await consumer.fetch({ max_messages: 500, expires: 5000 });
      let got = 0;
      for await (const m of batch) {
        got++;
        seq = m.seq;
        const event = m.json<JobEvent>();
        if (TERMINAL.test(event.type)) counts.set(event.jobId, (counts.get(event.jobId) ?? 0) + 1);
        if (seq >= lastSeq) break;
      }
      if (got === 0) throw new Error(`events stream read stopped at ${seq} of ${lastSeq}`);
    }
    return counts;
  };

  const finished = (async (): Promise<LoadFigures> => {
    let refused = 0;
    for (let i = 0; i < options.jobs && Date.now() < deadline; i++) {
      await waitUntil(() => unfinished().length < options.inFlight);
      const id = await submit(`cluster-${started}-${i}`);
      if (id) accepted.push(id); else refused++;
    }
    await waitUntil(() => unfinished().length === 0);
    const seconds = (Date.now() - started) / 1000;
    const events = await terminalEvents();
    const done = accepted.filter((id) => status.get(id) === 'done');
    const endedIds = accepted.filter(ended);
    const duplicated = accepted.filter((id) => (events.get(id) ?? 0) > 1).length + [...idsByKey.values()].filter((ids) => ids.size > 1).length;
    // A job whose record ended without its terminal event would leave a WebSocket client waiting.
    const silent = endedIds.filter((id) => !events.has(id));
    if (silent.length) {
      const explained = await options.explainSilent?.(silent).catch((error) => `(could not explain: ${String(error)})`);
      throw new Error(`jobs ended without a terminal event: ${silent.join(', ')}${explained ? `\n${explained}` : ''}`);
    }
    return {
      submitted: accepted.length,
      completed: done.length,
      failed: endedIds.length - done.length,
      duplicated,
      lost: accepted.length - endedIds.length + refused,
      submitRetries,
      seconds,
    };
  })();
  return {
    done: () => doneCount,
    completionTimes,
    finished,
    statuses: () => new Map(accepted.map((id) => [id, `${status.get(id) ?? 'unknown'}${errors.has(id) ? ` (${errors.get(id)})` : ''}`])),
    submitting: () => submitting,
    async close() {
      closed = true;
      await watching.catch(() => undefined);
    },
  };
}

/** Resolves when `count()` reaches `target`; rejects after `timeoutMs` with how far it got. */
export async function waitForCount(count: () => number, target: number, what: string, timeoutMs: number): Promise<void> {
  await waitFor(() => count() >= target, what, timeoutMs, () => `${count()}/${target}`);
}
