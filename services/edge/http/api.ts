/**
 * The HTTP API under /api: jobs (submit, read, result, cancel) and health.
 * Every route but health needs a bearer token; see README "API".
 */
import type { TemplatedApp } from 'uWebSockets.js';
import type { Config } from '../../shared/config.js';
import { AppError, badRequest } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { CreateJobRequest, Owner } from '../../shared/schema-types.js';
import { validateOrThrow } from '../../shared/schemas.js';
import { bearerToken, type Authenticator } from '../auth.js';
import type { Bus } from '../../bus/bus.js';
import { checkHealth } from '../health.js';
import type { JobsService } from '../jobs.js';
import { jobView } from '../views.js';
import { formValue, parseMultipart } from './multipart.js';
import { json, route, type HttpOptions, type Request } from './uws-http.js';

export interface ApiDeps {
  bus: Bus;
  jobs: JobsService;
  auth: Authenticator;
  config: Config;
  log: Logger;
  steps: string[];
}

export function mountApi(app: TemplatedApp, deps: ApiDeps, http: HttpOptions): void {
  const { jobs, auth } = deps;
  const owner = (req: Request): Promise<Owner> => auth.verify(bearerToken(req.headers.authorization));

  route(app, 'get', '/api/health', async () => {
    const health = await checkHealth(deps.bus, deps.steps);
    return json(health.status === 'down' ? 503 : 200, health);
  }, http);

  route(app, 'post', '/api/jobs', async (req) => {
    const caller = await owner(req);
    const submission = await readSubmission(req, deps.config);
    const { job, created } = await jobs.submit(caller, {
      ...submission,
      idempotencyKey: req.headers['idempotency-key'] || undefined,
      requestId: req.requestId,
    });
    return json(created ? 202 : 200, { ...jobView(job), ...(created ? {} : { idempotent: true }) }, { location: `/api/jobs/${job.jobId}` });
  }, http);

  route(app, 'get', '/api/jobs/:id', async (req) => json(200, jobView(await jobs.get(await owner(req), req.params.id!))), http);

  route(app, 'get', '/api/jobs/:id/result', async (req) => {
    const { job, bytes, contentType } = await jobs.result(await owner(req), req.params.id!);
    if (bytes) return { status: 200, headers: { 'content-type': contentType!, 'x-content-sha256': job.result!.image!.sha256 }, body: bytes };
    return json(200, job.result?.findings ?? {});
  }, http);

  route(app, 'post', '/api/jobs/:id/cancel', async (req) => json(200, jobView(await jobs.cancel(await owner(req), req.params.id!))), http);

  route(app, 'any', '/*', async (req) => {
    throw new AppError(404, 'route_not_found', `no route ${req.method} ${req.path}`);
  }, http);
}

/** The image and pipeline of POST /api/jobs, from multipart or JSON. */
async function readSubmission(req: Request, config: Config): Promise<{ pipeline: unknown; image: Buffer; deadlineMs?: number }> {
  const contentType = req.headers['content-type'] ?? '';
  const body = await req.body();
  if (contentType.startsWith('multipart/form-data')) {
    const form = parseMultipart(body, contentType);
    const file = form.files.get('file');
    if (!file) throw badRequest('image_required', 'multipart field "file" with the image is missing');
    const rawPipeline = form.fields.get('pipeline') ?? req.query.get('pipeline');
    if (!rawPipeline) throw badRequest('pipeline_required', 'field "pipeline" (JSON) is missing');
    const parsed = parseJson(rawPipeline, config, 'pipeline');
    const spec = Array.isArray(parsed) ? { pipeline: parsed } : parsed;
    const deadline = form.fields.get('deadlineMs');
    if (deadline !== undefined && typeof spec === 'object' && spec) (spec as Record<string, unknown>).deadlineMs = formValue(deadline);
    const request = validateOrThrow<CreateJobRequest>('http/create-job.schema.json', spec, { what: 'job request' });
    return { pipeline: request.pipeline, image: file.data, deadlineMs: request.deadlineMs };
  }
  if (contentType.startsWith('application/json')) {
    if (body.length > config.maxJsonBytes + config.maxUploadBytes * 1.4) throw new AppError(413, 'payload_too_large', 'JSON body too large');
    const request = validateOrThrow<CreateJobRequest>('http/create-job.schema.json', parseJson(body.toString('utf8'), config, 'body'), { what: 'job request' });
    if (!request.image) throw badRequest('image_required', 'give the image as "image" (base64 or a data URL)');
    return { pipeline: request.pipeline, image: decodeBase64Image(request.image), deadlineMs: request.deadlineMs };
  }
  throw new AppError(415, 'unsupported_media_type', 'send multipart/form-data (file + pipeline) or application/json');
}

export function parseJson(text: string, config: Config, what: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw badRequest('invalid_json', `${what} is not valid JSON: ${(error as Error).message}`);
  }
  if (depth(value) > config.maxJsonDepth) throw badRequest('json_too_deep', `${what} is nested deeper than ${config.maxJsonDepth} levels`);
  return value;
}

function depth(value: unknown, level = 0): number {
  if (level > 1000 || value === null || typeof value !== 'object') return level;
  let deepest = level + 1;
  for (const child of Object.values(value as object)) deepest = Math.max(deepest, depth(child, level + 1));
  return deepest;
}

export function decodeBase64Image(text: string): Buffer {
  const match = /^data:[^;,]*(;base64)?,/.exec(text);
  const payload = match ? text.slice(match[0].length) : text;
  if (!/^[A-Za-z0-9+/=_\-\s]*$/.test(payload)) throw badRequest('invalid_base64', 'image is not valid base64');
  return Buffer.from(payload, 'base64');
}
