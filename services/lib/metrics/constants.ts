/** The metrics side's names on the bus, taken from services/lib/bus/subjects.ts (one source of truth). */
import { METRICS_CONSUMER, STAGE_CONSUMER_PREFIX, STREAMS, subjects } from '../bus/subjects.js';

/**
 * The sink reads the jobs' events: each step event carries its stage-run row (`run`), each
 * terminal event its job row (`summary`). No metric is written a second time for the sink.
 */
export const METRICS_STREAM = STREAMS.events;
export { METRICS_CONSUMER, STAGE_CONSUMER_PREFIX };
/** Where messages that can never be inserted go (stream PHOTOLAB_DLQ captures photolab.dlq.>). */
export const METRICS_DLQ_SUBJECT = subjects.deadLetter('metrics');
export const STAGES_STREAM = STREAMS.stages;
