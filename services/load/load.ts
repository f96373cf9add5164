/**
 * A bounded load generator for the edge (`npm run load`, also the engine of the reliability
 * suite). It submits `jobs` jobs from `concurrency` slots (each slot one caller's WebSocket,
 * callers spread over `callers` distinct tokens), over HTTP (POST /api/jobs multipart, then a
 * WebSocket subscribe) or over the WebSocket itself (binary submit frame), and follows every
 * job to its terminal event and result.
 *
 * What it counts is what a client would see: completed, failed by error code, refused (429 and
 * 503 with or without Retry-After; retried after Retry-After when `retryRefused`), duplicated
 * (a second terminal event or result, or an event at or below a seq already seen), lost (not
 * terminal before the deadline). A slot whose socket drops (edge restart) reconnects and
 * re-subscribes each of its jobs with afterSeq, so an edge restart costs nothing but time.
 * HTTP submissions carry an Idempotency-Key, so one retried after a connection failure cannot
 * become two jobs.
 *
 * Bounded by count and time; loopback only unless `allowRemote`.
 */
import { randomUUID } from 'node:crypto';
import { signDevToken } from '../lib/shared/dev-token.js';
import { encodeFrame } from '../lib/shared/ws-frame.js';
import { isLoopbackHost } from '../edge/anonymous.js';
import WebSocket from 'ws';
import { isTerminalEvent } from '../lib/shared/job-status.js';

export interface LoadOptions {
  url: string;
  mode: 'http' | 'ws';
  jobs: number;
  concurrency: number;
  /** Distinct callers (token subjects) the slots are spread over. */
  callers: number;
  pipeline: unknown;
  image: Buffer;
  /** A fixed token for every caller, or a secret to mint one per caller (HS256). */
  token?: string;
  jwtSecret?: string;
  /** Whole run: jobs not terminal by then are lost. */
  timeoutMs: number;
  /** Wait Retry-After and submit again when refused with 429/503 (otherwise a refusal ends that job). */
  retryRefused: boolean;
  allowRemote?: boolean;
  /**
   * Open loop: a slot submits its next job as soon as the last one is admitted, without waiting
   * for it to end (a burst); closed loop (default): at most `concurrency` jobs in flight.
   */
  openLoop?: boolean;
  /** Called with each refusal, failure and reconnect (the CLI prints nothing per job). */
  onNote?: (note: string) => void;
  /** Called when a job ends (done with its result, or another terminal event). */
  onEnd?: (jobId: string, outcome: string) => void;
}

export interface LoadReport {
  mode: string;
  submitted: number;
  admitted: number;
  completed: number;
  failed: Record<string, number>;
  refused: Record<string, number>;
  refusedWithoutRetryAfter: number;
  duplicated: number;
  lost: number;
  reconnects: number;
  submitRetries: number;
  wallS: number;
  throughputPerS: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number; mean: number };
}

