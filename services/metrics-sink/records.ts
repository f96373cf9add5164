/**
 * Job events -> ClickHouse rows. An event is checked against its JSON Schema
 * (schemas/messages/job-event.schema.json, whose `run` and `summary` are the stage-metric and
 * job-metric schemas) and then against what the columns can
 * hold (unsigned integers, DateTime range), so that an insert never fails because of one row.
 */
import type { AuditRecord, JobEvent, JobMetric, StageMetric } from '../lib/shared/schema-types.js';
import { describeErrors, schemaValidator } from '../lib/shared/schemas.js';

export interface StageRunRow {
  run_id: string;
  job_id: string;
  sub: string;
  tenant: string;
  step: string;
  step_index: number;
  attempt: number;
  status: string;
  error_code: string;
  model: string;
  model_sha256: string;
  provider: string;
  input_pixels: number;
  output_pixels: number;
  input_bytes: number;
  output_bytes: number;
  queue_wait_ms: number;
  run_ms: number;
  host: string;
  started_at_ms: number;
  finished_at_ms: number;
  finished_at: number;
  ingested_at_ms: number;
}

export interface JobRow {
  job_id: string;
  sub: string;
  tenant: string;
  status: string;
  error_code: string;
  steps: number;
  pipeline: string;
  input_bytes: number;
  output_bytes: number;
  total_ms: number;
  host: string;
  created_at_ms: number;
  finished_at_ms: number;
  finished_at: number;
  ingested_at_ms: number;
}

export interface AuditRow {
  audit_id: string;
  scope: string;
  case_id: string;
  job_id: string;
  action: string;
  sub: string;
  tenant: string;
  request_id: string;
  sha256: string;
  bytes: number;
  detail: string;
  at_ms: number;
  at: number;
  ingested_at_ms: number;
}

export type MetricRecord =
  | { kind: 'stage'; id: string; row: StageRunRow }
  | { kind: 'job'; id: string; row: JobRow }
  | { kind: 'audit'; id: string; row: AuditRow };

/** A message that can never be inserted; it goes to the dead-letter subject. */
export class InvalidMetricError extends Error {
  readonly code: string;
  readonly details?: unknown;
  constructor(code: string, message: string, details?: unknown) {
    super(message);
    this.name = 'InvalidMetricError';
    this.code = code;
    this.details = details;
  }
}

// DateTime holds 1970-01-01 .. 2106-02-07; anything outside is a producer bug.
const MIN_EPOCH_MS = 946_684_800_000; // 2000-01-01
const MAX_EPOCH_MS = 4_294_967_295_000;
const MAX_UINT16 = 65_535;

function checkUint(value: number, field: string, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isSafeInteger(value) || value < 0 || value > max) {
    throw new InvalidMetricError('invalid_metric', `${field} must be an integer between 0 and ${max}, got ${value}`);
  }
}
function checkDuration(value: number, field: string): void {
  if (!Number.isFinite(value) || value < 0) throw new InvalidMetricError('invalid_metric', `${field} must be a finite number >= 0, got ${value}`);
}
function checkEpochMs(value: number, field: string): void {
  if (!Number.isSafeInteger(value) || value < MIN_EPOCH_MS || value > MAX_EPOCH_MS) {
    throw new InvalidMetricError('invalid_metric', `${field} must be epoch milliseconds between 2000-01-01 and 2106-02-07, got ${value}`);
  }
}

function validate<T>(schema: string, value: unknown, what: string): T {
  const fn = schemaValidator<T>(schema);
  if (fn(value)) return value;
  const issues = describeErrors(fn.errors);
  const first = issues[0];
  throw new InvalidMetricError('invalid_metric', `${what} is invalid${first ? `: ${first.path} ${first.message}` : ''}`, issues);
}

