/**
 * Job records in the KV bucket photolab-jobs. Several processes write the same record
 * (edge, every stage, cancel), so every change is a compare-and-set loop on the revision.
 */
import type { KV } from '@nats-io/kv';
import { AppError } from '../shared/errors.js';
import type { JobRecord, JobStatus } from '../shared/schema-types.js';

export const TERMINAL: ReadonlySet<JobStatus> = new Set(['done', 'failed', 'canceled', 'timeout']);
export const isTerminal = (status: JobStatus) => TERMINAL.has(status);

export class JobStore {
  constructor(private readonly kv: KV) {}

  async create(record: JobRecord): Promise<void> {
    await this.kv.create(record.jobId, JSON.stringify(record));
  }

  async get(jobId: string): Promise<JobRecord | null> {
    const entry = await this.kv.get(jobId);
    if (!entry || entry.operation !== 'PUT' || entry.length === 0) return null;
    return entry.json<JobRecord>();
  }

  /**
   * Applies `change` to the current record and writes it if nobody wrote in between;
   * otherwise reads again and retries. `change` returns null to leave the record as it is.
   * Returns the record as stored afterwards (null if the job does not exist).
   */
  async update(jobId: string, change: (record: JobRecord) => JobRecord | null): Promise<JobRecord | null> {
    for (let attempt = 0; attempt < 50; attempt++) {
      const entry = await this.kv.get(jobId);
      if (!entry || entry.operation !== 'PUT' || entry.length === 0) return null;
      const current = entry.json<JobRecord>();
      const next = change(structuredClone(current));
      if (next === null) return current;
      try {
        await this.kv.update(jobId, JSON.stringify(next), entry.revision);
        return next;
      } catch (error) {
        if (!/wrong last sequence/i.test(String(error))) throw error;
        await new Promise((r) => setTimeout(r, Math.random() * 5 * (attempt + 1)));
      }
    }
    throw new AppError(503, 'job_store_contention', `could not update job ${jobId}: too many concurrent writers`);
  }
}