interface Tracked {
  jobId?: string;
  startedAt: number;
  lastSeq: number;
  /** The seq before the last one seen: where to resume when job.done came but its result did not. */
  prevSeq: number;
  terminal: number;
  results: number;
  outcome?: 'done' | string;
  endedAt?: number;
  resolve?: () => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runLoad(options: LoadOptions): Promise<LoadReport> {
  const base = new URL(options.url);
  if (!options.allowRemote && !isLoopbackHost(base.hostname)) throw new Error(`${base.hostname} is not a loopback address (use --allow-remote to load another host)`);
  if (!(options.jobs > 0 && options.concurrency > 0 && options.callers > 0)) throw new Error('jobs, concurrency and callers must be positive');
  const started = Date.now();
  const deadline = started + options.timeoutMs;
  const tokens = await Promise.all(Array.from({ length: Math.min(options.callers, options.concurrency) }, (_, i) => tokenFor(options, `load-${i}`)));
  const report: LoadReport = {
    mode: options.mode, submitted: 0, admitted: 0, completed: 0, failed: {}, refused: {}, refusedWithoutRetryAfter: 0,
    duplicated: 0, lost: 0, reconnects: 0, submitRetries: 0, wallS: 0, throughputPerS: 0, latencyMs: { p50: 0, p90: 0, p99: 0, max: 0, mean: 0 },
  };
  const all: Tracked[] = [];
  let next = 0;
  const bump = (map: Record<string, number>, key: string) => { map[key] = (map[key] ?? 0) + 1; };
  const note = (text: string) => options.onNote?.(text);
  /** Events at or below a seq already seen (a resume that replayed something twice). */
  const counters = { duplicateEvents: 0 };

  async function slot(index: number): Promise<void> {
    const token = tokens[index % tokens.length]!;
    const inFlight: Tracked[] = [];
    const socket = new SlotSocket(base, token, deadline, () => report.reconnects++, note, counters);
    try {
      while (next < options.jobs && Date.now() < deadline) {
        next++;
        const job: Tracked = { startedAt: Date.now(), lastSeq: 0, prevSeq: 0, terminal: 0, results: 0 };
        all.push(job);
        report.submitted++;
        const admitted = await submitWithRetries(socket, token, job);
        if (!admitted) continue;
        report.admitted++;
        if (options.openLoop) {
          inFlight.push(job);
          continue;
        }
        // Until the job ends or the run's deadline (the timer is cleared so it cannot keep the process alive).
        await untilEnded(job);
      }
      // Open loop: every admitted job is still followed to its end (or the deadline).
      for (const job of inFlight.splice(0)) await untilEnded(job);
    } finally {
      socket.close();
    }
  }

  function untilEnded(job: Tracked): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    return new Promise<void>((resolve) => {
      job.resolve = resolve;
      if (job.endedAt) resolve();
      timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
    }).finally(() => clearTimeout(timer));
  }

  /** Submits until admitted, refused for good, or out of time. */
  async function submitWithRetries(socket: SlotSocket, token: string, job: Tracked): Promise<boolean> {
    const idempotencyKey = randomUUID();
    while (Date.now() < deadline) {
      let answer: { status: number; code: string; retryAfterS?: number; jobId?: string };
      try {
        answer = options.mode === 'http' ? await submitHttp(base, token, options, idempotencyKey) : await socket.submit(options, idempotencyKey);
      } catch (error) {
        report.submitRetries++; // the edge is away (restart): try again shortly
        note(`submit failed: ${(error as Error).message}`);
        await sleep(250);
        continue;
      }
      if (answer.jobId) {
        job.jobId = answer.jobId;
        socket.follow(job, (j) => onEvent(j));
        return true;
      }
      if (answer.status === 409 && answer.code === 'idempotency_key_in_use') {
        // The first try of this very submission is still being processed (its answer was lost): ask again.
        await sleep((answer.retryAfterS ?? 1) * 1000);
        continue;
      }
      bump(report.refused, `${answer.status} ${answer.code}`);
      if (answer.status === 429 || answer.status === 503) {
        if (answer.retryAfterS === undefined) report.refusedWithoutRetryAfter++;
        if (options.retryRefused) {
          await sleep(Math.min(10, answer.retryAfterS ?? 1) * 1000);
          continue;
        }
      }
      note(`refused: ${answer.status} ${answer.code}`);
      return false;
    }
    return false;
  }

  function onEvent(job: Tracked): void {
    if (job.endedAt || job.terminal === 0) return;
    if (job.outcome === 'done' && job.results === 0) return; // done: wait for the result
    job.endedAt = Date.now();
    options.onEnd?.(job.jobId!, job.outcome ?? 'unknown');
    job.resolve?.();
  }

