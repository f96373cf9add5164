/**
 * POST /api/ai/<name>: the endpoints the PLAYE front end calls, answered like a synchronous
 * API. The job runs on the pipeline as any other; the request waits for it (up to
 * SYNC_WAIT_MS, on the job's events, never by polling) and answers with the image (its own
 * Content-Type) or the detections as JSON. Not done in time, or `Prefer: respond-async`:
 * 202 {status: "queued", task_id, jobId} with Retry-After; GET /api/jobs/<task_id> then follows
 * it, and the same request sent again joins the job (see submitOrJoin).
 *
 * Names: the kebab-case ones of the front end's api client (src/api/client.js) and the
 * camelCase task names its SmartRouter (src/router.js) posts to. Bodies: multipart with the
 * image in field `file` (both of them), a raw image, or JSON (the router posts JSON when its
 * data is not an image).
 */
import { createHash } from 'node:crypto';
import type { TemplatedApp } from 'uWebSockets.js';
import { isTerminal } from '../../../lib/shared/job-status.js';
import { AppError, appError, fromErrorInfo } from '../../../lib/shared/errors.js';
import type { JobRecord, Owner, PipelineStep } from '../../../lib/shared/schema-types.js';
import { waitForJobEnd } from '../../job-waiter.js';
import { noResultCode } from '../../jobs.js';
import { PLAYE_ALIASES, PLAYE_ENDPOINTS, PLAYE_UNAVAILABLE, playeEndpoint, playePipeline, type PlayeEndpoint } from '../../playe.js';
import { boxesOf, playeFaces, playeObjects } from '../../playe-shapes.js';
import type { ApiContext } from '../api.js';
import { decodeBase64Image, parseJsonBody } from '../body.js';
import { parseMultipart } from '../multipart.js';
import { errorReply, json, route, type Reply, type Request } from '../uws-http.js';

/**
 * Retry-After of a 202. A repeat of the request joins the job and itself waits on its events
 * for up to SYNC_WAIT_MS, so asking again soon costs no extra work; a poller of the job view
 * gets a second's rhythm.
 */
const RETRY_AFTER_S = 1;
/** How many ended-but-not-done jobs a repeat walks past before it just starts a new one. */
const MAX_JOIN_HOPS = 8;

export function mountPlayeRoutes(app: TemplatedApp, ctx: ApiContext): void {
  route(app, 'post', '/api/ai/:name', async (req) => {
    try {
      return await playeRequest(ctx, req);
    } catch (error) {
      // The old backend's errors were FastAPI's {detail}: ours carry it too on these routes.
      // Anything but an AppError is a fault: route's own handling logs it and answers 500.
      if (!(error instanceof AppError)) throw error;
      if (error.status >= 500 && error.status !== 501 && error.status !== 503) ctx.log.error({ err: error, requestId: req.requestId, path: req.path }, 'request failed');
      const reply = errorReply(error, req.requestId);
      return { ...reply, body: JSON.stringify({ ...JSON.parse(String(reply.body)), detail: error.message }) };
    }
  }, ctx.http);
}

async function playeRequest(ctx: ApiContext, req: Request): Promise<Reply> {
  const name = req.params.name!;
  const endpoint = playeEndpoint(name);
  if (!endpoint && !Object.hasOwn(PLAYE_UNAVAILABLE, name)) {
    const known = [...Object.keys(PLAYE_ENDPOINTS), ...Object.keys(PLAYE_ALIASES)];
    throw appError('route_not_found', `no route POST ${req.path}; known: ${known.map((n) => `/api/ai/${n}`).join(', ')}`);
  }
  const caller = await ctx.caller(req);
  if (!endpoint) throw appError('task_unavailable', PLAYE_UNAVAILABLE[name]!, { details: { task: name } });
  const contentType = req.headers['content-type'] ?? '';
  const body = await req.body();
  const options = new Map<string, unknown>();
  for (const [option, value] of req.query) options.set(option, value);
  let image: Buffer | undefined;
  let filename: string | undefined;
  if (contentType.startsWith('multipart/form-data')) {
    const form = parseMultipart(body, contentType);
    const file = form.files.get('file');
    if (!file) throw appError('image_required', 'multipart field "file" with the image is missing');
    image = file.data;
    filename = file.filename;
    for (const [option, value] of form.fields) options.set(option, value);
    for (const option of form.files.keys()) if (option !== 'file') options.set(option, '');
  } else if (/^(image\/|application\/octet-stream)/.test(contentType)) {
    image = body; // the raw image as the body, options in the query
  } else if (contentType.startsWith('application/json')) {
    // The router's JSON form: {...data, ...options}. The options are the other fields, typed.
    const value = parseJsonBody(body, ctx.config, true);
    if (!value || typeof value !== 'object' || Array.isArray(value)) throw appError('invalid_request', 'the JSON body must be an object');
    for (const [option, field] of Object.entries(value)) if (option !== 'image') options.set(option, field);
    const encoded = (value as { image?: unknown }).image;
    if (encoded !== undefined && typeof encoded !== 'string') throw appError('invalid_request', '"image" must be a string: base64 or a data URL');
    if (encoded) image = decodeBase64Image(encoded);
  } else {
    throw appError('unsupported_media_type', 'send multipart/form-data with the image in field "file"');
  }
  // caseId is not a step option: the job goes into that case (form field, JSON field or query parameter).
  const caseId = options.get('caseId');
  options.delete('caseId');
  if (caseId !== undefined && (typeof caseId !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(caseId))) throw appError('invalid_case_id', 'caseId must be 1-64 letters, digits, _ or -');
  // Validated before the image check, so a JSON call without a frame still learns of bad options.
  const pipeline = playePipeline(endpoint, options, ctx.jobs.steps);
  if (!image) {
    throw appError('image_required', `/api/ai/${name} works on an image: send the frame as multipart field "file" (as the front end's postImage does) or as JSON "image" (base64 or a data URL); this request has none`);
  }
  const explicitKey = req.headers['idempotency-key'] || undefined;
  const job = explicitKey
    ? (await ctx.jobs.submit(caller, { pipeline, image, ...(caseId ? { caseId } : {}), idempotencyKey: explicitKey, requestId: req.requestId })).job
    : await submitOrJoin(ctx, caller, pipeline, image, req.requestId, caseId);
  if (/\brespond-async\b/i.test(req.headers.prefer ?? '')) return queued(job, filename);
  if (!(await waitForJobEnd(ctx.bus, job.jobId, ctx.config.syncWaitMs))) return queued(job, filename);
  return answer(ctx, endpoint, await ctx.jobs.get(caller, job.jobId), filename, caller, req.requestId);
}

