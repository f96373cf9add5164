/**
 * Every caller's unfinished jobs, held in memory by the edge for the concurrent-job quota
 * (every submission) and the deadline sweep (every few seconds), from what is written anyway:
 *   - job records created (KV photolab-jobs), followed from JOB_MAX_DEADLINE_MS + a margin ago:
 *     no job older than that can still be unfinished once the sweep has seen it;
 *   - terminal events (photolab.events.*.end) over the same window.
 * Both through ordered consumers (ephemeral, nothing written). There is no bucket of open jobs
 * to keep in step any more: a job is open from its record until its end.
 *
 * Exactness: each entry keeps its record's revision (the KV stream's sequence, one total order
 * for all edges). A submission whose record got revision r waits until this view has applied r,
 * then counts the caller's entries up to r: of several edges racing for the last slot, the one
 * that submitted first wins and the others see it. Ends may arrive a moment after the record:
 * the quota re-checks the terminal event of each counted entry before it refuses.
 */
import { DeliverPolicy, type ConsumerMessages, type JetStreamClient, type JsMsg } from '@nats-io/jetstream';
import type { Logger } from '../shared/logger.js';
import type { JobRecord } from '../shared/schema-types.js';
import { BUCKETS, STREAMS, subjects } from './subjects.js';

export interface OpenJob {
  ownerHash: string;
  jobId: string;
  deadline: number;
  /** Revision of the job's record. */
  revision: number;
}

/** Jobs this much older than the longest deadline are not followed (the sweep ended them). */
const MARGIN_MS = 10 * 60_000;

export class OpenJobsView {
  private readonly byOwner = new Map<string, Map<string, OpenJob>>();
  /** jobId -> ownerHash of the open jobs, so an end finds its job without a scan of every owner. */
  private readonly ownerOf = new Map<string, string>();
  private readonly ended = new Map<string, number>();
  private applied = 0;
  private waiters: { revision: number; done: (ok: boolean) => void }[] = [];
  private stopped = false;
  private readonly feeds: ConsumerMessages[] = [];
  private pruner?: NodeJS.Timeout;

  private constructor(private readonly log: Logger) {}

  static async start(js: JetStreamClient, maxDeadlineMs: number, log: Logger): Promise<OpenJobsView> {
    const view = new OpenJobsView(log);
    const since = new Date(Date.now() - maxDeadlineMs - MARGIN_MS).toISOString();
    const records = await js.consumers.get(`KV_${BUCKETS.jobs}`, {
      filter_subjects: `$KV.${BUCKETS.jobs}.>`, deliver_policy: DeliverPolicy.StartTime, opt_start_time: since,
    });
    const ends = await js.consumers.get(STREAMS.events, {
      filter_subjects: subjects.endEventsAll, deliver_policy: DeliverPolicy.StartTime, opt_start_time: since, headers_only: true,
    });
    // Pulls that expire after 5 s: an ordered consumer whose server died is noticed (and made
    // anew) within seconds instead of the client's 30 s default, during which every submission
    // would wait for its record in vain and count from the bus instead (3-node cluster test).
    const [recordFeed, endFeed] = await Promise.all([records.consume({ expires: 5000 }), ends.consume({ expires: 5000 })]);
    view.feeds.push(recordFeed, endFeed);
    void view.follow(recordFeed, (m) => view.applyRecord(m.subject, m.seq, m.headers?.get('KV-Operation') ?? '', () => m.json<JobRecord>()));
    void view.follow(endFeed, (m) => view.applyEnd(m.subject.split('.')[2]!));
    view.pruner = setInterval(() => view.prune(maxDeadlineMs + MARGIN_MS), 60_000);
    view.pruner.unref();
    return view;
  }

  private async follow(feed: ConsumerMessages, apply: (m: JsMsg) => void): Promise<void> {
    try {
      for await (const m of feed) {
        try {
          apply(m);
        } catch (error) {
          this.log.warn({ err: error, subject: m.subject }, 'open-jobs view: entry not understood');
        }
      }
    } catch (error) {
      if (!this.stopped) this.log.warn({ err: error }, 'open-jobs view: feed ended; the quota reads the bus instead');
    }
  }

  private applyRecord(subject: string, seq: number, operation: string, record: () => JobRecord): void {
    // $KV.photolab-jobs.<ownerHash>.<jobId>
    const [ownerHash, jobId] = subject.split('.').slice(2);
    if (ownerHash && jobId) {
      if (operation === 'DEL' || operation === 'PURGE') this.remove(ownerHash, jobId);
      else if (!this.ended.has(jobId)) {
        const jobs = this.byOwner.get(ownerHash) ?? new Map<string, OpenJob>();
        jobs.set(jobId, { ownerHash, jobId, deadline: record().deadline, revision: seq });
        this.byOwner.set(ownerHash, jobs);
        this.ownerOf.set(jobId, ownerHash);
      }
    }
    this.applied = Math.max(this.applied, seq);
    if (this.waiters.some((w) => w.revision <= this.applied)) {
      const ready = this.waiters.filter((w) => w.revision <= this.applied);
      this.waiters = this.waiters.filter((w) => w.revision > this.applied);
      for (const w of ready) w.done(true);
    }
  }

  private applyEnd(jobId: string): void {
    this.ended.set(jobId, Date.now());
    const ownerHash = this.ownerOf.get(jobId);
    if (ownerHash !== undefined) this.remove(ownerHash, jobId);
  }

  private remove(ownerHash: string, jobId: string): void {
    const jobs = this.byOwner.get(ownerHash);
    jobs?.delete(jobId);
    if (this.ownerOf.get(jobId) === ownerHash) this.ownerOf.delete(jobId);
    if (jobs && jobs.size === 0) this.byOwner.delete(ownerHash);
  }

  private prune(windowMs: number): void {
    const old = Date.now() - windowMs;
    for (const [jobId, at] of this.ended) if (at < old) this.ended.delete(jobId);
  }

  /** Resolves true once every record up to `revision` is applied; false after `timeoutMs`. */
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

  /** Unfinished jobs of one caller (by owner hash) or of everyone, submitted at or before `upTo`. */
  entries(ownerHash?: string, upTo = Infinity): OpenJob[] {
    const owners = ownerHash === undefined ? [...this.byOwner.values()] : [this.byOwner.get(ownerHash) ?? new Map<string, OpenJob>()];
    return owners.flatMap((jobs) => [...jobs.values()].filter((e) => e.revision <= upTo));
  }

  /** Forget a job (it ended, as the caller found out first). */
  forget(ownerHash: string, jobId: string): void {
    this.ended.set(jobId, Date.now());
    this.remove(ownerHash, jobId);
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.pruner);
    for (const feed of this.feeds) void feed.close().catch(() => undefined);
    for (const w of this.waiters) w.done(false);
    this.waiters = [];
  }
}
