/**
 * POST /api/ai/<name>: the endpoints the PLAYE front end calls, answered like a synchronous
 * API. The job runs on the pipeline as any other; the request waits for it (up to
 * SYNC_WAIT_MS, on the job's events, never by polling) and answers with the image (its own
 * Content-Type) or the detections as JSON. Not done in time, or `Prefer: respond-async`:
 * 202 {status: "queued", task_id, jobId}; GET /api/jobs/<task_id> then follows it.
 */
import type { TemplatedApp } from 'uWebSockets.js';
import { AppError, badRequest, notFound } from '../../../shared/errors.js';
import type { JobRecord, Owner } from '../../../shared/schema-types.js';
import { waitForJobEnd } from '../../job-waiter.js';
import { PLAYE_ENDPOINTS, playePipeline, statusOfJobError, type PlayeEndpoint } from '../../playe.js';
import type { ApiContext } from '../api.js';
import { parseMultipart } from '../multipart.js';
import { json, route, type Reply } from '../uws-http.js';

export function mountPlayeRoutes(app: TemplatedApp, ctx: ApiContext): void {
  route(app, 'post', '/api/ai/:name', async (req) => {
    const endpoint = PLAYE_ENDPOINTS[req.params.name!];
    if (!endpoint) throw notFound('route_not_found', `no route POST ${req.path}; known: ${Object.keys(PLAYE_ENDPOINTS).map((n) => `/api/ai/${n}`).join(', ')}`);
    const caller = await ctx.caller(req);
    const contentType = req.headers['content-type'] ?? '';
    const body = await req.body();
    const options = new Map<string, string>();
    for (const [name, value] of req.query) options.set(name, value);
    let image: Buffer;
    if (contentType.startsWith('multipart/form-data')) {
      const form = parseMultipart(body, contentType);
      const file = form.files.get('file');
      if (!file) throw badRequest('image_required', 'multipart field "file" with the image is missing');
      image = file.data;
      for (const [name, value] of form.fields) options.set(name, value);
      for (const name of form.files.keys()) if (name !== 'file') options.set(name, '');
    } else if (/^(image\/|application\/octet-stream)/.test(contentType)) {
      image = body; // the raw image as the body, options in the query
    } else {
      throw new AppError(415, 'unsupported_media_type', 'send multipart/form-data with the image in field "file"');
    }
    // caseId is not a step option: the job goes into that case (form field or query parameter).
    const caseId = options.get('caseId');
    options.delete('caseId');
    if (caseId !== undefined && !/^[A-Za-z0-9_-]{1,64}$/.test(caseId)) throw badRequest('invalid_case_id', 'caseId must be 1-64 letters, digits, _ or -');
    const pipeline = playePipeline(endpoint, options, ctx.jobs.steps);
    const { job } = await ctx.jobs.submit(caller, { pipeline, image, ...(caseId ? { caseId } : {}), idempotencyKey: req.headers['idempotency-key'] || undefined, requestId: req.requestId });
    if (/\brespond-async\b/i.test(req.headers.prefer ?? '')) return queued(job);
    const ended = await waitForJobEnd(ctx.bus, job.jobId, ctx.config.syncWaitMs);
    if (!ended) return queued(job);
    return answer(ctx, endpoint, ended, caller, req.requestId);
  }, ctx.http);
}

function queued(job: JobRecord): Reply {
  return json(202, { status: 'queued', state: 'PENDING', task_id: job.jobId, jobId: job.jobId, statusUrl: `/api/jobs/${job.jobId}` }, { location: `/api/jobs/${job.jobId}` });
}

async function answer(ctx: ApiContext, endpoint: PlayeEndpoint, job: JobRecord, caller: Owner, requestId: string): Promise<Reply> {
  const ids = { 'x-task-id': job.jobId };
  if (job.status !== 'done') {
    const error = job.error ?? { code: `job_${job.status}`, message: `the job ended: ${job.status}` };
    throw new AppError(statusOfJobError(error.code), error.code, error.message, { details: { task_id: job.jobId, jobId: job.jobId, status: job.status, ...(error.step ? { step: error.step } : {}) } });
  }
  if (endpoint.answer === 'faces') return json(200, { faces: job.result?.findings.faces ?? [], task_id: job.jobId, jobId: job.jobId }, ids);
  if (endpoint.answer === 'objects') return json(200, { objects: job.result?.findings.objects ?? [], task_id: job.jobId, jobId: job.jobId }, ids);
  const image = job.result?.image;
  if (!image) throw new AppError(500, 'no_output', `job ${job.jobId} finished without an image`);
  // Through the jobs service: a job in a case has this read recorded in its chain of custody.
  const { bytes } = await ctx.jobs.result(caller, job.jobId, requestId);
  return { status: 200, headers: { ...ids, 'content-type': image.contentType ?? 'application/octet-stream', 'x-content-sha256': image.sha256 }, body: bytes };
}
