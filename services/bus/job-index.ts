/**
 * Per-caller indexes of jobs, so nothing ever scans the whole jobs bucket:
 *   photolab-job-index  <ownerHash>.<jobId>              every job of a caller (listing; ULIDs sort by time)
 *   photolab-open-jobs  <ownerHash>.<jobId>.<deadline>   unfinished jobs (concurrent-job quota, deadline sweep)
 * Both are listed with a subject filter (`<ownerHash>.>`), so a listing costs in proportion
 * to the caller's own jobs. The deadline is in the open key so the sweep needs no reads.
 */
import { createHash } from 'node:crypto';
import type { KV } from '@nats-io/kv';
import type { Logger } from '../shared/logger.js';
import type { JobRecord, Owner } from '../shared/schema-types.js';
import { OpenJobsView } from './open-jobs-view.js';

/** A stable, subject-safe token for a caller (sub + tenant). */
export const ownerHash = (owner: Owner): string =>
  createHash('sha256').update(`${owner.tenant ?? ''}\u0000${owner.sub}`).digest('hex').slice(0, 32);

export interface OpenJob {
  ownerHash: string;
  jobId: string;
  deadline: number;
}

export class JobIndex {
  /** Unfinished jobs in memory (the edge watches; stages only write). */
  private view?: OpenJobsView;

  constructor(private readonly all: KV, private readonly open: KV) {}

  /** Records a new job in the caller's list (it was marked open when its slot was reserved). */
  async add(job: Pick<JobRecord, 'jobId' | 'owner' | 'createdAt'>): Promise<void> {
    await this.all.put(`${ownerHash(job.owner)}.${job.jobId}`, JSON.stringify({ createdAt: job.createdAt }));
  }

  /**
   * Marks a job unfinished, before the job exists (its quota slot); returns the entry's
   * revision, the order in which racing reservations count (OpenJobsView).
   */
  async markOpen(job: Pick<JobRecord, 'jobId' | 'owner' | 'deadline'>): Promise<number> {
    return this.open.put(openKey(ownerHash(job.owner), job.jobId, job.deadline), '');
  }

  /**
   * Keeps the unfinished jobs in memory from here on (the edge: its quota and deadline sweep
   * read them on every submission and every few seconds); openJobs then answers from memory.
   */
  async watchOpen(log: Logger): Promise<void> {
    this.view ??= await OpenJobsView.start(this.open, log);
  }

  unwatchOpen(): void {
    this.view?.stop();
    this.view = undefined;
  }

  /** The job ended (or its submission was abandoned): it no longer counts as unfinished. */
  async markFinished(job: Pick<JobRecord, 'jobId' | 'owner' | 'deadline'>): Promise<void> {
    await this.open.delete(openKey(ownerHash(job.owner), job.jobId, job.deadline));
  }

  async removeOpen(entry: OpenJob): Promise<void> {
    await this.open.delete(openKey(entry.ownerHash, entry.jobId, entry.deadline));
  }

  /** The caller's job ids, oldest first. */
  async jobIds(owner: Owner): Promise<string[]> {
    const prefix = `${ownerHash(owner)}.`;
    const ids: string[] = [];
    for await (const key of await this.all.keys(`${prefix}>`)) ids.push(key.slice(prefix.length));
    return ids.sort();
  }

  /**
   * Unfinished jobs: of one caller, or of everyone (for the deadline sweep). `upTo` (a revision
   * markOpen gave) counts only the entries reserved until then, and waits until the in-memory
   * view has seen it. Without a view, or if it does not catch up within 2 s, the bucket's keys
   * are listed (an ordered consumer: cost in proportion to the entries).
   */
  async openJobs(owner?: Owner, upTo?: number): Promise<OpenJob[]> {
    if (this.view && (upTo === undefined || await this.view.caughtUp(upTo, 2000))) return this.view.entries(owner && ownerHash(owner), upTo);
    const filter = owner ? `${ownerHash(owner)}.>` : '>';
    const entries: OpenJob[] = [];
    for await (const key of await this.open.keys(filter)) {
      const [hash, jobId, deadline] = key.split('.');
      if (hash && jobId && deadline) entries.push({ ownerHash: hash, jobId, deadline: Number(deadline) });
    }
    return entries;
  }
}

const openKey = (owner: string, jobId: string, deadline: number) => `${owner}.${jobId}.${deadline}`;
