/**
 * The WebSocket protocol on /ws (schemas/ws/*, docs/api.md): authenticate (upgrade header,
 * ?token= or a first `auth` message), submit jobs (binary frame: header + image, JSON with
 * base64, or a blobId), subscribe to jobs and receive their events as they happen, cancel.
 *
 * Subscribing replays a job's stored events from JetStream and then follows live ones (an
 * ordered consumer on photolab.events.<jobId>), so a client that reconnects and subscribes
 * again gets every event exactly once, in order. Each event frame carries `seq`, its stream
 * sequence; `subscribe` with `afterSeq` resumes after the last one the client saw.
 *
 * A slow reader never grows server memory without bound (outbox.ts): past WS_SOFT_BUFFER_BYTES
 * of unsent data progress events are dropped, past WS_HARD_BUFFER_BYTES the socket is closed
 * with 4008.
 */
import type { TemplatedApp, WebSocket } from 'uWebSockets.js';
import { DeliverPolicy, type ConsumerMessages } from '@nats-io/jetstream';
import { ownerHash } from '../../lib/bus/job-store.js';
import { isTerminalEvent } from '../../lib/shared/job-status.js';
import { STREAMS, subjects } from '../../lib/bus/subjects.js';
import { SHORT_PULLS } from '../../lib/bus/pulls.js';
import { isBusOutage, outageWaitMs } from '../../lib/bus/nats-errors.js';
import { AppError, appError, toAppError } from '../../lib/shared/errors.js';
import { toClientError } from '../client-error.js';
import type { JobEvent, JobRecord, Owner, WsClientMessage, WsServerMessage } from '../../lib/shared/schema-types.js';
import { schemaValidator, describeErrors } from '../../lib/shared/schemas.js';
import type { EdgeDeps } from '../deps.js';
import { bearerToken } from '../auth.js';
import { decodeBase64Image, parseJson, parseJsonBody } from '../http/body.js';
import { randomUUID } from 'node:crypto';
import { Outbox, type OutboxStats } from './outbox.js';
import { encodeFrame } from '../../lib/shared/ws-frame.js';
import { workBegins } from '../../lib/shared/idle-collection.js';

const validateClientMessage = schemaValidator<WsClientMessage>('ws/client-message.schema.json');
/** Droppable for a slow reader: live progress, and retries (a retry's outcome follows anyway). */
const PROGRESS_EVENTS = new Set<JobEvent['type']>(['job.accepted', 'step.started', 'step.retrying']);
const AUTH_TIMEOUT_MS = 10_000;
export const WS_CLOSE_SLOW_CONSUMER = 4008;
export const WS_CLOSE_UNAUTHORIZED = 4001;

interface Connection {
  owner?: Owner;
  token?: string;
  /** Followed jobs: `renew` replaces the event feed (after a reconnect). */
  subscriptions: Map<string, { close(): Promise<void>; renew(): Promise<void> }>;
  /** Jobs whose subscription is being set up: a second subscribe meanwhile must not open a second consumer. */
  subscribing: Set<string>;
  closed: boolean;
  authTimer?: NodeJS.Timeout;
}

export type GatewayDeps = EdgeDeps;

export interface GatewayStats extends OutboxStats {
  connections: number;
}

type Socket = WebSocket<Connection>;

