/**
 * Cases: a named collection of a tenant's jobs and the originals they start from (evidence).
 * Both the product's API and the PLAYE front end's cloudStorage use this one store
 * (docs/api.md, "Cases"). A case of another tenant is "not found", never "forbidden".
 */
import sharp from 'sharp';
import type { Bus } from '../lib/bus/bus.js';
import { caseScope, type EvidenceRecord } from '../lib/bus/case-store.js';
import { ownerHash } from '../lib/bus/job-store.js';
import { sha256 } from '../lib/bus/blob-store.js';
import { evidenceBlobName } from '../lib/bus/subjects.js';
import type { Custody } from '../lib/forensics/custody.js';
import { appError } from '../lib/shared/errors.js';
import { newId } from '../lib/shared/ids.js';
import type { BlobRef, CaseRecord, CaseView, CreateCaseRequest, EvidenceView, Owner } from '../lib/shared/schema-types.js';
import { validateOrThrow } from '../lib/shared/schemas.js';
import { imageSize } from '../lib/imaging/image-size.js';

const CASE_ID = /^[A-Za-z0-9_-]{1,64}$/;
const SHA256 = /^[0-9a-f]{64}$/;
/** Fields of a PLAYE case object that are ours: never taken from the client's extra fields. */
const RESERVED = new Set(['id', 'caseId', 'name', 'updatedAt', 'status', 'createdAt', 'closedAt', 'createdBy', 'jobCount', 'jobs', 'evidence']);

export interface Access {
  owner: Owner;
  requestId?: string;
}

const iso = (ms: number) => new Date(ms).toISOString();

export function caseView(record: CaseRecord): CaseView {
  return {
    ...(record.extra ?? {}),
    id: record.caseId,
    caseId: record.caseId,
    name: record.name,
    status: record.status,
    createdAt: iso(record.createdAt),
    updatedAt: record.updatedAtNumeric ? record.updatedAt : iso(record.updatedAt),
    ...(record.closedAt ? { closedAt: iso(record.closedAt) } : {}),
    createdBy: record.createdBy.sub,
    jobCount: record.jobs,
  };
}

export function evidenceView(caseId: string, e: EvidenceRecord): EvidenceView {
  return {
    sha256: e.sha256, bytes: e.bytes, format: e.format, contentType: e.contentType,
    uploadedBy: e.uploadedBy.sub, ...(e.uploadedBy.tenant ? { uploadedTenant: e.uploadedBy.tenant } : {}),
    uploadedAt: iso(e.uploadedAt), url: `/api/cases/${caseId}/evidence/${e.sha256}`,
  };
}

/** updatedAt as the PLAYE client sends it (epoch ms or an ISO string), in ms. */
function updatedAtMs(value: unknown): { ms: number; numeric: boolean } {
  const ms = typeof value === 'number' ? value : typeof value === 'string' ? Date.parse(value) : NaN;
  if (!Number.isFinite(ms) || ms < 0) throw appError('invalid_case', 'updatedAt must be epoch milliseconds or an ISO date-time');
  return { ms: Math.round(ms), numeric: typeof value === 'number' };
}

export class CasesService {
  constructor(private readonly bus: Bus, private readonly custody: Custody) {}

  private async read(owner: Owner, caseId: string): Promise<CaseRecord> {
    const found = CASE_ID.test(caseId) ? await this.bus.cases.read(caseScope(owner), caseId) : null;
    if (!found) throw appError('case_not_found', `no case ${caseId}`);
    return found.record;
  }