/**
 * Submits the job, or joins the caller's earlier job for the same pipeline and the same image
 * bytes. The front end gives up after its own timeout (30 s) and never polls; when the work
 * finishes a little later, the user's next click on the same frame gets that job's result at
 * once (or waits for it again) instead of starting the same work over. The join rides on the
 * idempotency keys (same caller, 24 h): the key is the pipeline's and the image's hash. A job
 * that ended without a result (failed, canceled, timeout) is never what a repeat answers: the
 * key then moves on to one derived from that job, so the repeat starts a fresh job.
 */
async function submitOrJoin(ctx: ApiContext, caller: Owner, pipeline: PipelineStep[], image: Buffer, requestId: string, caseId?: string): Promise<JobRecord> {
  const imageHash = createHash('sha256').update(image).digest('hex');
  const base = `playe:${createHash('sha256').update(JSON.stringify(pipeline)).update('\u0000').update(imageHash).update('\u0000').update(caseId ?? '').digest('hex')}`;
  const inCase = caseId ? { caseId } : {};
  let key = base;
  for (let hop = 0; hop < MAX_JOIN_HOPS; hop++) {
    const { job } = await ctx.jobs.submit(caller, { pipeline, image, ...inCase, idempotencyKey: key, requestId });
    if (!isTerminal(job.status) || job.status === 'done') return job;
    key = `${base}:after:${job.jobId}`;
  }
  return (await ctx.jobs.submit(caller, { pipeline, image, ...inCase, requestId })).job;
}

function queued(job: JobRecord, filename: string | undefined): Reply {
  const statusUrl = `/api/jobs/${job.jobId}`;
  return json(202, {
    status: 'queued', state: 'PENDING', task_id: job.jobId, jobId: job.jobId, statusUrl, result_url: `${statusUrl}/result`,
    retryAfterS: RETRY_AFTER_S, ...(filename !== undefined ? { filename } : {}),
    message: 'not done yet: poll statusUrl (or fetch result_url), or send the same request again, which joins this job',
  }, { location: statusUrl, 'retry-after': String(RETRY_AFTER_S), 'x-task-id': job.jobId });
}

async function answer(ctx: ApiContext, endpoint: PlayeEndpoint, job: JobRecord, filename: string | undefined, caller: Owner, requestId: string): Promise<Reply> {
  const ids = { 'x-task-id': job.jobId };
  if (job.status !== 'done') {
    // Answered with the job's error code and the catalogue's status for it (422 a bad image, 503 a missing model; unknown: 500).
    const error = job.error ?? { code: noResultCode(job.status), message: `the job ended: ${job.status}` };
    throw fromErrorInfo({ code: error.code, message: error.message, details: { task_id: job.jobId, jobId: job.jobId, status: job.status, ...(error.step ? { step: error.step } : {}) } });
  }
  // The old backend's fields (status, filename) and the shapes the front end's screens read.
  const legacy = { status: 'success', ...(filename !== undefined ? { filename } : {}), task_id: job.jobId, jobId: job.jobId };
  if (endpoint.answer === 'faces') {
    const faces = job.result?.findings.faces ?? [];
    return json(200, { faces: playeFaces(faces), boxes: boxesOf(faces), ...legacy }, ids);
  }
  if (endpoint.answer === 'objects') {
    const objects = job.result?.findings.objects ?? [];
    return json(200, { objects: playeObjects(objects), boxes: boxesOf(objects), ...legacy }, ids);
  }
  const image = job.result?.image;
  if (!image) throw appError('no_output', `job ${job.jobId} finished without an image`);
  // Through the jobs service (the record in hand, no second read): a job in a case has this read
  // recorded in its chain of custody.
  const { bytes } = await ctx.jobs.readResult(caller, job, requestId);
  return { status: 200, headers: { ...ids, 'content-type': image.contentType ?? 'application/octet-stream', 'x-content-sha256': image.sha256 }, body: bytes };
}
