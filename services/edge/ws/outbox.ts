/**
 * Sending to a WebSocket whose reader may be slow. uWS keeps what the kernel does not take
 * (getBufferedAmount); without a limit a client that stops reading would grow that buffer
 * with every event and result. Policy, checked before every send:
 *   - past the soft limit, droppable messages (progress: step.started, step.retrying) are
 *     dropped and counted; everything else still goes;
 *   - past the hard limit (or when a message would take a non-empty buffer past it), the
 *     socket is closed with 4008 and nothing more is queued for it.
 * A single message larger than the hard limit still goes to a socket with an empty buffer,
 * so a big result never fails a fast client.
 */
import type { WebSocket } from 'uWebSockets.js';
import type { Logger } from '../../lib/shared/logger.js';

export interface OutboxOptions {
  softLimit: number;
  hardLimit: number;
  closeCode: number;
  log: Logger;
}

export interface OutboxStats {
  /** Unsent bytes over all open sockets now. */
  bufferedBytes: number;
  /** The most unsent bytes one socket had after a send, since start. */
  maxBufferedBytes: number;
  /** Progress messages dropped for slow readers, since start. */
  droppedMessages: number;
  /** Sockets closed with 4008, since start. */
  slowConsumerCloses: number;
}

export type SendOutcome = 'sent' | 'dropped' | 'closed';

export class Outbox<T extends { closed: boolean }> {
  private maxBuffered = 0;
  private dropped = 0;
  private slowCloses = 0;

  constructor(private readonly options: OutboxOptions) {}

  sendText(ws: WebSocket<T>, text: string, kind: 'droppable' | 'essential'): SendOutcome {
    return this.send(ws, text, false, kind);
  }

  sendBinary(ws: WebSocket<T>, bytes: Uint8Array): SendOutcome {
    return this.send(ws, bytes, true, 'essential');
  }

  private send(ws: WebSocket<T>, payload: string | Uint8Array, isBinary: boolean, kind: 'droppable' | 'essential'): SendOutcome {
    if (ws.getUserData().closed) return 'closed';
    const buffered = ws.getBufferedAmount();
    const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength;
    if (kind === 'droppable' && buffered > this.options.softLimit) {
      this.dropped++;
      return 'dropped';
    }
    if (buffered > 0 && buffered + size > this.options.hardLimit) {
      this.slowCloses++;
      this.options.log.warn({ buffered, size, limit: this.options.hardLimit }, 'WebSocket reader too slow; closing with 4008');
      ws.end(this.options.closeCode, 'slow consumer: too much unread data');
      return 'closed';
    }
    ws.send(payload, isBinary);
    this.maxBuffered = Math.max(this.maxBuffered, ws.getUserData().closed ? 0 : ws.getBufferedAmount());
    return 'sent';
  }

  stats(sockets: WebSocket<T>[]): OutboxStats {
    let bufferedBytes = 0;
    for (const ws of sockets) if (!ws.getUserData().closed) bufferedBytes += ws.getBufferedAmount();
    return { bufferedBytes, maxBufferedBytes: this.maxBuffered, droppedMessages: this.dropped, slowConsumerCloses: this.slowCloses };
  }
}