export function stageRunRow(m: StageMetric, ingestedAtMs: number): StageRunRow {
  checkUint(m.index, 'index', MAX_UINT16);
  checkUint(m.attempt, 'attempt', MAX_UINT16);
  for (const f of ['inputPixels', 'outputPixels', 'inputBytes', 'outputBytes'] as const) checkUint(m[f], f);
  checkDuration(m.queueWaitMs, 'queueWaitMs');
  checkDuration(m.runMs, 'runMs');
  checkEpochMs(m.startedAt, 'startedAt');
  checkEpochMs(m.finishedAt, 'finishedAt');
  if (!m.runId) throw new InvalidMetricError('invalid_metric', 'runId must not be empty');
  return {
    run_id: m.runId,
    job_id: m.jobId,
    sub: m.sub,
    tenant: m.tenant,
    step: m.step,
    step_index: m.index,
    attempt: m.attempt,
    status: m.status,
    error_code: m.errorCode,
    model: m.model,
    model_sha256: m.modelSha256,
    provider: m.provider,
    input_pixels: m.inputPixels,
    output_pixels: m.outputPixels,
    input_bytes: m.inputBytes,
    output_bytes: m.outputBytes,
    queue_wait_ms: m.queueWaitMs,
    run_ms: m.runMs,
    host: m.host,
    started_at_ms: m.startedAt,
    finished_at_ms: m.finishedAt,
    finished_at: Math.floor(m.finishedAt / 1000),
    ingested_at_ms: ingestedAtMs,
  };
}

export function jobRow(m: JobMetric, ingestedAtMs: number): JobRow {
  checkUint(m.steps, 'steps', MAX_UINT16);
  checkUint(m.inputBytes, 'inputBytes');
  checkUint(m.outputBytes, 'outputBytes');
  checkDuration(m.totalMs, 'totalMs');
  checkEpochMs(m.createdAt, 'createdAt');
  checkEpochMs(m.finishedAt, 'finishedAt');
  if (!m.jobId) throw new InvalidMetricError('invalid_metric', 'jobId must not be empty');
  return {
    job_id: m.jobId,
    sub: m.sub,
    tenant: m.tenant,
    status: m.status,
    error_code: m.errorCode,
    steps: m.steps,
    pipeline: m.pipeline,
    input_bytes: m.inputBytes,
    output_bytes: m.outputBytes,
    total_ms: m.totalMs,
    host: m.host,
    created_at_ms: m.createdAt,
    finished_at_ms: m.finishedAt,
    finished_at: Math.floor(m.finishedAt / 1000),
    ingested_at_ms: ingestedAtMs,
  };
}

export function auditRow(m: AuditRecord, ingestedAtMs: number): AuditRow {
  checkUint(m.bytes, 'bytes');
  checkEpochMs(m.at, 'at');
  return {
    audit_id: m.auditId, scope: m.scope, case_id: m.caseId, job_id: m.jobId, action: m.action, sub: m.sub, tenant: m.tenant,
    request_id: m.requestId, sha256: m.sha256, bytes: m.bytes, detail: m.detail ?? '', at_ms: m.at, at: Math.floor(m.at / 1000), ingested_at_ms: ingestedAtMs,
  };
}

/** The stored subjects the sink reads: a job's events (photolab.events.<jobId>.step|end) and custody records (photolab.audit.<caseId>). */
const EVENT_SUBJECT = /^photolab\.events\.[^.]+\.(step|end)$/;
const AUDIT_SUBJECT = /^photolab\.audit\.[^.]+$/;

/**
 * Parses one message of stream PHOTOLAB_EVENTS into the rows it carries: a stage run (`run`,
 * on step events and on job.failed), a job (`summary`, on terminal events), both, or none.
 * Throws InvalidMetricError for anything that cannot become rows (unknown subject, not JSON,
 * schema violation, out-of-range value).
 */
export function parseMetricMessage(subject: string, data: Uint8Array, ingestedAtMs = Date.now()): MetricRecord[] {
  const audit = AUDIT_SUBJECT.test(subject);
  if (!audit && !EVENT_SUBJECT.test(subject)) {
    throw new InvalidMetricError('unknown_metric_subject', `no metrics are read from ${subject} (expected photolab.events.<jobId>.step or .end, or photolab.audit.<caseId>)`);
  }
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
  } catch (error) {
    throw new InvalidMetricError('invalid_json', `event on ${subject} is not JSON: ${(error as Error).message}`);
  }
  if (audit) {
    const a = validate<AuditRecord>('messages/audit-record.schema.json', value, 'AuditRecord');
    return [{ kind: 'audit', id: a.auditId, row: auditRow(a, ingestedAtMs) }];
  }
  const event = validate<JobEvent>('messages/job-event.schema.json', value, 'JobEvent');
  const records: MetricRecord[] = [];
  if (event.run) records.push({ kind: 'stage', id: event.run.runId, row: stageRunRow(event.run, ingestedAtMs) });
  if (event.summary) records.push({ kind: 'job', id: event.summary.jobId, row: jobRow(event.summary, ingestedAtMs) });
  return records;
}
