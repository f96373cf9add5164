/**
 * Job events on photolab.events.<jobId>. Each event has a message id, so a step that runs
 * twice (redelivery after a crash) publishes each of its events once.
 */
import { headers } from '@nats-io/transport-node';
import type { JetStreamClient } from '@nats-io/jetstream';
import type { JobEvent } from '../shared/schema-types.js';
import { msgIds, subjects } from './subjects.js';

export async function publishEvent(js: JetStreamClient, event: JobEvent, dedupKey: string): Promise<void> {
  const h = headers();
  h.set('Photolab-Event', event.type);
  await js.publish(subjects.events(event.jobId), JSON.stringify(event), { msgID: msgIds.event(event.jobId, dedupKey), headers: h });
}
