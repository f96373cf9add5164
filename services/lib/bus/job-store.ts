/**
 * Jobs on the bus. A job is two things, each written once:
 *   - its record as submitted: KV photolab-jobs, key <ownerHash>.<jobId>, created when the
 *     job is accepted and never rewritten;
 *   - its history: PHOTOLAB_EVENTS, photolab.events.<jobId>.step (one event per step run)
 *     and photolab.events.<jobId>.end (the one terminal event).
 * The state a client sees (status, steps, result) is projected from both (job-state.ts).
 *
 * Why not a record updated with compare-and-set at every step, as before: each step then wrote
 * the same fact three times (record twice, an event, a metric) and read the record once; the
 * broker's CPU per job was more than the whole pipeline's run time (bench: overhead).
 */
import { SHORT_PULLS } from './pulls.js';
import { createHash } from 'node:crypto';
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { headers as natsHeaders } from '@nats-io/transport-node';
import type { JobEvent, JobRecord, Owner } from '../shared/schema-types.js';
import { projectJob, type LiveProgress } from './job-state.js';
import { isWrongLastSequence } from './nats-errors.js';
import { STREAMS, subjects } from './subjects.js';


/** A stable, subject-safe token for a caller (sub + tenant). */
export const ownerHash = (owner: Owner): string =>
  createHash('sha256').update(`${owner.tenant ?? ''}\u0000${owner.sub}`).digest('hex').slice(0, 32);

/** The record's key: the owner first, so a caller's jobs are one subject filter. */
export const jobKey = (owner: Owner, jobId: string) => `${ownerHash(owner)}.${jobId}`;

export class JobStore {
  constructor(private readonly kv: KV, private readonly js: JetStreamClient, private readonly jsm: JetStreamManager) {}

  /** Stores the record as submitted; returns its revision (the order of submissions). */
  async create(record: JobRecord): Promise<number> {
    return this.kv.create(jobKey(record.owner, record.jobId), JSON.stringify(record));
  }

  /** Withdraws a job that never started (refused by the quota after its record was written). */
  async withdraw(owner: Owner, jobId: string): Promise<void> {
    await this.kv.delete(jobKey(owner, jobId));
  }

  /** The record as submitted, or null (no such job, or not this caller's). */
  submitted(owner: Owner, jobId: string): Promise<JobRecord | null> {
    return this.submittedByKey(jobKey(owner, jobId));
  }

  async submittedByKey(key: string): Promise<JobRecord | null> {
    const entry = await this.kv.get(key);
    if (!entry || entry.operation !== 'PUT' || entry.length === 0) return null;
    return entry.json<JobRecord>();
  }

  /** The job as it stands now: record + events (+ live progress the caller holds). */
  get(owner: Owner, jobId: string, live?: LiveProgress): Promise<JobRecord | null> {
    return this.getByOwnerHash(ownerHash(owner), jobId, live);
  }

  /** The same, for a job whose owner is known only by its hash (a case lists its jobs so). */
  async getByOwnerHash(owner: string, jobId: string, live?: LiveProgress): Promise<JobRecord | null> {
    const [record, end] = await Promise.all([this.submittedByKey(`${owner}.${jobId}`), this.terminal(jobId)]);
    if (!record) return null;
    // A done job's provenance names every step; other jobs need their step events, which the
    // caller may have seen go by (then nothing more is read).
    const steps = end?.type === 'job.done' ? [] : live?.complete ? live.stepEvents : await this.stepEvents(jobId);
    return projectJob(record, steps, end, live);
  }

  /**
   * The job's terminal event, or null while it runs (one direct get, no consumer). A direct get
   * may be answered by a replica still catching up; `fromLeader` asks the stream's leader,
   * where an answer of "none" is final.
   */
  async terminal(jobId: string, options: { fromLeader?: boolean } = {}): Promise<JobEvent | null> {
    const query = { last_by_subj: subjects.endEvent(jobId) };
    const message = options.fromLeader ? await this.jsm.streams.getMessage(STREAMS.events, query) : await this.jsm.direct.getMessage(STREAMS.events, query);
    return message ? message.json<JobEvent>() : null;
  }

  /** The job's durable step events, in order. */
  async stepEvents(jobId: string): Promise<JobEvent[]> {
    const subject = subjects.stepEvents(jobId);
    const last = await this.jsm.direct.getMessage(STREAMS.events, { last_by_subj: subject });
    if (!last) return [];
    const events: JobEvent[] = [];
    // An ordered consumer (ephemeral, in server memory) reads up to the last one known.
    const consumer = await this.js.consumers.get(STREAMS.events, { filter_subjects: subject });
    const messages = await consumer.consume(SHORT_PULLS);
    try {
      for await (const m of messages) {
        events.push(m.json<JobEvent>());
        if (m.seq >= last.seq) break;
      }
    } finally {
      await messages.close().catch(() => undefined);
    }
    return events;
  }

  /** Job ids of a caller, oldest first (ULIDs sort by time). */
  async jobIds(owner: Owner): Promise<string[]> {
    const prefix = `${ownerHash(owner)}.`;
    const ids: string[] = [];
    for await (const key of await this.kv.keys(`${prefix}>`)) ids.push(key.slice(prefix.length));
    return ids.sort();
  }

  /**
   * Publishes the job's terminal event unless it already has one: the expected last sequence
   * 0 on photolab.events.<jobId>.end lets exactly one of several racers (last step, cancel,
   * deadline sweep, a failing step) write it, for as long as the events are kept. Returns the
   * event as stored when this call wrote it, null when another had.
   */
  async end(event: JobEvent & { eventId: string }): Promise<{ event: JobEvent; seq: number } | null> {
    try {
      const ack = await this.js.publish(subjects.endEvent(event.jobId), JSON.stringify(event), {
        expect: { lastSubjectSequence: 0 },
        headers: eventHeaders(event.type),
      });
      return { event, seq: ack.seq };
    } catch (error) {
      if (!isWrongLastSequence(error)) throw error;
      // Someone's end is stored. Ours, when an earlier try of this very call was stored and its
      // ack lost (a reconnect): then we did win.
      const stored = await this.terminal(event.jobId, { fromLeader: true });
      return stored?.eventId === event.eventId ? { event: stored, seq: 0 } : null;
    }
  }
}

/** Operators filter on the header with the NATS CLI (`nats sub ... --headers-only`). */
export function eventHeaders(type: string) {
  const h = natsHeaders();
  h.set('Photolab-Event', type);
  return h;
}
