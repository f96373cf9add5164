/**
 * Names the metrics side uses on the bus. They match services/bus/subjects.ts (STREAMS.metrics,
 * subjects.stageMetric/jobMetric/metricsAll, stageConsumer) and services/bus/topology.ts's
 * PHOTOLAB_METRICS stream config; kept here so the metrics service builds on its own.
 */
export const METRICS_STREAM = 'PHOTOLAB_METRICS';
export const METRICS_SUBJECTS = {
  stage: 'photolab.metrics.stage',
  job: 'photolab.metrics.job',
  all: 'photolab.metrics.>',
} as const;
/** Durable pull consumer of the sink. */
export const METRICS_CONSUMER = 'metrics-sink';
/** Where messages that can never be inserted go (stream PHOTOLAB_DLQ captures photolab.dlq.>). */
export const METRICS_DLQ_SUBJECT = 'photolab.dlq.metrics';

export const STAGES_STREAM = 'PHOTOLAB_STAGES';
export const STAGE_CONSUMER_PREFIX = 'stage-';
