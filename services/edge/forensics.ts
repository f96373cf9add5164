/**
 * Reports and replays of jobs (docs/forensics.md). A report is built from the job record (its
 * provenance), signed with the edge's Ed25519 key, and for a job in a case recorded in the
 * chain of custody with the sha256 of the bytes served. A replay submits the same pipeline on
 * the same original as a new job and compares the two runs step by step by their output hashes.
 */
import { sha256 } from '../lib/bus/blob-store.js';
import { caseScope } from '../lib/bus/case-store.js';
import { isTerminal } from '../lib/shared/job-status.js';
import type { Bus } from '../lib/bus/bus.js';
import type { Custody } from '../lib/forensics/custody.js';
import { buildReport, reportHtml, signReport, softwareVersions, thumbnail } from '../lib/forensics/report.js';
import type { SigningKey } from '../lib/forensics/signing.js';
import type { Config } from '../lib/shared/config.js';
import { appError, hasErrorCode } from '../lib/shared/errors.js';
import type { JobRecord, JobReport, Owner, ReplayComparison, ReplayStep } from '../lib/shared/schema-types.js';
import type { JobsService } from './jobs.js';
import { waitForJobEnd } from './job-waiter.js';

export class ForensicsService {
  constructor(
    private readonly bus: Bus,
    private readonly jobs: JobsService,
    private readonly custody: Custody,
    private readonly key: SigningKey,
    private readonly config: Config,
  ) {
    this.software = softwareVersions(config.gitCommit);
  }

  /** What every report names as the software that made the result (read once, at start). */
  private readonly software: JobReport['software'];

  get jwks(): { keys: unknown[] } {
    return { keys: [this.key.publicJwk] };
  }

  /** The signed report as JSON bytes, or the printable page. */
  async report(owner: Owner, jobId: string, requestId: string, format: 'json' | 'html'): Promise<{ body: string; contentType: string }> {
    const job = await this.jobs.get(owner, jobId);
    if (!isTerminal(job.status)) throw appError('job_not_completed', `job ${jobId} is still ${job.status}: its report comes when it ends`, { details: { status: job.status } });
    const caseRecord = job.caseId ? (await this.bus.cases.read(caseScope(owner), job.caseId))?.record : undefined;
    const report = await signReport(buildReport(job, caseRecord, this.software), this.key);
    let body: string;
    let contentType: string;
    if (format === 'html') {
      const [original, result] = await Promise.all([this.bytesOrNothing(job.input), job.result?.image ? this.bytesOrNothing(job.result.image) : undefined]);
      body = reportHtml(report, { original: await thumbnail(original), result: await thumbnail(result) });
      contentType = 'text/html; charset=utf-8';
    } else {
      body = JSON.stringify(report, null, 2);
      contentType = 'application/json; charset=utf-8';
    }
    if (job.caseId) {
      await this.custody.record({ action: 'report.read', owner, caseId: job.caseId, jobId, requestId, sha256: sha256(Buffer.from(body)), bytes: Buffer.byteLength(body), detail: format });
    }
    return { body, contentType };
  }

  private async bytesOrNothing(ref: JobRecord['input']): Promise<Buffer | undefined> {
    try {
      return await this.bus.blobs.get(ref);
    } catch (error) {
      if (hasErrorCode(error, 'blob_missing')) return undefined; // expired: the page says so
      throw error;
    }
  }

  /**
   * Re-runs the job's pipeline on its original (a case's evidence, or the upload while it is
   * still stored: 410 after BLOB_TTL_S) and waits up to REPLAY_WAIT_MS for the comparison.
   */
  async replay(owner: Owner, jobId: string, requestId: string): Promise<{ ended: boolean; comparison: ReplayComparison }> {
    const first = await this.jobs.get(owner, jobId);
    if (first.status !== 'done') throw appError('job_not_completed', `job ${jobId} is ${first.status}: only a job that ended done can be replayed`, { details: { status: first.status } });
    const base = { pipeline: first.pipeline, requestId, replayOf: first.jobId };
    const { job } = first.caseId && first.input.name.startsWith('evidence/')
      ? await this.jobs.submit(owner, { ...base, caseId: first.caseId, originalSha256: first.input.sha256 })
      : await this.jobs.submit(owner, { ...base, image: await this.bus.blobs.get(first.input), input: first.input });
    const ended = await waitForJobEnd(this.bus, job.jobId, this.config.replayWaitMs);
    return { ended, comparison: compareRuns(first, ended ? await this.jobs.get(owner, job.jobId) : job) };
  }

  async comparison(owner: Owner, jobId: string, replayJobId: string): Promise<ReplayComparison> {
    const first = await this.jobs.get(owner, jobId);
    const replay = await this.jobs.get(owner, replayJobId);
    if (replay.replayOf !== first.jobId) throw appError('replay_not_found', `job ${replayJobId} is not a replay of ${jobId}`);
    return compareRuns(first, replay);
  }
}

/** Step by step: the first step whose model, provider or output hash differs is where the runs part. */
export function compareRuns(first: JobRecord, replay: JobRecord): ReplayComparison {
  const out: ReplayComparison = { jobId: first.jobId, replayJobId: replay.jobId, status: replay.status, originalSha256: first.input.sha256 };
  if (!isTerminal(replay.status)) return out;
  const a = first.result?.provenance ?? [];
  const b = replay.result?.provenance ?? [];
  const steps: ReplayStep[] = [];
  let firstDifference: ReplayComparison['firstDifference'] = null;
  first.pipeline.forEach((item, index) => {
    const pa = a.find((p) => p.index === index);
    const pb = b.find((p) => p.index === index);
    const step: ReplayStep = { index, step: item.step, identical: !!pa?.outputSha256 && pa.outputSha256 === pb?.outputSha256 };
    if (pa?.outputSha256) step.first = pa.outputSha256;
    if (pb?.outputSha256) step.replay = pb.outputSha256;
    if (pa?.modelSha256 || pb?.modelSha256) step.modelSha256Same = pa?.modelSha256 === pb?.modelSha256;
    if (pa?.provider || pb?.provider) step.providerSame = pa?.provider === pb?.provider;
    if (pa?.ms !== undefined || pb?.ms !== undefined) step.ms = { ...(pa?.ms !== undefined ? { first: pa.ms } : {}), ...(pb?.ms !== undefined ? { replay: pb.ms } : {}) };
    steps.push(step);
    if (firstDifference || step.identical) return;
    const reason = !pa || !pb ? 'step_missing'
      : step.modelSha256Same === false ? 'model_changed'
        : !pa.outputSha256 || !pb.outputSha256 ? 'no_hash_recorded'
          // Hashed by different definitions (a record from before digest version 2): not comparable.
          : (pa.digestVersion ?? 1) !== (pb.digestVersion ?? 1) ? 'digest_changed'
            : step.providerSame === false ? 'provider_changed' : 'output_differs';
    firstDifference = { index, step: item.step, reason };
  });
  const ra = first.result?.image?.sha256;
  const rb = replay.result?.image?.sha256;
  out.steps = steps;
  out.resultSha256 = { ...(ra ? { first: ra } : {}), ...(rb ? { replay: rb } : {}) };
  out.identical = replay.status === 'done' && ra !== undefined && ra === rb;
  out.firstDifference = out.identical ? null : firstDifference;
  return out;
}
