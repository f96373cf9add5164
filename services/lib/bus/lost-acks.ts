/**
 * JetStream publishes whose ack can no longer come fail at the reconnect, instead of after the
 * request timeout (10 s). Why: the reply to a publish sent before the connection dropped is lost
 * with it (the server that had it died, or dropped the reply of a client that was gone), and
 * the caller's retry can only go out on the new connection. Measured (reliability suite, nats-server
 * SIGKILLed and restarted): the steps whose publishes were in flight waited out those 10 s, and
 * with them every job of the phase; the services had reconnected after 0.5 s.
 *
 * The failure is retryable (`bus_unavailable`) and says the message may be stored: every caller
 * retries with what makes a second copy harmless (message ids within the duplicate window, one
 * message per blob subject, the expected last sequence of a terminal event). Publishes made
 * while disconnected go out on the reconnect and are answered there: they wait as usual.
 */
import type { JetStreamClient } from '@nats-io/jetstream';
import { appError } from '../shared/errors.js';

interface Waiting {
  /** Disconnects seen before the publish was made. */
  epoch: number;
  fail: (error: Error) => void;
}

export class LostAcks {
  private disconnects = 0;
  private readonly waiting = new Set<Waiting>();

  disconnected(): void {
    this.disconnects++;
  }

  /** Fails every publish made before the last disconnect that still waits for its ack. */
  reconnected(): void {
    for (const entry of this.waiting) {
      if (entry.epoch >= this.disconnects) continue;
      this.waiting.delete(entry);
      entry.fail(appError('bus_unavailable', 'the connection to NATS was lost while this publish waited for its ack; it may be stored: retry it'));
    }
  }

  /** Publishes waiting for their ack (tests). */
  get pending(): number {
    return this.waiting.size;
  }

  guard<T>(send: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const entry: Waiting = { epoch: this.disconnects, fail: reject };
      this.waiting.add(entry);
      send().then((value) => {
        this.waiting.delete(entry);
        resolve(value);
      }, (error: unknown) => {
        this.waiting.delete(entry);
        reject(error);
      });
    });
  }

  /** `js` with its publish guarded (the same object, for everything that holds it). */
  wrap(js: JetStreamClient): JetStreamClient {
    const publish = js.publish.bind(js);
    js.publish = (subject, payload, options) => this.guard(() => publish(subject, payload, options));
    return js;
  }
}
