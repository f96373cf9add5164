/**
 * Cases in the KV bucket photolab-cases (no TTL: a case is the record of an investigation).
 *   <scope>.<caseId>                 the CaseRecord (compare-and-set, like job records)
 *   <scope>.<caseId>.j.<jobId>.<ownerHash>  a job of the case ({createdAt}); the owner names its record (photolab-jobs <ownerHash>.<jobId>)
 *   <scope>.<caseId>.e.<sha256>      an original kept for the case (EvidenceRecord)
 * <scope> is the hash of the creator's tenant, or of the creator when the token names no tenant:
 * a case is shared within a tenant and invisible outside it. Cases are listed with the filter
 * `<scope>.*` (exactly two tokens: no job or evidence keys), jobs with `<scope>.<caseId>.j.>`.
 */
import { createHash } from 'node:crypto';
import type { KV } from '@nats-io/kv';
import { isWrongLastSequence } from './nats-errors.js';
import { appError } from '../shared/errors.js';
import type { CaseRecord, Owner } from '../shared/schema-types.js';

/** A stable, subject-safe token for the set of callers who see the same cases. */
export const caseScope = (owner: Owner): string =>
  createHash('sha256').update(owner.tenant ? `tenant\u0000${owner.tenant}` : `sub\u0000${owner.sub}`).digest('hex').slice(0, 32);

export interface EvidenceRecord {
  sha256: string;
  bytes: number;
  format: string;
  contentType: string;
  /** The blob name on PHOTOLAB_EVIDENCE (evidence/<scope>/<sha256>). */
  name: string;
  chunks: number;
  uploadedBy: Owner;
  uploadedAt: number;
}

export interface VersionedCase {
  record: CaseRecord;
  revision: number;
}

export class CaseStore {
  constructor(private readonly kv: KV) {}

  /** Creates the record; false when a case with this id already exists in the scope. */
  async create(record: CaseRecord): Promise<boolean> {
    try {
      await this.kv.create(`${record.scope}.${record.caseId}`, JSON.stringify(record));
      return true;
    } catch (error) {
      if (isWrongLastSequence(error)) return false;
      throw error;
    }
  }

  async read(scope: string, caseId: string): Promise<VersionedCase | null> {
    const entry = await this.kv.get(`${scope}.${caseId}`);
    if (!entry || entry.operation !== 'PUT' || entry.length === 0) return null;
    return { record: entry.json<CaseRecord>(), revision: entry.revision };
  }

  /**
   * Compare-and-set loop (KV update with the revision read): `change` returns the new record, or null to
   * leave it; it may throw (a closed case refusing a job) and the loop stops with that.
   */
  async update(scope: string, caseId: string, change: (record: CaseRecord) => CaseRecord | null): Promise<VersionedCase | null> {
    for (let attempt = 0; attempt < 50; attempt++) {
      const current = await this.read(scope, caseId);
      if (!current) return null;
      const next = change(structuredClone(current.record));
      if (next === null) return current;
      try {
        const revision = await this.kv.update(`${scope}.${caseId}`, JSON.stringify(next), current.revision);
        return { record: next, revision };
      } catch (error) {
        if (!isWrongLastSequence(error)) throw error;
        await new Promise((r) => setTimeout(r, Math.random() * 5 * (attempt + 1)));
      }
    }
    throw appError('case_store_contention', `could not update case ${caseId}: too many concurrent writers`);
  }

  /** Case ids of a scope, in key order (ULIDs: oldest first). */
  async caseIds(scope: string): Promise<string[]> {
    const ids: string[] = [];
    for await (const key of await this.kv.keys(`${scope}.*`)) ids.push(key.slice(scope.length + 1));
    return ids.sort();
  }

  async addJob(scope: string, caseId: string, jobId: string, createdAt: number, owner: string): Promise<void> {
    await this.kv.put(`${scope}.${caseId}.j.${jobId}.${owner}`, JSON.stringify({ createdAt }));
  }

  async removeJob(scope: string, caseId: string, jobId: string, owner: string): Promise<void> {
    await this.kv.delete(`${scope}.${caseId}.j.${jobId}.${owner}`);
  }

  /** The case's jobs, oldest first, each with the owner hash its record is kept under. */
  async jobs(scope: string, caseId: string): Promise<{ jobId: string; owner: string }[]> {
    const prefix = `${scope}.${caseId}.j.`;
    const jobs: { jobId: string; owner: string }[] = [];
    for await (const key of await this.kv.keys(`${prefix}>`)) {
      const [jobId, owner] = key.slice(prefix.length).split('.');
      if (jobId && owner) jobs.push({ jobId, owner });
    }
    return jobs.sort((a, b) => (a.jobId < b.jobId ? -1 : 1));
  }

  async putEvidence(scope: string, caseId: string, evidence: EvidenceRecord): Promise<void> {
    await this.kv.put(`${scope}.${caseId}.e.${evidence.sha256}`, JSON.stringify(evidence));
  }

  async evidence(scope: string, caseId: string, sha256: string): Promise<EvidenceRecord | null> {
    const entry = await this.kv.get(`${scope}.${caseId}.e.${sha256}`);
    if (!entry || entry.operation !== 'PUT' || entry.length === 0) return null;
    return entry.json<EvidenceRecord>();
  }

  async listEvidence(scope: string, caseId: string): Promise<EvidenceRecord[]> {
    const prefix = `${scope}.${caseId}.e.`;
    const keys: string[] = [];
    for await (const key of await this.kv.keys(`${prefix}*`)) keys.push(key);
    const records = await Promise.all(keys.map(async (key) => (await this.kv.get(key))?.json<EvidenceRecord>()));
    return records.filter((r): r is EvidenceRecord => !!r).sort((a, b) => a.uploadedAt - b.uploadedAt || a.sha256.localeCompare(b.sha256));
  }
}