  await Promise.all(Array.from({ length: Math.min(options.concurrency, options.jobs) }, (_, i) => slot(i)));
  const latencies: number[] = [];
  for (const job of all) {
    if (!job.jobId) continue;
    if (job.terminal > 1 || job.results > 1) report.duplicated++;
    if (!job.endedAt) {
      report.lost++;
      continue;
    }
    if (job.outcome === 'done') {
      report.completed++;
      latencies.push(job.endedAt - job.startedAt);
    } else bump(report.failed, job.outcome ?? 'unknown');
  }
  report.duplicated += counters.duplicateEvents;
  report.wallS = (Date.now() - started) / 1000;
  report.throughputPerS = report.completed / report.wallS;
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]! : 0;
  report.latencyMs = { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: latencies.at(-1) ?? 0, mean: latencies.length ? Math.round(latencies.reduce((a, b) => a + b, 0) / latencies.length) : 0 };
  return report;
}


async function tokenFor(options: LoadOptions, sub: string): Promise<string> {
  if (options.token) return options.token;
  if (!options.jwtSecret) throw new Error('give --token or JWT_SECRET');
  return signDevToken(options.jwtSecret, { sub, ttlS: 6 * 3600 });
}

async function submitHttp(base: URL, token: string, options: LoadOptions, idempotencyKey: string): Promise<{ status: number; code: string; retryAfterS?: number; jobId?: string }> {
  const form = new FormData();
  form.set('file', new Blob([new Uint8Array(options.image)]), 'image.jpg');
  form.set('pipeline', JSON.stringify(options.pipeline));
  const response = await fetch(new URL('/api/jobs', base), { method: 'POST', body: form, headers: { authorization: `Bearer ${token}`, 'idempotency-key': idempotencyKey } });
  const body = await response.json().catch(() => ({})) as { jobId?: string; code?: string };
  const retryAfter = response.headers.get('retry-after');
  if (response.status === 202 || response.status === 200) return { status: response.status, code: 'ok', jobId: body.jobId };
  return { status: response.status, code: body.code ?? 'unknown', retryAfterS: retryAfter === null ? undefined : Number(retryAfter) };
}

/**
 * One slot's WebSocket: reconnects when it drops and re-subscribes its unfinished jobs with
 * afterSeq; routes events and results to their jobs.
 */
class SlotSocket {
  private ws?: WebSocket;
  private opening?: Promise<WebSocket>;
  private readonly jobs = new Map<string, { job: Tracked; changed: (job: Tracked) => void }>();
  private pendingSubmit?: { resolve: (a: { status: number; code: string; retryAfterS?: number; jobId?: string }) => void; reject: (e: Error) => void; ref: string };
  private closing = false;
  private everConnected = false;

  constructor(private readonly base: URL, private readonly token: string, private readonly deadline: number, private readonly onReconnect: () => void, private readonly note: (s: string) => void, private readonly counters: { duplicateEvents: number }) {}

