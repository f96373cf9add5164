/**
 * Chain of custody: every access to evidence becomes an AuditRecord on photolab.audit.<caseId>,
 * the same lossless path as the metrics (JetStream first, then the metrics sink into ClickHouse,
 * which waits out an outage with the records un-acked in the stream).
 *
 * record() awaits the JetStream ack and throws when it does not come: the edge then refuses the
 * access (503) rather than hand out evidence without its record. The message id is the record's
 * ULID, so a retried publish is stored once and the table (ReplacingMergeTree on audit_id)
 * never shows a row twice.
 */
import type { JetStreamClient } from '@nats-io/jetstream';
import { caseScope } from '../bus/case-store.js';
import { subjects } from '../bus/subjects.js';
import { appError } from '../shared/errors.js';
import { newId } from '../shared/ids.js';
import type { AuditRecord, Owner } from '../shared/schema-types.js';

export type AuditAction = AuditRecord['action'];

export interface AuditInput {
  action: AuditAction;
  owner: Owner;
  caseId?: string;
  jobId?: string;
  requestId?: string;
  sha256?: string;
  bytes?: number;
  detail?: string;
}

export class Custody {
  constructor(private readonly js: JetStreamClient) {}

  async record(input: AuditInput): Promise<AuditRecord> {
    const record: AuditRecord = {
      auditId: newId(),
      at: Date.now(),
      action: input.action,
      scope: caseScope(input.owner),
      caseId: input.caseId ?? '',
      jobId: input.jobId ?? '',
      sub: input.owner.sub,
      tenant: input.owner.tenant ?? '',
      requestId: input.requestId ?? '',
      sha256: input.sha256 ?? '',
      bytes: input.bytes ?? 0,
      ...(input.detail ? { detail: input.detail } : {}),
    };
    try {
      await this.js.publish(subjects.audit(record.caseId || '_'), JSON.stringify(record), { msgID: `audit:${record.auditId}` });
    } catch (error) {
      throw appError('audit_unavailable', `the access could not be recorded in the chain of custody, so it is refused: ${(error as Error).message}`, { cause: error });
    }
    return record;
  }
}
