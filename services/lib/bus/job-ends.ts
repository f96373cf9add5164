/**
 * Which jobs have ended, as a stage process needs to know: before it starts a step (a
 * canceled or timed-out job's queued steps are skipped) and while a step runs (cancel aborts
 * it). One core subscription on photolab.events.*.end per process feeds both, so the common
 * case costs no read at all: a job submitted after this process last (re)subscribed, whose
 * end it has not seen, has not ended. Older jobs (queued before this process started, or
 * across a reconnect, when core messages may have been missed) are asked of the stream with
 * one direct get of their terminal subject.
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { JobStore } from './job-store.js';
import { subjects } from './subjects.js';

/** How long an end is remembered: no step of a job outlives its deadline by more. */
const REMEMBER_MS = 2 * 60 * 60_000;

export class JobEnds {
  private readonly ended = new Map<string, number>();
  private readonly listeners = new Map<string, Set<(type: string) => void>>();
  private reliableSince = Number.POSITIVE_INFINITY;
  private sub?: Subscription;
  private pruneTimer?: NodeJS.Timeout;

  constructor(private readonly nc: NatsConnection, private readonly jobs: JobStore) {}

  start(): void {
    this.sub = this.nc.subscribe(subjects.endEventsAll, {
      callback: (error, message) => {
        if (error) return;
        const jobId = message.subject.split('.')[2]!;
        this.ended.set(jobId, Date.now());
        const type = message.headers?.get('Photolab-Event') ?? 'job.ended';
        for (const listener of this.listeners.get(jobId) ?? []) listener(type);
      },
    });
    // Ends are complete from the moment the server has the subscription.
    void this.nc.flush().then(() => {
      this.reliableSince = Date.now();
    });
    void (async () => {
      for await (const status of this.nc.status()) {
        if (status.type === 'disconnect') this.reliableSince = Number.POSITIVE_INFINITY;
        // The subscription is re-sent on reconnect; ends published while away were missed.
        if (status.type === 'reconnect') this.reliableSince = Date.now();
      }
    })().catch(() => undefined);
    this.pruneTimer = setInterval(() => {
      const old = Date.now() - REMEMBER_MS;
      for (const [jobId, at] of this.ended) if (at < old) this.ended.delete(jobId);
    }, 60_000);
    this.pruneTimer.unref();
  }

  stop(): void {
    clearInterval(this.pruneTimer);
    this.sub?.unsubscribe();
  }

  /** Whether the job has ended; reads the stream only when this process may have missed it. */
  async hasEnded(jobId: string, submittedAt: number): Promise<boolean> {
    if (this.ended.has(jobId)) return true;
    if (submittedAt > this.reliableSince) return false;
    return (await this.jobs.terminal(jobId)) !== null;
  }

  /** The end seen so far, without asking the stream (between steps of a local chain). */
  seenEnded(jobId: string): boolean {
    return this.ended.has(jobId);
  }

  /** Calls `listener` when the job ends; returns the function that stops listening. */
  onEnd(jobId: string, listener: (type: string) => void): () => void {
    const set = this.listeners.get(jobId) ?? new Set();
    set.add(listener);
    this.listeners.set(jobId, set);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(jobId);
    };
  }
}