  /**
   * POST /api/cases. A body with id and updatedAt is a PLAYE case object: created, or updated
   * when its updatedAt is later than the stored one (last writer wins; an older or equal write
   * changes nothing and gets the stored case back). Otherwise a new case named `name`.
   */
  async createOrUpsert(access: Access, body: unknown): Promise<{ record: CaseRecord; created: boolean }> {
    const request = validateOrThrow<CreateCaseRequest>('http/create-case.schema.json', body, { what: 'case' });
    const scope = caseScope(access.owner);
    const now = Date.now();
    if (request.id === undefined) {
      const record: CaseRecord = { caseId: newId(now), scope, name: request.name!, status: 'open', createdBy: access.owner, createdAt: now, updatedAt: now, jobs: 0 };
      await this.bus.cases.create(record);
      await this.custody.record({ action: 'case.created', owner: access.owner, caseId: record.caseId, requestId: access.requestId, detail: record.name });
      return { record, created: true };
    }
    const { ms, numeric } = updatedAtMs(request.updatedAt);
    const extra: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(request)) if (!RESERVED.has(key)) extra[key] = value;
    const caseId = request.id;
    for (let attempt = 0; attempt < 5; attempt++) {
      const existing = await this.bus.cases.read(scope, caseId);
      if (!existing) {
        const record: CaseRecord = {
          caseId, scope, name: request.name ?? caseId, status: 'open', createdBy: access.owner, createdAt: now,
          updatedAt: ms, updatedAtNumeric: numeric, jobs: 0, extra,
        };
        if (!(await this.bus.cases.create(record))) continue; // created meanwhile: compare with it
        await this.custody.record({ action: 'case.created', owner: access.owner, caseId, requestId: access.requestId, detail: record.name });
        return { record, created: true };
      }
      let changed = false;
      const stored = await this.bus.cases.update(scope, caseId, (record) => {
        if (ms <= record.updatedAt) return null;
        changed = true;
        return { ...record, name: request.name ?? record.name, updatedAt: ms, updatedAtNumeric: numeric, extra };
      });
      if (changed) await this.custody.record({ action: 'case.updated', owner: access.owner, caseId, requestId: access.requestId, detail: 'PLAYE case object' });
      return { record: stored!.record, created: false };
    }
    throw appError('case_store_contention', `case ${caseId} changed too often while it was written; retry`);
  }

  get(owner: Owner, caseId: string): Promise<CaseRecord> {
    return this.read(owner, caseId);
  }

  /** The case with its jobs (and their status) and its evidence. */
  async detail(owner: Owner, caseId: string): Promise<CaseView> {
    const record = await this.read(owner, caseId);
    const scope = caseScope(owner);
    const [caseJobs, evidence] = await Promise.all([this.bus.cases.jobs(scope, caseId), this.bus.cases.listEvidence(scope, caseId)]);
    const jobs = await Promise.all(caseJobs.map(async ({ jobId, owner: ownerKey }) => {
      const job = await this.bus.jobs.getByOwnerHash(ownerKey, jobId);
      if (!job) return { jobId, status: 'expired' };
      return {
        jobId, status: job.status, createdAt: iso(job.createdAt), ...(job.finishedAt ? { finishedAt: iso(job.finishedAt) } : {}),
        inputSha256: job.input.sha256, ...(job.result?.image ? { resultSha256: job.result.image.sha256 } : {}),
        pipeline: job.pipeline.map((p) => p.step),
      };
    }));
    return { ...caseView(record), jobs, evidence: evidence.map((e) => evidenceView(caseId, e)) };
  }

  async rename(access: Access, caseId: string, name: string): Promise<CaseRecord> {
    await this.read(access.owner, caseId);
    const stored = await this.bus.cases.update(caseScope(access.owner), caseId, (record) => ({ ...record, name, updatedAt: Math.max(Date.now(), record.updatedAt + 1) }));
    if (!stored) throw appError('case_not_found', `no case ${caseId}`);
    await this.custody.record({ action: 'case.renamed', owner: access.owner, caseId, requestId: access.requestId, detail: name });
    return stored.record;
  }

  async close(access: Access, caseId: string): Promise<CaseRecord> {
    await this.read(access.owner, caseId);
    let already = false;
    const stored = await this.bus.cases.update(caseScope(access.owner), caseId, (record) => {
      if (record.status === 'closed') {
        already = true;
        return null;
      }
      const now = Math.max(Date.now(), record.updatedAt + 1);
      return { ...record, status: 'closed', closedAt: now, closedBy: access.owner, updatedAt: now };
    });
    if (!stored) throw appError('case_not_found', `no case ${caseId}`);
    if (already) throw appError('case_closed', `case ${caseId} is already closed`, { details: { caseId, closedAt: iso(stored.record.closedAt!) } });
    await this.custody.record({ action: 'case.closed', owner: access.owner, caseId, requestId: access.requestId });
    return stored.record;
  }

  /** The scope's cases ordered by id, newest ULIDs first; `cursor` is the last id of the previous page. */
  async list(owner: Owner, options: { limit: number; cursor?: string }): Promise<{ cases: CaseRecord[]; nextCursor?: string }> {
    const scope = caseScope(owner);
    let ids = (await this.bus.cases.caseIds(scope)).reverse();
    if (options.cursor !== undefined) {
      const after = decodeCaseCursor(options.cursor);
      ids = ids.filter((id) => id < after);
    }
    const page = ids.slice(0, options.limit);
    const records = (await Promise.all(page.map((id) => this.bus.cases.read(scope, id)))).filter((r) => r !== null).map((r) => r!.record);
    return { cases: records, ...(ids.length > page.length ? { nextCursor: encodeCaseCursor(page[page.length - 1]!) } : {}) };
  }

  /**
   * Attaches a new job to an open case: a compare-and-set on the case record, so a close that
   * races with it either comes first (the job is refused with 409 case_closed) or after (the
   * job is in the case). Returns the case.
   */
  async attachJob(owner: Owner, caseId: string, jobId: string, at: number): Promise<CaseRecord> {
    await this.read(owner, caseId);
    const scope = caseScope(owner);
    const stored = await this.bus.cases.update(scope, caseId, (record) => {
      if (record.status === 'closed') {
        throw appError('case_closed', `case ${caseId} is closed and takes no new jobs`, { details: { caseId, closedAt: iso(record.closedAt ?? record.updatedAt) } });
      }
      return { ...record, jobs: record.jobs + 1, updatedAt: Math.max(at, record.updatedAt + 1) };
    });
    if (!stored) throw appError('case_not_found', `no case ${caseId}`);
    await this.bus.cases.addJob(scope, caseId, jobId, at, ownerHash(owner));
    return stored.record;
  }

  /**
   * Keeps an original as the case's evidence, unaltered and without TTL: stored once per scope
   * under its sha256 (the same photo in two cases is one copy), listed per case. Refused on a
   * closed case. `audit` false when the caller records the access itself (job submission).
   */
  async keepOriginal(access: Access, caseId: string, bytes: Buffer, contentType: string, audit = true): Promise<{ evidence: EvidenceRecord; ref: BlobRef }> {
    const record = await this.read(access.owner, caseId);
    if (record.status === 'closed') throw appError('case_closed', `case ${caseId} is closed and takes no new evidence`, { details: { caseId } });
    if (bytes.length === 0) throw appError('image_required', 'the original is empty');
    const scope = caseScope(access.owner);
    const digest = sha256(bytes);
    const name = evidenceBlobName(scope, digest);
    // The header parser first (no decoder, as for the pixel limit), sharp for the other formats.
    let format: string;
    try {
      format = imageSize(bytes)?.format ?? (await sharp(bytes, { failOn: 'none' }).metadata()).format ?? 'unknown';
    } catch {
      throw appError('unsupported_format', 'the original is not an image this server can read');
    }
    const ref = (await this.bus.blobs.describe(name)) ?? (await this.bus.blobs.put(name, bytes, contentType, this.bus.blobs.refFor(name, bytes, contentType, digest)));
    const existing = await this.bus.cases.evidence(scope, caseId, digest);
    const evidence: EvidenceRecord = existing ?? {
      sha256: digest, bytes: bytes.length, format, contentType, name, chunks: ref.chunks, uploadedBy: access.owner, uploadedAt: Date.now(),
    };
    if (!existing) await this.bus.cases.putEvidence(scope, caseId, evidence);
    if (audit) await this.custody.record({ action: 'evidence.uploaded', owner: access.owner, caseId, requestId: access.requestId, sha256: digest, bytes: bytes.length, detail: existing ? 'already kept' : format });
    return { evidence, ref };
  }

  /** An original of the case, as its record and its BlobRef (for a job to start from). */
  async originalRef(owner: Owner, caseId: string, digest: string): Promise<{ evidence: EvidenceRecord; ref: BlobRef }> {
    await this.read(owner, caseId);
    const evidence = SHA256.test(digest) ? await this.bus.cases.evidence(caseScope(owner), caseId, digest) : null;
    if (!evidence) throw appError('evidence_not_found', `case ${caseId} has no original with sha256 ${digest}`);
    const ref = await this.bus.blobs.describe(evidence.name);
    if (!ref) throw appError('evidence_missing', `the original ${digest} of case ${caseId} is recorded but its bytes are not on PHOTOLAB_EVIDENCE`);
    return { evidence, ref };
  }

  /** The exact original bytes (checked against their sha256), recorded as an evidence read. */
  async readOriginal(access: Access, caseId: string, digest: string): Promise<{ evidence: EvidenceRecord; bytes: Buffer }> {
    const { evidence, ref } = await this.originalRef(access.owner, caseId, digest);
    const bytes = await this.bus.blobs.get(ref);
    await this.custody.record({ action: 'evidence.read', owner: access.owner, caseId, requestId: access.requestId, sha256: digest, bytes: bytes.length });
    return { evidence, bytes };
  }

  async listEvidence(owner: Owner, caseId: string): Promise<EvidenceRecord[]> {
    await this.read(owner, caseId);
    return this.bus.cases.listEvidence(caseScope(owner), caseId);
  }
}

/** Case cursors are opaque: base64url of "c1:<last case id of the previous page>". */
export function encodeCaseCursor(caseId: string): string {
  return Buffer.from(`c1:${caseId}`).toString('base64url');
}

export function decodeCaseCursor(cursor: string): string {
  const text = /^[A-Za-z0-9_-]{1,120}$/.test(cursor) ? Buffer.from(cursor, 'base64url').toString('utf8') : '';
  const match = /^c1:([A-Za-z0-9_-]{1,64})$/.exec(text);
  if (!match) throw appError('invalid_cursor', 'cursor is not one this API gave out; start again without it');
  return match[1]!;
}
