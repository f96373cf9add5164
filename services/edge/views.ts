/**
 * How a job record looks to API clients (schemas/http/job.schema.json), with the PLAYE front
 * end's old names beside the new ones: task_id (= jobId), state (Celery's state names) and in
 * `result` the detections (faces / objects) and the result's url.
 */
import type { JobRecord, JobStatus, JobView } from '../lib/shared/schema-types.js';
import { boxesOf, playeFaces, playeObjects } from './playe-shapes.js';

/** The PLAYE front end's (Celery's) state names. */
const LEGACY_STATE: Record<JobStatus, string> = {
  pending: 'PENDING', running: 'STARTED', done: 'SUCCESS', failed: 'FAILURE', canceled: 'REVOKED', timeout: 'FAILURE',
};

const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());

export function jobView(job: JobRecord): JobView {
  const view: JobView = {
    jobId: job.jobId,
    task_id: job.jobId,
    status: job.status,
    state: LEGACY_STATE[job.status],
    pipeline: job.pipeline,
    steps: job.steps,
    createdAt: iso(job.createdAt)!,
    deadline: iso(job.deadline)!,
    input: { bytes: job.input.bytes, sha256: job.input.sha256 },
  };
  if (job.caseId) view.caseId = job.caseId;
  if (job.replayOf) view.replayOf = job.replayOf;
  if (job.status === 'done') view.report = `/api/jobs/${job.jobId}/report`;
  if (job.startedAt) view.startedAt = iso(job.startedAt);
  if (job.finishedAt) view.finishedAt = iso(job.finishedAt);
  if (job.error) view.error = job.error;
  if (job.result) {
    view.result = { findings: job.result.findings, provenance: job.result.provenance };
    // Legacy (PLAYE) clients read detections straight from `result`, in the shapes the
    // /api/ai/* answers give them: a job the front end polls gives its screens what they read.
    const { faces, objects } = job.result.findings;
    if (faces) view.result.faces = playeFaces(faces);
    if (objects) view.result.objects = playeObjects(objects);
    if (faces || objects) view.result.boxes = boxesOf(faces ?? objects ?? []);
    if (job.result.image) {
      view.result.url = `/api/jobs/${job.jobId}/result`;
      view.result.contentType = job.result.image.contentType;
      view.result.bytes = job.result.image.bytes;
      view.result.sha256 = job.result.image.sha256;
    }
  }
  return view;
}
