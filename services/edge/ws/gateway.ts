/**
 * The WebSocket protocol on /ws (schemas/ws/*): authenticate (upgrade header, ?token= or a
 * first `auth` message), submit jobs (binary frame: header + image, or JSON), subscribe to
 * jobs and receive their events as they happen, cancel.
 *
 * Subscribing replays a job's stored events from JetStream and then follows live ones
 * (an ordered consumer on photolab.events.<jobId>), so a client that reconnects misses nothing.
 * A slow reader never grows server memory without bound: past a soft limit progress events
 * are dropped, past a hard limit the socket is closed with code 4008.
 */
import type { TemplatedApp, WebSocket } from 'uWebSockets.js';
import type { ConsumerMessages } from '@nats-io/jetstream';
import type { Bus } from '../../bus/bus.js';
import { STREAMS, subjects } from '../../bus/subjects.js';
import type { Config } from '../../shared/config.js';
import { AppError, toAppError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { JobEvent, Owner, WsClientMessage, WsServerMessage } from '../../shared/schema-types.js';
import { schemaValidator, describeErrors } from '../../shared/schemas.js';
import { bearerToken, type Authenticator } from '../auth.js';
import type { JobsService } from '../jobs.js';
import { decodeBase64Image } from '../http/api.js';

const validateClientMessage = schemaValidator<WsClientMessage>('ws/client-message.schema.json');
const SOFT_BUFFER_LIMIT = 1 * 1024 * 1024;
const HARD_BUFFER_LIMIT = 64 * 1024 * 1024;
const PROGRESS_EVENTS = new Set<JobEvent['type']>(['step.started', 'step.retrying']);
const TERMINAL_EVENTS = new Set<JobEvent['type']>(['job.done', 'job.failed', 'job.canceled', 'job.timeout']);
export const WS_CLOSE_SLOW_CONSUMER = 4008;
export const WS_CLOSE_UNAUTHORIZED = 4001;

interface Connection {
  owner?: Owner;
  subscriptions: Map<string, ConsumerMessages>;
  closed: boolean;
  dropped: number;
}

export interface GatewayDeps {
  bus: Bus;
  jobs: JobsService;
  auth: Authenticator;
  config: Config;
  log: Logger;
}

export function mountWebSocket(app: TemplatedApp, deps: GatewayDeps): { connections(): number } {
  let open = 0;
  app.ws<Connection & { token?: string }>('/ws', {
    maxPayloadLength: deps.config.maxUploadBytes + 64 * 1024,
    maxBackpressure: HARD_BUFFER_LIMIT,
    idleTimeout: 120,
    sendPingsAutomatically: true,
    upgrade: (res, req, context) => {
      const token = bearerToken(req.getHeader('authorization')) ?? (new URLSearchParams(req.getQuery() ?? '').get('token') || undefined);
      const key = req.getHeader('sec-websocket-key');
      const protocol = req.getHeader('sec-websocket-protocol');
      const extensions = req.getHeader('sec-websocket-extensions');
      res.upgrade({ subscriptions: new Map(), closed: false, dropped: 0, token }, key, protocol, extensions, context);
    },
    open: (ws) => {
      open++;
      const data = ws.getUserData();
      if (data.token) {
        const token = data.token;
        data.token = undefined;
        void authenticate(ws, token);
      }
    },
    message: (ws, message, isBinary) => {
      const copy = Buffer.from(new Uint8Array(message).slice());
      void onMessage(ws, copy, isBinary).catch((error) => sendError(ws, toAppError(error)));
    },
    close: (ws) => {
      open--;
      const data = ws.getUserData();
      data.closed = true;
      for (const sub of data.subscriptions.values()) void sub.close().catch(() => undefined);
      data.subscriptions.clear();
    },
  });

  async function authenticate(ws: WebSocket<Connection>, token: string): Promise<boolean> {
    try {
      const owner = await deps.auth.verify(token);
      ws.getUserData().owner = owner;
      send(ws, { type: 'ready', sub: owner.sub });
      return true;
    } catch (error) {
      const appError = toAppError(error);
      sendError(ws, appError);
      if (!ws.getUserData().closed) ws.end(WS_CLOSE_UNAUTHORIZED, appError.code);
      return false;
    }
  }

  async function onMessage(ws: WebSocket<Connection>, raw: Buffer, isBinary: boolean): Promise<void> {
    const data = ws.getUserData();
    let message: unknown;
    let image: Buffer | undefined;
    if (isBinary) {
      // 4-byte big-endian header length, JSON header, image bytes.
      if (raw.length < 4) throw new AppError(400, 'invalid_frame', 'binary frame too short');
      const headerLength = raw.readUInt32BE(0);
      if (headerLength > 64 * 1024 || 4 + headerLength > raw.length) throw new AppError(400, 'invalid_frame', 'binary frame header length is wrong');
      message = parse(raw.subarray(4, 4 + headerLength).toString('utf8'));
      image = raw.subarray(4 + headerLength);
    } else {
      message = parse(raw.toString('utf8'));
    }
    if (!validateClientMessage(message)) {
      const issues = describeErrors(validateClientMessage.errors);
      throw new AppError(400, 'invalid_message', `message is invalid: ${issues[0]?.path} ${issues[0]?.message}`, { details: issues });
    }
    const msg = message as WsClientMessage;
    if (msg.type === 'auth') {
      await authenticate(ws, msg.token);
      return;
    }
    if (!data.owner) throw new AppError(401, 'auth_required', 'send {"type":"auth","token":...} first (or connect with ?token= or an Authorization header)');
    switch (msg.type) {
      case 'submit': {
        const bytes = image ?? (msg.image ? decodeBase64Image(msg.image) : undefined);
        if (!bytes) throw new AppError(400, 'image_required', 'send the image in a binary frame after the JSON header, or as base64 "image"');
        const { job } = await deps.jobs.submit(data.owner, { pipeline: msg.pipeline, image: bytes, deadlineMs: msg.deadlineMs });
        send(ws, { type: 'submitted', jobId: job.jobId, ...(msg.clientRef ? { clientRef: msg.clientRef } : {}) });
        await subscribe(ws, job.jobId, msg.result ?? 'url');
        return;
      }
      case 'subscribe':
        await deps.jobs.get(data.owner, msg.jobId); // 404 unless the caller owns it
        await subscribe(ws, msg.jobId, msg.result ?? 'url');
        return;
      case 'unsubscribe':
        await data.subscriptions.get(msg.jobId)?.close();
        data.subscriptions.delete(msg.jobId);
        send(ws, { type: 'unsubscribed', jobId: msg.jobId });
        return;
      case 'cancel':
        await deps.jobs.cancel(data.owner, msg.jobId);
        return;
    }
  }

  async function subscribe(ws: WebSocket<Connection>, jobId: string, resultMode: 'url' | 'binary'): Promise<void> {
    const data = ws.getUserData();
    if (data.subscriptions.has(jobId) || data.closed) return;
    const since = Date.now();
    const consumer = await deps.bus.js.consumers.get(STREAMS.events, { filter_subjects: subjects.events(jobId) });
    const messages = await consumer.consume();
    data.subscriptions.set(jobId, messages);
    void (async () => {
      for await (const m of messages) {
        if (data.closed) break;
        const event = m.json<JobEvent>();
        const buffered = ws.getBufferedAmount();
        if (buffered > HARD_BUFFER_LIMIT) {
          ws.end(WS_CLOSE_SLOW_CONSUMER, 'slow consumer: too much unread data');
          break;
        }
        if (buffered > SOFT_BUFFER_LIMIT && PROGRESS_EVENTS.has(event.type)) {
          data.dropped++;
          continue;
        }
        send(ws, { type: 'event', event, ...(event.at < since ? { replayed: true } : {}) });
        if (TERMINAL_EVENTS.has(event.type)) {
          if (event.type === 'job.done' && resultMode === 'binary' && event.result?.image) await sendResult(ws, jobId);
          break;
        }
      }
      await messages.close().catch(() => undefined);
      data.subscriptions.delete(jobId);
    })().catch((error) => deps.log.warn({ err: error, jobId }, 'event forwarding stopped'));
  }

  async function sendResult(ws: WebSocket<Connection>, jobId: string): Promise<void> {
    const data = ws.getUserData();
    const { bytes, contentType } = await deps.jobs.result(data.owner!, jobId);
    if (!bytes || data.closed) return;
    const header = Buffer.from(JSON.stringify({ type: 'result', jobId, contentType, bytes: bytes.length }));
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(header.length);
    ws.send(Buffer.concat([prefix, header, bytes]), true);
  }

  return { connections: () => open };
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new AppError(400, 'invalid_json', 'message is not valid JSON');
  }
}

function send(ws: WebSocket<Connection>, message: WsServerMessage): void {
  if (ws.getUserData().closed) return;
  ws.send(JSON.stringify(message), false);
}

function sendError(ws: WebSocket<Connection>, error: AppError): void {
  const message: WsServerMessage = { type: 'error', code: error.code, message: error.message };
  if (error.details !== undefined) message.details = error.details;
  send(ws, message);
}
