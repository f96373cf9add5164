/**
 * Job records in the KV bucket photolab-jobs. Several processes write the same record
 * (edge, every stage, cancel), so every change is a compare-and-set loop on the revision.
 */
import type { KV } from '@nats-io/kv';
import { AppError } from '../shared/errors.js';
import type { JobRecord, JobStatus } from '../shared/schema-types.js';

export const TERMINAL: ReadonlySet<JobStatus> = new Set(['done', 'failed', 'canceled', 'timeout']);
export const isTerminal = (status: JobStatus) => TERMINAL.has(status);

/** A record as read, with the revision a compare-and-set must name. */
export interface VersionedRecord {
  record: JobRecord;
  revision: number;
}

export class JobStore {
  constructor(private readonly kv: KV) {}

  async create(record: JobRecord): Promise<void> {
    await this.kv.create(record.jobId, JSON.stringify(record));
  }

  async get(jobId: string): Promise<JobRecord | null> {
    return (await this.read(jobId))?.record ?? null;
  }

  async read(jobId: string): Promise<VersionedRecord | null> {
    const entry = await this.kv.get(jobId);
    if (!entry || entry.operation !== 'PUT' || entry.length === 0) return null;
    return { record: entry.json<JobRecord>(), revision: entry.revision };
  }

  /**
   * Applies `change` to the current record and writes it if nobody wrote in between;
   * otherwise reads again and retries. `change` returns null to leave the record as it is.
   * `known` is a recent read to start from (one round trip less; a stale one just costs the
   * retry). Returns the record as stored afterwards, with its revision (null if the job
   * does not exist).
   */
  async update(jobId: string, change: (record: JobRecord) => JobRecord | null, known?: VersionedRecord | null): Promise<VersionedRecord | null> {
    for (let attempt = 0; attempt < 50; attempt++) {
      const current = attempt === 0 && known ? known : await this.read(jobId);
      if (!current) return null;
      const next = change(structuredClone(current.record));
      if (next === null) return current;
      try {
        const revision = await this.kv.update(jobId, JSON.stringify(next), current.revision);
        return { record: next, revision };
      } catch (error) {
        if (!/wrong last sequence/i.test(String(error))) throw error;
        if (attempt > 0) await new Promise((r) => setTimeout(r, Math.random() * 5 * attempt));
      }
    }
    throw new AppError(503, 'job_store_contention', `could not update job ${jobId}: too many concurrent writers`);
  }
}
