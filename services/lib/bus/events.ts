/**
 * A job's events. Two kinds, by what losing one would cost:
 *   - step facts (step.finished, step.skipped, step.retrying): durable, on
 *     photolab.events.<jobId>.step, each with a message id so a step that runs twice
 *     (redelivery after a crash) stores each fact once;
 *   - progress (job.accepted, step.started): core NATS on photolab.progress.<jobId>,
 *     not stored; a client that misses one loses nothing the next fact does not say.
 * The terminal event is written by JobStore.end (exactly one per job).
 */
import type { JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { JobEvent } from '../shared/schema-types.js';
import { eventHeaders } from './job-store.js';
import { msgIds, subjects } from './subjects.js';

export async function publishStepEvent(js: JetStreamClient, event: JobEvent, dedupKey: string): Promise<void> {
  await js.publish(subjects.stepEvents(event.jobId), JSON.stringify(event), { msgID: msgIds.event(event.jobId, dedupKey), headers: eventHeaders(event.type) });
}

export function publishProgress(nc: NatsConnection, event: JobEvent): void {
  nc.publish(subjects.progressEvents(event.jobId), JSON.stringify(event), { headers: eventHeaders(event.type) });
}
