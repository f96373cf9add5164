/**
 * Every caller's unfinished jobs, held in memory from a watch of photolab-open-jobs.
 *
 * Why: the concurrent-job quota is checked on every submission and the deadline sweep runs
 * every few seconds. Listing the bucket's keys for each (an ordered consumer per call) cost
 * in proportion to the caller's open jobs and was the largest part of a small upload's cost
 * (bench: ingest). The watch pushes every change once; counting is then a map lookup.
 *
 * Exactness: each entry keeps its revision (the open-jobs stream's sequence number, one total
 * order for all edges). A submission that reserved its slot at revision r waits until this
 * view has applied r, then counts the caller's entries up to r: of several edges racing for
 * the last slot, the one that reserved first wins and the others see it.
 */
import { KvWatchInclude, type KV } from '@nats-io/kv';
import type { Logger } from '../shared/logger.js';
import type { OpenJob } from './job-index.js';

export interface OpenEntry extends OpenJob {
  revision: number;
}

export class OpenJobsView {
  private readonly byOwner = new Map<string, Map<string, OpenEntry>>();
  private applied = 0;
  private waiters: { revision: number; done: (ok: boolean) => void }[] = [];
  private stopped = false;

  private constructor(private readonly iterator: AsyncIterable<import('@nats-io/kv').KvWatchEntry> & { stop(): void }, private readonly log: Logger) {}

  /** Starts the watch and waits until the bucket's current content is in memory. */
  static async start(kv: KV, log: Logger, timeoutMs = 10_000): Promise<OpenJobsView> {
    const iterator = await kv.watch({ key: '>', include: KvWatchInclude.LastValue });
    const view = new OpenJobsView(iterator, log);
    void view.follow();
    const lastSeq = (await kv.status()).streamInfo.state.last_seq;
    if (!(await view.caughtUp(lastSeq, timeoutMs))) throw new Error(`open-jobs view did not load revision ${lastSeq} within ${timeoutMs} ms`);
    return view;
  }

  private async follow(): Promise<void> {
    try {
      for await (const entry of this.iterator) this.apply(entry);
    } catch (error) {
      if (!this.stopped) this.log.warn({ err: error }, 'open-jobs watch ended; quota falls back to listing');
    }
  }

  private apply(entry: { key: string; revision: number; operation: string }): void {
    const [ownerHash, jobId, deadline] = entry.key.split('.');
    if (ownerHash && jobId && deadline) {
      const jobs = this.byOwner.get(ownerHash) ?? new Map<string, OpenEntry>();
      if (entry.operation === 'PUT') {
        jobs.set(jobId, { ownerHash, jobId, deadline: Number(deadline), revision: entry.revision });
        this.byOwner.set(ownerHash, jobs);
      } else {
        jobs.delete(jobId);
        if (jobs.size === 0) this.byOwner.delete(ownerHash);
      }
    }
    this.applied = Math.max(this.applied, entry.revision);
    if (this.waiters.length && this.waiters.some((w) => w.revision <= this.applied)) {
      const ready = this.waiters.filter((w) => w.revision <= this.applied);
      this.waiters = this.waiters.filter((w) => w.revision > this.applied);
      for (const w of ready) w.done(true);
    }
  }

  /** Resolves true once every change up to `revision` is applied; false after `timeoutMs`. */
  caughtUp(revision: number, timeoutMs: number): Promise<boolean> {
    if (revision <= this.applied) return Promise.resolve(true);
    if (this.stopped) return Promise.resolve(false);
    return new Promise((resolve) => {
      const waiter = { revision, done: (ok: boolean) => { clearTimeout(timer); resolve(ok); } };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(false);
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Unfinished jobs of one caller (by owner hash) or of everyone, reserved at or before `upTo`. */
  entries(ownerHash?: string, upTo = Infinity): OpenEntry[] {
    const owners = ownerHash === undefined ? [...this.byOwner.values()] : [this.byOwner.get(ownerHash) ?? new Map<string, OpenEntry>()];
    return owners.flatMap((jobs) => [...jobs.values()].filter((e) => e.revision <= upTo));
  }

  stop(): void {
    this.stopped = true;
    this.iterator.stop();
    for (const w of this.waiters) w.done(false);
    this.waiters = [];
  }
}
