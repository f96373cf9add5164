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
import { SHORT_PULLS } from './pulls.js';
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
  private feeds: ConsumerMessages[] = [];
  private pruner?: NodeJS.Timeout;
  /** Stream sequence of the last terminal event applied (PHOTOLAB_EVENTS), to resume the ends feed. */
  private endsApplied = 0;
  private renewing?: Promise<void>;
  private lastRenewal = 0;

  private constructor(private readonly js: JetStreamClient, private readonly windowMs: number, private readonly log: Logger) {}

  static async start(js: JetStreamClient, maxDeadlineMs: number, log: Logger): Promise<OpenJobsView> {
    const view = new OpenJobsView(js, maxDeadlineMs + MARGIN_MS, log);
    await view.openFeeds();
    view.pruner = setInterval(() => view.prune(view.windowMs), 60_000);
    view.pruner.unref();
    return view;
  }

  /**
   * The two ordered consumers, from the window's start or, when renewed, from the sequence
   * after the last one applied (so nothing is missed and little is read twice; applying twice
   * changes nothing).
   */
  private async openFeeds(): Promise<void> {
    const since = new Date(Date.now() - this.windowMs).toISOString();
    const from = (applied: number) => applied > 0
      ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: applied + 1 }
      : { deliver_policy: DeliverPolicy.StartTime, opt_start_time: since };
    const records = await this.js.consumers.get(`KV_${BUCKETS.jobs}`, { filter_subjects: `$KV.${BUCKETS.jobs}.>`, ...from(this.applied) });
    const ends = await this.js.consumers.get(STREAMS.events, { filter_subjects: subjects.endEventsAll, headers_only: true, ...from(this.endsApplied) });
    const [recordFeed, endFeed] = await Promise.all([records.consume(SHORT_PULLS), ends.consume(SHORT_PULLS)]);
    if (this.stopped) {
      // stop() came while these were being made (a renewal during shutdown).
      await Promise.all([recordFeed.close(), endFeed.close()]).catch(() => undefined);
      return;
    }
    this.feeds = [recordFeed, endFeed];
    void this.follow(recordFeed, (m) => this.applyRecord(m.subject, m.seq, m.headers?.get('KV-Operation') ?? '', () => m.json<JobRecord>()));
    void this.follow(endFeed, (m) => {
      this.endsApplied = Math.max(this.endsApplied, m.seq);
      this.applyEnd(m.subject.split('.')[2]!);
    });
  }

  /**
   * Replaces both feeds. Why: after a server of a cluster was SIGKILLed, an ordered consumer
   * could stay silent for good without ending (3-node cluster test: every later submission
   * then waited out caughtUp's 2 s and counted from the bus; 0.5 jobs/s where 3 were possible).
   * A submission whose record does not arrive in time renews them, at most every 5 s.
   */
  private renew(reason: string): void {
    if (this.stopped || this.renewing || Date.now() - this.lastRenewal < 5000) return;
    this.lastRenewal = Date.now();
    const old = this.feeds;
    this.renewing = (async () => {
      for (const feed of old) await feed.close().catch(() => undefined);
      await this.openFeeds();
      this.log.warn({ reason, recordsFrom: this.applied + 1, endsFrom: this.endsApplied + 1 }, 'open-jobs view: feeds renewed');
    })().catch((error: unknown) => {
      this.log.warn({ err: error, reason }, 'open-jobs view: feeds could not be renewed; the next late record tries again');
    }).finally(() => {
      this.renewing = undefined;
    });
  }

  /**
   * After a reconnect, once the bus has checked its streams (the topology keeper): the feeds are
   * renewed at once, as their ordered consumers would notice a lost server only after two missed
   * heartbeats. And from scratch when the streams were made anew (a nats-server back without its
   * store): their sequences start again at 1, below what this view applied, so it would skip the
   * new records and pass a caller's new jobs uncounted; what it held is gone with the store.
   */
  afterReconnect(): void {
    if (this.stopped) return;
    void (async () => {
      const jsm = await this.js.jetstreamManager();
      const [records, events] = await Promise.all([jsm.streams.info(`KV_${BUCKETS.jobs}`), jsm.streams.info(STREAMS.events)]);
      if (records.state.last_seq < this.applied || events.state.last_seq < this.endsApplied) {
        this.log.warn({ applied: this.applied, recordsNow: records.state.last_seq, endsApplied: this.endsApplied, endsNow: events.state.last_seq }, 'open-jobs view: the streams were made anew (a server without its store); starting over');
        this.byOwner.clear();
        this.ownerOf.clear();
        this.ended.clear();
        this.applied = 0;
        this.endsApplied = 0;
      }
      this.lastRenewal = 0;
      this.renew('reconnect');
    })().catch((error: unknown) => this.log.warn({ err: error }, 'open-jobs view: not checked after the reconnect; a late record renews it'));
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
      if (!this.stopped && this.feeds.includes(feed)) {
        this.log.warn({ err: error }, 'open-jobs view: feed ended; renewing it');
        this.lastRenewal = 0;
        this.renew('feed ended');
      }
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
        this.renew(`record ${revision} not seen in ${timeoutMs} ms (applied ${this.applied})`);
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
    this.feeds = [];
    for (const w of this.waiters) w.done(false);
    this.waiters = [];
  }
}
