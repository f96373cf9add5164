/**
 * Every subject, stream, consumer and bucket name of the system, in one place.
 * docs/messaging.md explains them for operators using the NATS CLI.
 */
export const STREAMS = {
  /** Work queue of step messages: photolab.stage.<step>. One durable consumer per step. */
  stages: 'PHOTOLAB_STAGES',
  /** Raw frames between steps, in chunks: photolab.frames.<jobId>.<index>.<chunk>. Memory, TTL. */
  frames: 'PHOTOLAB_FRAMES',
  /** Job events for clients: photolab.events.<jobId>. Kept for replay. */
  events: 'PHOTOLAB_EVENTS',
  /** Messages a step gave up on: photolab.dlq.<step>. */
  deadLetters: 'PHOTOLAB_DLQ',
  /** Encoded images (uploads, results, caller blobs): photolab.blobs.<name>.<chunk>|meta. File, TTL. */
  blobs: 'PHOTOLAB_BLOBS',
  /** Stage-run and job metrics on their way to ClickHouse: photolab.metrics.stage|job. */
  metrics: 'PHOTOLAB_METRICS',
  /**
   * Originals kept as case evidence: photolab.evidence.<scope>.<sha256>.<chunk>|meta. File,
   * no max_age: an original must outlive BLOB_TTL_S for as long as its case exists.
   */
  evidence: 'PHOTOLAB_EVIDENCE',
} as const;

export const BUCKETS = {
  /** KV: job records by job id. */
  jobs: 'photolab-jobs',
  /** KV: idempotency keys -> job id. */
  idempotency: 'photolab-idempotency',
  /** KV: per-caller job list, keys <ownerHash>.<jobId> (listed with a subject filter, never the whole jobs bucket). */
  jobIndex: 'photolab-job-index',
  /** KV: unfinished jobs, keys <ownerHash>.<jobId>.<deadline ms>; deleted when the job ends (quota, deadline sweep). */
  openJobs: 'photolab-open-jobs',
  /** KV (memory, TTL 30 s): live stage processes, <step>.<worker> -> StagePresence. */
  stages: 'photolab-stages',
  /** KV (file, no TTL): cases <scope>.<caseId>, their jobs <scope>.<caseId>.j.<jobId> and evidence <scope>.<caseId>.e.<sha256>. */
  cases: 'photolab-cases',
} as const;

export const subjects = {
  stage: (step: string) => `photolab.stage.${step}`,
  stageAll: 'photolab.stage.*',
  frame: (frameId: string) => `photolab.frames.${frameId}`,
  frameChunk: (frameId: string, chunk: number) => `photolab.frames.${frameId}.${chunk}`,
  /** A blob name's subject prefix: '/' separates its parts, '.' separates subject tokens. */
  blob: (name: string) => `photolab.blobs.${name.replaceAll('/', '.')}`,
  blobsAll: 'photolab.blobs.>',
  framesOfJob: (jobId: string) => `photolab.frames.${jobId}.>`,
  framesAll: 'photolab.frames.>',
  events: (jobId: string) => `photolab.events.${jobId}`,
  eventsAll: 'photolab.events.*',
  deadLetter: (step: string) => `photolab.dlq.${step}`,
  deadLettersAll: 'photolab.dlq.>',
  stageMetric: 'photolab.metrics.stage',
  jobMetric: 'photolab.metrics.job',
  /** Chain-of-custody records, on the metrics stream so they take the metrics' lossless path to ClickHouse. */
  auditMetric: 'photolab.metrics.audit',
  evidence: (name: string) => `photolab.${name.replaceAll('/', '.')}`,
  evidenceAll: 'photolab.evidence.>',
  metricsAll: 'photolab.metrics.>',
} as const;

/** The durable consumer of the metrics sink on PHOTOLAB_METRICS. */
export const METRICS_CONSUMER = 'metrics-sink';

/** The durable consumer that the replicas of one step share. */
export const STAGE_CONSUMER_PREFIX = 'stage-';
export const stageConsumer = (step: string) => `${STAGE_CONSUMER_PREFIX}${step}`;

/** Message ids: JetStream drops a second publish with the same id within the duplicate window. */
export const msgIds = {
  step: (jobId: string, index: number) => `${jobId}:${index}`,
  event: (jobId: string, key: string) => `${jobId}:${key}`,
};

export const uploadBlobName = (jobId: string) => `uploads/${jobId}`;
export const resultBlobName = (jobId: string) => `results/${jobId}`;
/** An original kept for a case scope, named by its content: the same bytes are kept once per scope. */
export const evidenceBlobName = (scope: string, sha256: string) => `evidence/${scope}/${sha256}`;
