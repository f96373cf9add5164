/**
 * Backlog of the stages, read from JetStream: for each durable consumer `stage-<step>` on stream
 * PHOTOLAB_STAGES, num_pending (not yet delivered) + num_ack_pending (delivered, not acked).
 * The edge uses the total for MAX_BACKLOG; /metrics exposes it per stage.
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import { isStreamNotFound } from '../bus/nats-errors.js';
import type { Registry } from './prometheus.js';
import { STAGES_STREAM, STAGE_CONSUMER_PREFIX } from './constants.js';

export interface StageBacklog {
  step: string;
  consumer: string;
  /** Messages not delivered yet. */
  pending: number;
  /** Messages delivered and not acked yet (being worked on, or waiting for redelivery). */
  ackPending: number;
  /** pending + ackPending. */
  backlog: number;
}

/**
 * One entry per `stage-<step>` consumer (all of them, or only `steps` when given; a listed
 * step without a consumer reads 0). No PHOTOLAB_STAGES stream yet: every step reads 0.
 */
export async function readStageBacklog(jsm: JetStreamManager, steps?: readonly string[]): Promise<StageBacklog[]> {
  const found = new Map<string, StageBacklog>();
  try {
    for await (const ci of jsm.consumers.list(STAGES_STREAM)) {
      if (!ci.name.startsWith(STAGE_CONSUMER_PREFIX)) continue;
      const step = ci.name.slice(STAGE_CONSUMER_PREFIX.length);
      found.set(step, { step, consumer: ci.name, pending: ci.num_pending, ackPending: ci.num_ack_pending, backlog: ci.num_pending + ci.num_ack_pending });
    }
  } catch (error) {
    if (!isStreamNotFound(error)) throw error;
  }
  const wanted = steps ?? [...found.keys()].sort();
  return wanted.map((step) => found.get(step) ?? { step, consumer: STAGE_CONSUMER_PREFIX + step, pending: 0, ackPending: 0, backlog: 0 });
}

/** Sum of the backlogs. */
export const totalBacklog = (list: readonly StageBacklog[]): number => list.reduce((n, b) => n + b.backlog, 0);

/**
 * Registers gauges photolab_stage_backlog / _pending / _ack_pending{step} on the registry,
 * refreshed from JetStream at every registry.collect().
 */
export function registerBacklogGauges(registry: Registry, jsm: JetStreamManager, steps?: readonly string[]): void {
  const backlog = registry.gauge('photolab_stage_backlog', 'Step messages waiting or in progress (num_pending + num_ack_pending of consumer stage-<step>).', ['step']);
  const pending = registry.gauge('photolab_stage_pending', 'Step messages not yet delivered to a stage (num_pending).', ['step']);
  const ackPending = registry.gauge('photolab_stage_ack_pending', 'Step messages delivered and not yet acked (num_ack_pending).', ['step']);
  registry.onCollect(async () => {
    const list = await readStageBacklog(jsm, steps);
    backlog.reset();
    pending.reset();
    ackPending.reset();
    for (const b of list) {
      backlog.set({ step: b.step }, b.backlog);
      pending.set({ step: b.step }, b.pending);
      ackPending.set({ step: b.step }, b.ackPending);
    }
  });
}
