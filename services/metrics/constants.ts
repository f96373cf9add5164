/** The metrics side's names on the bus, taken from services/bus/subjects.ts (one source of truth). */
import { METRICS_CONSUMER, STAGE_CONSUMER_PREFIX, STREAMS, subjects } from '../bus/subjects.js';

export const METRICS_STREAM = STREAMS.metrics;
export const METRICS_SUBJECTS = {
  stage: subjects.stageMetric,
  job: subjects.jobMetric,
  audit: subjects.auditMetric,
  all: subjects.metricsAll,
} as const;
export { METRICS_CONSUMER, STAGE_CONSUMER_PREFIX };
/** Where messages that can never be inserted go (stream PHOTOLAB_DLQ captures photolab.dlq.>). */
export const METRICS_DLQ_SUBJECT = subjects.deadLetter('metrics');
export const STAGES_STREAM = STREAMS.stages;