export function mountWebSocket(app: TemplatedApp, deps: GatewayDeps): { stats(): GatewayStats; closeAll(): void } {
  const sockets = new Set<Socket>();
  /** The edge is stopping: feeds end with the connection and are not made again. */
  const busClosing = () => deps.bus.nc.isClosed() || deps.bus.nc.isDraining();
  /** Restorations so far: a feed that was being opened across one is renewed once it is open. */
  let restorations = 0;
  const renewLogged = (jobId: string, renew: () => Promise<void>) =>
    void renew().catch((error) => deps.log.warn({ err: error, jobId }, 'event feed not renewed; the ordered consumer recovers by itself'));
  // Once the bus is whole again after a reconnect, every followed job gets a fresh feed from its
  // last forwarded event (a restarted server lost the old ephemeral consumers).
  deps.bus.topology.onRestored(() => {
    restorations++;
    for (const ws of sockets) {
      for (const [jobId, sub] of ws.getUserData().subscriptions) renewLogged(jobId, sub.renew);
    }
  });
  const outbox = new Outbox<Connection>({
    softLimit: deps.config.wsSoftBufferBytes,
    hardLimit: deps.config.wsHardBufferBytes,
    closeCode: WS_CLOSE_SLOW_CONSUMER,
    log: deps.log,
  });

  app.ws<Connection>('/ws', {
    maxPayloadLength: deps.config.maxUploadBytes + 64 * 1024,
    // The outbox never sends past the hard limit, so uWS' own limit (which silently drops) is never reached.
    maxBackpressure: deps.config.wsHardBufferBytes * 2 + 1024 * 1024,
    idleTimeout: 120,
    sendPingsAutomatically: true,
    upgrade: (res, req, context) => {
      // An exception out of a uWS callback ends the process: refuse instead.
      try {
        const token = bearerToken(req.getHeader('authorization')) ?? (new URLSearchParams(req.getQuery() ?? '').get('token') || undefined);
        const key = req.getHeader('sec-websocket-key');
        const protocol = req.getHeader('sec-websocket-protocol');
        const extensions = req.getHeader('sec-websocket-extensions');
        res.upgrade<Connection>({ subscriptions: new Map(), subscribing: new Set(), closed: false, token }, key, protocol, extensions, context);
      } catch (error) {
        deps.log.warn({ err: error }, 'WebSocket upgrade refused');
        const refusal = appError('invalid_upgrade', 'the WebSocket upgrade could not be accepted');
        res.cork(() => res.writeStatus(`${refusal.status} Bad Request`).writeHeader('content-type', 'application/json; charset=utf-8')
          .end(JSON.stringify({ ...refusal.toInfo(), requestId: randomUUID() }), true));
      }
    },
    open: (ws) => {
      sockets.add(ws);
      const data = ws.getUserData();
      if (data.token) {
        const token = data.token;
        data.token = undefined;
        void authenticate(ws, token);
      } else {
        data.authTimer = setTimeout(() => {
          if (data.closed || data.owner) return;
          sendError(ws, appError('auth_required', `no token within ${AUTH_TIMEOUT_MS / 1000} s`));
          if (!data.closed) ws.end(WS_CLOSE_UNAUTHORIZED, 'auth_required');
        }, AUTH_TIMEOUT_MS);
      }
    },
    message: (ws, message, isBinary) => {
      // uWS reuses the message's memory after this callback returns: copy it.
      const copy = Buffer.from(new Uint8Array(message).slice());
      const workEnds = workBegins();
      void onMessage(ws, copy, isBinary).finally(workEnds).catch((error) => {
        const clientError = toClientError(error);
        if (clientError.status >= 500) deps.log.error({ err: error }, 'WebSocket message failed');
        sendError(ws, clientError, (error as { jobId?: string }).jobId);
      }).catch((error) => deps.log.error({ err: error }, 'WebSocket error could not be sent')); // last resort: never an unhandled rejection
    },
    close: (ws) => {
      sockets.delete(ws);
      const data = ws.getUserData();
      data.closed = true;
      clearTimeout(data.authTimer);
      for (const sub of data.subscriptions.values()) void sub.close().catch(() => undefined);
      data.subscriptions.clear();
    },
  });

  async function authenticate(ws: Socket, token: string): Promise<boolean> {
    const data = ws.getUserData();
    try {
      const owner = await deps.auth.verify(token);
      data.owner = owner;
      clearTimeout(data.authTimer);
      send(ws, { type: 'ready', sub: owner.sub });
      return true;
    } catch (error) {
      const failure = toAppError(error);
      sendError(ws, failure);
      if (!data.closed) ws.end(WS_CLOSE_UNAUTHORIZED, failure.code);
      return false;
    }
  }

  async function onMessage(ws: Socket, raw: Buffer, isBinary: boolean): Promise<void> {
    const data = ws.getUserData();
    let message: unknown;
    let image: Buffer | undefined;
    if (isBinary) {
      // 4-byte big-endian header length, JSON header, image bytes.
      if (raw.length < 4) throw appError('invalid_frame', 'binary frame too short');
      const headerLength = raw.readUInt32BE(0);
      if (headerLength > 64 * 1024 || 4 + headerLength > raw.length) throw appError('invalid_frame', 'binary frame header length is wrong');
      message = parseJson(raw.subarray(4, 4 + headerLength).toString('utf8'), deps.config, 'the frame header');
      image = raw.subarray(4 + headerLength);
    } else {
      // The same size and depth limits as an HTTP JSON body that may carry a base64 image.
      message = parseJsonBody(raw, deps.config, true);
    }
    if (!validateClientMessage(message)) {
      const issues = describeErrors(validateClientMessage.errors);
      throw appError('invalid_message', `message is invalid: ${issues[0]?.path} ${issues[0]?.message}`, { details: issues });
    }
    const msg = message as WsClientMessage;
    if (msg.type === 'auth') {
      await authenticate(ws, msg.token);
      return;
    }
    if (!data.owner) throw appError('auth_required', 'send {"type":"auth","token":...} first (or connect with ?token= or an Authorization header)');
    const owner = data.owner;
    switch (msg.type) {
      case 'submit': {
        deps.rateLimiter.take(ownerHash(owner));
        let bytes = image && image.length > 0 ? image : msg.image ? decodeBase64Image(msg.image) : undefined;
        let input;
        if (!bytes && msg.blobId) ({ bytes, ref: input } = await deps.blobs.read(owner, msg.blobId));
        if (!bytes && !msg.originalSha256) throw appError('image_required', 'send the image in a binary frame after the JSON header, as base64 "image", as "blobId", or with a caseId as "originalSha256"');
        // Live progress is not stored: listen before the first step can start.
        let progress: ProgressFeed | undefined;
        const { job, created } = await deps.jobs.submit(owner, {
          pipeline: msg.pipeline, image: bytes, input, deadlineMs: msg.deadlineMs, idempotencyKey: msg.idempotencyKey,
          ...(msg.caseId ? { caseId: msg.caseId } : {}), ...(msg.originalSha256 ? { originalSha256: msg.originalSha256 } : {}),
          beforeStart: async (created) => {
            progress = openProgress(created.jobId);
            await deps.bus.nc.flush();
          },
        }).catch((error: unknown) => {
          progress?.close(); // a submission refused after its feed opened leaves no subscription behind
          throw error;
        });
        send(ws, { type: 'submitted', jobId: job.jobId, ...(msg.clientRef ? { clientRef: msg.clientRef } : {}), ...(created ? {} : { idempotent: true as const }) });
        // Should following fail now, the client hears which job it was about (it can subscribe again).
        await withJobId(job.jobId, () => subscribe(ws, job, msg.result ?? 'url', 0, progress));
        return;
      }
      case 'subscribe': {
        const job = await withJobId(msg.jobId, () => deps.jobs.get(owner, msg.jobId)); // 404 unless the caller owns it
        await withJobId(msg.jobId, () => subscribe(ws, job, msg.result ?? 'url', msg.afterSeq ?? 0));
        return;
      }
      case 'unsubscribe':
        await data.subscriptions.get(msg.jobId)?.close();
        data.subscriptions.delete(msg.jobId);
        send(ws, { type: 'unsubscribed', jobId: msg.jobId });
        return;
      case 'cancel': {
        const job = await withJobId(msg.jobId, () => deps.jobs.cancel(owner, msg.jobId));
        send(ws, { type: 'canceled', jobId: job.jobId });
        return;
      }
    }
  }

  /**
   * Follows a job for this client: job.accepted (from the record, as the record is that fact),
   * live progress (core NATS: step.started), and the job's stored facts from the beginning
   * (ordered consumer on photolab.events.<jobId>.*: every step fact and the end, exactly once
   * and in order, also after a reconnect).
   */
  /** A job's live progress, held until the client's feed is ready for it. */
  interface ProgressFeed {
    attach(forward: (event: JobEvent) => void): void;
    close(): void;
  }

  function openProgress(jobId: string): ProgressFeed {
    const held: JobEvent[] = [];
    let target: ((event: JobEvent) => void) | undefined;
    const sub = deps.bus.nc.subscribe(subjects.progressEvents(jobId), {
      callback: (error, m) => {
        if (error) return;
        try {
          const event = m.json<JobEvent>();
          // job.accepted comes from the record (subscribe), whenever the client attaches.
          if (event.type === 'job.accepted') return;
          if (target) target(event);
          else held.push(event);
        } catch {
          // not an event: nothing to forward
        }
      },
    });
    return {
      attach(forward) {
        target = forward;
        for (const event of held.splice(0)) forward(event);
      },
      close: () => sub.unsubscribe(),
    };
  }

  async function subscribe(ws: Socket, job: JobRecord, resultMode: 'url' | 'binary', afterSeq: number, opened?: ProgressFeed): Promise<void> {
    const data = ws.getUserData();
    const jobId = job.jobId;
    if (data.subscriptions.has(jobId) || data.subscribing.has(jobId) || data.closed) {
      opened?.close();
      return;
    }
    data.subscribing.add(jobId);
    try {
      await follow(ws, job, resultMode, afterSeq, opened ?? openProgress(jobId));
    } finally {
      data.subscribing.delete(jobId);
    }
  }

  async function follow(ws: Socket, job: JobRecord, resultMode: 'url' | 'binary', afterSeq: number, progress: ProgressFeed): Promise<void> {
    const data = ws.getUserData();
    const jobId = job.jobId;
    const since = Date.now();
    // Stored facts carry their stream sequence (`seq`): a client that reconnects (or outlives an
    // edge restart) resumes after the last one it saw with afterSeq, receiving nothing twice.
    const forward = (event: JobEvent, live: boolean, seq?: number) => {
      const message: WsServerMessage = { type: 'event', event, ...(seq !== undefined ? { seq } : {}), ...(!live && event.at < since ? { replayed: true } : {}) };
      return outbox.sendText(ws, JSON.stringify(message), PROGRESS_EVENTS.has(event.type) ? 'droppable' : 'essential');
    };
    /** The last stored event forwarded: a renewed feed starts after it, and skips what an old one overlapped. */
    let lastSeq = afterSeq;
    let feed: ConsumerMessages | undefined;
    let over = false;
    /** The terminal event was forwarded: nothing follows, and no feed is renewed. */
    let terminal = false;
    const openFeed = async (): Promise<ConsumerMessages> => {
      const consumer = await deps.bus.js.consumers.get(STREAMS.events, {
        filter_subjects: subjects.jobEvents(jobId),
        ...(lastSeq > 0 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: lastSeq + 1 } : {}),
      });
      return consumer.consume(SHORT_PULLS);
    };
    /**
     * The client was told `submitted` (or asked to follow): a bus that is away for a moment
     * delays its events rather than leaving it without any. Before, a feed opened just as
     * nats-server died failed, and the error the client got named no job.
     */
    const openFeedWhileBusAway = async (): Promise<ConsumerMessages> => {
      for (let tries = 0; ; tries++) {
        try {
          return await openFeed();
        } catch (error) {
          if (!isBusOutage(error) || data.closed || busClosing() || Date.now() > job.deadline) throw error;
          deps.log.warn({ err: error, jobId, tries: tries + 1 }, 'event feed not opened: the bus is away; trying again');
          await new Promise((resolve) => setTimeout(resolve, outageWaitMs(tries)));
        }
      }
    };
    const close = async () => {
      over = true;
      progress.close();
      await feed?.close().catch(() => undefined);
    };
    const pump = async (messages: ConsumerMessages) => {
      try {
        for await (const m of messages) {
          if (data.closed || over) break;
          if (m.seq <= lastSeq) continue;
          lastSeq = m.seq;
          const event = m.json<JobEvent>();
          if (forward(event, false, m.seq) === 'closed') break;
          if (isTerminalEvent(event.type)) {
            terminal = true;
            if (event.type === 'job.done') await sendResult(ws, jobId, resultMode, event);
            break;
          }
        }
      } catch (error) {
        deps.log.warn({ err: error, jobId }, 'event forwarding stopped');
      }
      if (!terminal && feed !== messages) {
        await messages.close().catch(() => undefined); // replaced by renew(): the new feed carries on
        return;
      }
      if (!terminal && !over && !data.closed && !busClosing() && Date.now() < job.deadline) {
        // The feed gave up by itself (the client library stops an ordered consumer it cannot
        // make again): the client is still owed the job's end, so a new feed follows on.
        await messages.close().catch(() => undefined);
        await new Promise((resolve) => setTimeout(resolve, 1000));
        renewLogged(jobId, renew);
        return;
      }
      await close();
      if (data.subscriptions.get(jobId)?.close === close) data.subscriptions.delete(jobId);
    };
    /**
     * A new feed from the last event forwarded, then the old one closed: after a reconnect the old
     * ordered consumer would notice the lost server only after two missed heartbeats (5 s).
     */
    let renewing: Promise<void> | undefined;
    const renew = (): Promise<void> => (renewing ??= replaceFeed().finally(() => (renewing = undefined)));
    const replaceFeed = async () => {
      if (over || terminal || data.closed) return;
      const old = feed;
      const messages = await openFeedWhileBusAway();
      if (over || terminal || data.closed) {
        await messages.close().catch(() => undefined);
        return;
      }
      feed = messages;
      await old?.close().catch(() => undefined);
      void pump(messages);
    };
    const restorationsBefore = restorations;
    feed = await openFeedWhileBusAway();
    if (data.closed) {
      await close();
      return;
    }
    data.subscriptions.set(jobId, { close, renew });
    // The bus came back while the feed was being opened: it may be on the old connection's consumer.
    if (restorations !== restorationsBefore) renewLogged(jobId, renew);
    send(ws, { type: 'subscribed', jobId });
    // A resuming client saw job.accepted already.
    if (afterSeq === 0) forward({ type: 'job.accepted', jobId, at: job.createdAt, steps: job.pipeline.length }, false);
    progress.attach((event) => {
      if (!data.closed) forward(event, true);
    });
    void pump(feed);
  }

  /** The end of a done job: the image as a binary frame, or where to fetch it. */
  async function sendResult(ws: Socket, jobId: string, mode: 'url' | 'binary', event: JobEvent): Promise<void> {
    const data = ws.getUserData();
    const result = event.result;
    const image = result?.image;
    if (mode === 'binary' && image && data.owner) {
      const { bytes, contentType } = await deps.jobs.result(data.owner, jobId);
      if (!bytes || data.closed) return;
      outbox.sendBinary(ws, encodeFrame({ type: 'result', jobId, contentType, bytes: bytes.length, sha256: image.sha256 }, bytes));
      return;
    }
    const message: WsServerMessage = { type: 'result', jobId, findings: result?.findings ?? {} };
    if (image) Object.assign(message, { url: `/api/jobs/${jobId}/result`, contentType: image.contentType, bytes: image.bytes, sha256: image.sha256 });
    outbox.sendText(ws, JSON.stringify(message), 'essential');
  }

  function send(ws: Socket, message: WsServerMessage): void {
    outbox.sendText(ws, JSON.stringify(message), 'essential');
  }

  function sendError(ws: Socket, error: AppError, jobId?: string): void {
    const message: WsServerMessage = { type: 'error', code: error.code, message: error.message, status: error.status };
    if (jobId) message.jobId = jobId;
    if (error.details !== undefined) message.details = error.details;
    send(ws, message);
  }

  return {
    stats: () => ({ connections: sockets.size, ...outbox.stats([...sockets]) }),
    closeAll() {
      for (const ws of [...sockets]) if (!ws.getUserData().closed) ws.end(1001, 'server shutting down');
    },
  };
}

/** Errors about one job carry its id, so a client with many jobs knows which failed. */
async function withJobId<T>(jobId: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error && typeof error === 'object') Object.assign(error, { jobId });
    throw error;
  }
}