  async open(): Promise<WebSocket> {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) return this.ws;
    this.opening ??= this.connect().finally(() => { this.opening = undefined; });
    return this.opening;
  }

  private async connect(): Promise<WebSocket> {
    const url = new URL('/ws', this.base);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    for (let attempt = 0; ; attempt++) {
      if (Date.now() > this.deadline) throw new Error('out of time connecting');
      try {
        const ws = await new Promise<WebSocket>((resolve, reject) => {
          const socket = new WebSocket(url, { headers: { authorization: `Bearer ${this.token}` } });
          socket.once('error', reject);
          socket.on('message', (data, isBinary) => {
            if (isBinary) return;
            const message = JSON.parse(data.toString());
            if (message.type === 'ready') resolve(socket);
            else this.onMessage(message);
          });
        });
        ws.on('close', () => this.onClose(ws));
        ws.on('error', () => undefined);
        this.ws = ws;
        this.subscribed = new Set();
        const reconnect = this.everConnected;
        this.everConnected = true;
        if (reconnect) {
          this.onReconnect();
          this.note(`reconnected; re-subscribing ${[...this.jobs.values()].filter((j) => !j.job.endedAt).length} jobs`);
          for (const { job } of this.jobs.values()) if (!job.endedAt) this.subscribe(ws, job);
        }
        return ws;
      } catch {
        await sleep(Math.min(1000, 100 * 2 ** attempt));
      }
    }
  }

  private onClose(ws: WebSocket): void {
    if (this.ws === ws) this.ws = undefined;
    this.pendingSubmit?.reject(new Error('socket closed before the submit was answered'));
    this.pendingSubmit = undefined;
    if (this.closing) return;
    if ([...this.jobs.values()].some((j) => !j.job.endedAt)) void this.open().catch(() => undefined);
  }

  /** Jobs subscribed on the current socket: a job is subscribed once per connection. */
  private subscribed = new Set<string>();

  private subscribe(ws: WebSocket, job: Tracked): void {
    if (ws !== this.ws || this.subscribed.has(job.jobId!)) return;
    this.subscribed.add(job.jobId!);
    // A job whose done event came without its result resumes before that event.
    const afterSeq = job.outcome === 'done' && job.results === 0 ? job.prevSeq : job.lastSeq;
    ws.send(JSON.stringify({ type: 'subscribe', jobId: job.jobId, ...(afterSeq > 0 ? { afterSeq } : {}) }));
  }

  async submit(options: LoadOptions, ref: string): Promise<{ status: number; code: string; retryAfterS?: number; jobId?: string }> {
    const ws = await this.open();
    return new Promise((resolve, reject) => {
      this.pendingSubmit = { resolve, reject, ref };
      // The ref is also the idempotency key: a submit sent again after a dropped connection gets the same job.
      ws.send(encodeFrame({ type: 'submit', pipeline: options.pipeline, clientRef: ref, idempotencyKey: ref }, options.image));
    });
  }

  /** Starts routing a job's events (HTTP mode also subscribes; a WS submit is subscribed already). */
  follow(job: Tracked, changed: (job: Tracked) => void): void {
    this.jobs.set(job.jobId!, { job, changed });
    if (!this.pendingSubmitFor(job)) void this.open().then((ws) => this.subscribe(ws, job)).catch(() => undefined);
  }

  private submittedViaWs = new Set<string>();
  private pendingSubmitFor(job: Tracked): boolean {
    return this.submittedViaWs.delete(job.jobId!);
  }

  private onMessage(message: any): void {
    if (message.type === 'submitted' && this.pendingSubmit?.ref === message.clientRef) {
      this.submittedViaWs.add(message.jobId);
      this.subscribed.add(message.jobId); // a WebSocket submit subscribes the connection
      this.pendingSubmit!.resolve({ status: 202, code: 'ok', jobId: message.jobId });
      this.pendingSubmit = undefined;
      return;
    }
    if (message.type === 'error' && this.pendingSubmit && !message.jobId) {
      this.pendingSubmit.resolve({ status: message.status ?? 400, code: message.code, retryAfterS: message.details?.retryAfterS });
      this.pendingSubmit = undefined;
      return;
    }
    const jobId = message.jobId ?? message.event?.jobId;
    const entry = jobId ? this.jobs.get(jobId) : undefined;
    if (!entry) return;
    const { job } = entry;
    if (message.type === 'event') {
      if (typeof message.seq === 'number') {
        if (message.seq > job.lastSeq) {
          job.prevSeq = job.lastSeq;
          job.lastSeq = message.seq;
        } else if (!(job.outcome === 'done' && job.results === 0 && message.seq === job.lastSeq)) {
          this.counters.duplicateEvents++;
        }
      }
      if (isTerminalEvent(message.event.type)) {
        // A done event seen again because we resumed before it (its result never came) is not a duplicate.
        if (!(job.outcome === 'done' && job.results === 0 && message.event.type === 'job.done')) job.terminal++;
        job.outcome = message.event.type === 'job.done' ? 'done' : message.event.error?.code ?? message.event.type;
      }
    } else if (message.type === 'result') {
      job.results++;
    } else if (message.type === 'error') {
      this.note(`error about ${jobId}: ${message.code}`);
      // Subscribing again after a refusal (for example the edge still starting) is up to the next reconnect.
    }
    entry.changed(job);
  }

  close(): void {
    this.closing = true;
    this.ws?.close();
  }
}
