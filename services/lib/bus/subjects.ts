/**
 * Every subject, stream, consumer and bucket name of the system, in one place.
 * docs/messaging.md explains them for operators using the NATS CLI.
 */
export const STREAMS = {
  /** Work queue of step messages: photolab.stage.<step>. One durable consumer per step. */
  stages: 'PHOTOLAB_STAGES',
  /** Raw frames between steps, in chunks: photolab.frames.<jobId>.<index>.<chunk>. Memory, TTL. */
  frames: 'PHOTOLAB_FRAMES',
  /**
   * A job's durable history, the one place each fact of a job is persisted (docs/messaging.md):
   * photolab.events.<jobId>.step (step.finished / skipped / retrying, each with its stage-run
   * metric) and photolab.events.<jobId>.end (the one terminal event, with the job's metric).
   * Progress (job.accepted, step.started) goes to photolab.progress.<jobId> over core NATS
   * only: live clients see it, nothing stores it. (It is outside photolab.events.> because
   * nats-server 2.9 takes a consumer filter only as a subset of one stream subject.) Clients replay, the metrics sink and the
   * edge's job view all read this stream.
   */
  events: 'PHOTOLAB_EVENTS',
  /** Messages a step gave up on: photolab.dlq.<step>. */
  deadLetters: 'PHOTOLAB_DLQ',
  /** Encoded images (uploads, results, caller blobs): photolab.blobs.<name>.<chunk>|meta. File, TTL. */
  blobs: 'PHOTOLAB_BLOBS',
  /**
   * Originals kept as case evidence: photolab.evidence.<scope>.<sha256>.<chunk>. File, no
   * max_age: an original must outlive BLOB_TTL_S for as long as its case exists.
   */
  evidence: 'PHOTOLAB_EVIDENCE',
} as const;

export const BUCKETS = {
  /**
   * KV: the job as submitted, key <ownerHash>.<jobId>, written once when the job is accepted
   * (its status and progress are in PHOTOLAB_EVENTS). The owner prefix makes a caller's job
   * list a key listing and another caller's job simply absent.
   */
  jobs: 'photolab-jobs',
  /** KV: idempotency keys -> job id. */
  idempotency: 'photolab-idempotency',
  /** KV (memory, TTL 30 s): live stage processes, <step>.<worker> -> StagePresence. */
  stages: 'photolab-stages',
  /** KV (file, no TTL): cases <scope>.<caseId>, their jobs <scope>.<caseId>.j.<jobId> and evidence <scope>.<caseId>.e.<sha256>. */
  cases: 'photolab-cases',
} as const;

export const subjects = {
  stage: (step: string) => `photolab.stage.${step}`,
  stageAll: 'photolab.stage.*',
  frame: (frameId: string) => `photolab.frames.${frameId}`,
  /** A blob name's subject prefix: '/' separates its parts, '.' separates subject tokens. */
  blob: (name: string) => `photolab.blobs.${name.replaceAll('/', '.')}`,
  blobsAll: 'photolab.blobs.>',
  framesOfJob: (jobId: string) => `photolab.frames.${jobId}.>`,
  framesAll: 'photolab.frames.>',
  /** Durable step facts of one job (step.finished, step.skipped, step.retrying). */
  stepEvents: (jobId: string) => `photolab.events.${jobId}.step`,
  /** The job's one terminal event (job.done|failed|canceled|timeout). */
  endEvent: (jobId: string) => `photolab.events.${jobId}.end`,
  /** Live progress (job.accepted, step.started): core NATS, never stored. */
  progressEvents: (jobId: string) => `photolab.progress.${jobId}`,
  /** Every stored event of one job. */
  jobEvents: (jobId: string) => `photolab.events.${jobId}.*`,
  endEventsAll: 'photolab.events.*.end',
  progressAll: 'photolab.progress.*',
  eventsAll: 'photolab.events.>',
  deadLetter: (step: string) => `photolab.dlq.${step}`,
  deadLettersAll: 'photolab.dlq.>',
  /**
   * Chain-of-custody records (schemas/messages/audit-record.schema.json), stored once in
   * PHOTOLAB_EVENTS beside the jobs' events, on the metrics sink's lossless path to ClickHouse.
   */
  audit: (caseId: string) => `photolab.audit.${caseId}`,
  auditAll: 'photolab.audit.>',
  evidence: (name: string) => `photolab.${name.replaceAll('/', '.')}`,
  evidenceAll: 'photolab.evidence.>',
} as const;

/** The durable consumer of the metrics sink on PHOTOLAB_EVENTS (stage and job rows come from the events). */
export const METRICS_CONSUMER = 'metrics-sink';

/** The durable consumer that the replicas of one step share. */
export const STAGE_CONSUMER_PREFIX = 'stage-';
export const stageConsumer = (step: string) => `${STAGE_CONSUMER_PREFIX}${step}`;

/** Message ids: JetStream drops a second publish with the same id within the duplicate window. */
export const msgIds = {
  step: (jobId: string, index: number) => `${jobId}:${index}`,
  event: (jobId: string, key: string) => `${jobId}:${key}`,
};

/** Every stream of the product, KV buckets included (a bucket is the stream KV_<bucket>). */
export const ALL_STREAMS: string[] = [...Object.values(STREAMS), ...Object.values(BUCKETS).map((b) => `KV_${b}`)];


export const uploadBlobName = (jobId: string) => `uploads/${jobId}`;
export const resultBlobName = (jobId: string) => `results/${jobId}`;
/** An original kept for a case scope, named by its content: the same bytes are kept once per scope. */
export const evidenceBlobName = (scope: string, sha256: string) => `evidence/${scope}/${sha256}`;
