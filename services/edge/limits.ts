/**
 * What keeps one caller, or the whole system, from being overrun:
 *  - RateLimiter: requests per caller per minute, a token bucket per caller held in this edge
 *    process's memory (with N edges a caller gets up to N times the rate; documented).
 *  - BacklogGate: admission control. The stage queues' backlog (sum of num_pending over the
 *    stage consumers), read at most once a second, above MAX_BACKLOG refuses new jobs with 503
 *    instead of letting the queue grow without bound.
 * The concurrent-job quota lives in JobsService (it needs the job's id to reserve a slot).
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import { STREAMS, stageConsumer } from '../lib/bus/subjects.js';
import { appError } from '../lib/shared/errors.js';

export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly perMs: number;

  constructor(private readonly perMinute: number, private readonly now: () => number = Date.now) {
    this.perMs = perMinute / 60_000;
  }

  /** Takes one token for the caller, or throws 429 rate_limited with the seconds until the next one. */
  take(callerKey: string): void {
    if (this.perMinute <= 0) return;
    const now = this.now();
    const bucket = this.buckets.get(callerKey) ?? { tokens: this.perMinute, at: now };
    bucket.tokens = Math.min(this.perMinute, bucket.tokens + (now - bucket.at) * this.perMs);
    bucket.at = now;
    this.buckets.set(callerKey, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return;
    }
    const retryAfterS = Math.max(1, Math.ceil((1 - bucket.tokens) / this.perMs / 1000));
    throw appError('rate_limited', `more than ${this.perMinute} requests per minute; retry in ${retryAfterS} s`, { details: { retryAfterS, limitPerMinute: this.perMinute } });
  }

  /** Forgets callers whose bucket has refilled completely: they cost nothing to recreate. */
  prune(): void {
    const now = this.now();
    for (const [key, bucket] of this.buckets) {
      if (bucket.tokens + (now - bucket.at) * this.perMs >= this.perMinute) this.buckets.delete(key);
    }
  }

  get size(): number {
    return this.buckets.size;
  }
}

export class BacklogGate {
  private cached?: { at: number; value: Promise<number> };
  private known?: { at: number; value: number };

  constructor(
    private readonly jsm: JetStreamManager,
    private readonly steps: string[],
    private readonly maxBacklog: number,
    private readonly cacheMs = 1000,
    /** How old a count may be and still answer while a newer one is read. */
    private readonly staleMs = 10 * cacheMs,
  ) {}

  /**
   * Sum of num_pending over the stage consumers, read at most every cacheMs. While a newer count
   * is read, the last one answers if it is under staleMs old: MAX_BACKLOG is a soft limit, and
   * the listing is a round trip to nats-server (about 1 ms) that a submission otherwise waited
   * for whenever the last count was more than a second old.
   */
  backlog(): Promise<number> {
    const now = Date.now();
    if (!this.cached || now - this.cached.at >= this.cacheMs) {
      const value = this.read();
      this.cached = { at: now, value };
      value.then((count) => {
        if (!this.known || this.known.at <= now) this.known = { at: now, value: count };
      }, () => {
        if (this.cached?.value === value) this.cached = undefined;
      });
    }
    if (this.known && now - this.known.at <= this.staleMs) return Promise.resolve(this.known.value);
    return this.cached.value;
  }

  /** Throws 503 overloaded when the backlog is past MAX_BACKLOG. */
  async admit(): Promise<void> {
    if (this.maxBacklog <= 0) return;
    const backlog = await this.backlog();
    if (backlog > this.maxBacklog) {
      throw appError('overloaded', `the pipeline has ${backlog} steps waiting (limit ${this.maxBacklog}); retry later`,
        { details: { retryAfterS: 5, backlog, maxBacklog: this.maxBacklog } });
    }
  }

  private async read(): Promise<number> {
    const wanted = new Set(this.steps.map(stageConsumer));
    let total = 0;
    for await (const info of this.jsm.consumers.list(STREAMS.stages)) {
      if (wanted.has(info.name)) total += info.num_pending;
    }
    return total;
  }
}
