/**
 * Reading the chain of custody (table audit) per case. Like the stats, the metrics service
 * answers over NATS request/reply (embedded chDB lives in that one process), and the edge asks
 * with requestAudit() for GET /api/cases/:id/audit.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { appError, toAppError, fromErrorInfo } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import type { AuditEntry } from '../shared/schema-types.js';
import { isNotCreatedYet, type MetricsStore } from './clickhouse.js';
import { AUDIT_TABLE } from './migrations.js';

export const AUDIT_SUBJECT = 'photolab.rpc.metrics.audit';
const SCOPE = /^[0-9a-f]{32}$/;
const CASE_ID = /^[A-Za-z0-9_-]{1,64}$/;
/** Most rows one answer carries; a case with more is answered in full up to this (oldest first). */
export const AUDIT_MAX_ROWS = 100_000;

interface AuditQuery { scope: string; caseId: string }
type AuditReply = { ok: true; records: AuditEntry[] } | { ok: false; error: { status: number; code: string; message: string } };

function checkQuery(q: AuditQuery): void {
  if (!SCOPE.test(q.scope) || !CASE_ID.test(q.caseId)) throw appError('invalid_audit_query', 'scope and caseId are malformed');
}

/**
 * The case's rows, oldest first, without duplicates (FINAL). The two values are inlined, not
 * bound: clickhouse-server 18.16 has no query parameters, and both are checked against strict
 * patterns (hex and [A-Za-z0-9_-]) that leave nothing to escape.
 */
export async function queryAudit(store: MetricsStore, q: AuditQuery): Promise<AuditEntry[]> {
  checkQuery(q);
  const sql = `SELECT audit_id, at_ms, action, case_id, job_id, sub, tenant, request_id, sha256, bytes, detail
    FROM ${store.table(AUDIT_TABLE)} FINAL
    WHERE scope = '${q.scope}' AND case_id = '${q.caseId}'
    ORDER BY at_ms, audit_id LIMIT ${AUDIT_MAX_ROWS}`;
  let rows: Record<string, string | number>[];
  try {
    rows = await (await store.client.query({ query: sql, format: 'JSONEachRow' })).json<Record<string, string | number>>();
  } catch (error) {
    // No audit row was ever inserted here: the sink creates the table with its first batch.
    if (isNotCreatedYet(error)) return [];
    throw error;
  }
  return rows.map((r) => ({
    auditId: String(r.audit_id), at: new Date(Number(r.at_ms)).toISOString(), action: String(r.action), caseId: String(r.case_id),
    jobId: String(r.job_id), sub: String(r.sub), tenant: String(r.tenant), requestId: String(r.request_id), sha256: String(r.sha256),
    bytes: Number(r.bytes), ...(r.detail ? { detail: String(r.detail) } : {}),
  }));
}

export function serveAudit(nc: NatsConnection, store: MetricsStore, logger?: Logger): () => void {
  const sub = nc.subscribe(AUDIT_SUBJECT, {
    queue: 'metrics-audit',
    callback: (err, msg) => {
      if (err) return;
      void (async () => {
        let reply: AuditReply;
        try {
          reply = { ok: true, records: await queryAudit(store, JSON.parse(msg.string()) as AuditQuery) };
        } catch (error) {
          const e = toAppError(error);
          if (e.status >= 500) logger?.warn({ err: e.message }, 'audit query failed');
          reply = { ok: false, error: { status: e.status, code: e.code, message: e.message } };
        }
        msg.respond(JSON.stringify(reply));
      })();
    },
  });
  return () => sub.unsubscribe();
}

/** Asks the metrics service for a case's audit rows; 503 audit_unavailable when none answers. */
export async function requestAudit(nc: NatsConnection, q: AuditQuery, timeoutMs = 10_000): Promise<AuditEntry[]> {
  checkQuery(q);
  let reply: AuditReply;
  try {
    reply = JSON.parse((await nc.request(AUDIT_SUBJECT, JSON.stringify(q), { timeout: timeoutMs })).string()) as AuditReply;
  } catch (error) {
    throw appError('audit_unavailable', `the metrics service did not answer: ${(error as Error)?.message ?? error}`, { cause: error });
  }
  if (reply.ok) return reply.records;
  throw fromErrorInfo(reply.error);
}
