/** The jobs API: create, list, read, result, cancel. Another caller's job is always 404. */
import type { TemplatedApp } from 'uWebSockets.js';
import { appError } from '../../../lib/shared/errors.js';
import type { JobStatus } from '../../../lib/shared/schema-types.js';
import { waitForJobEnd } from '../../job-waiter.js';
import { jobView } from '../../views.js';
import type { ApiContext } from '../api.js';
import { pageLimit, readJobSubmission } from '../body.js';
import { json, route } from '../uws-http.js';

const STATUSES: JobStatus[] = ['pending', 'running', 'done', 'failed', 'canceled', 'timeout'];
const DEFAULT_PAGE = 20;
const MAX_PAGE = 100;

export function mountJobRoutes(app: TemplatedApp, ctx: ApiContext): void {
  const { jobs } = ctx;

  route(app, 'post', '/api/jobs', async (req) => {
    const caller = await ctx.caller(req);
    const submission = await readJobSubmission(req, caller, ctx.config, ctx.blobs);
    const { job, created } = await jobs.submit(caller, {
      ...submission,
      idempotencyKey: req.headers['idempotency-key'] || undefined,
      requestId: req.requestId,
    });
    return json(created ? 202 : 200, { ...jobView(job), ...(created ? {} : { idempotent: true }) }, { location: `/api/jobs/${job.jobId}` });
  }, ctx.http);

  route(app, 'get', '/api/jobs', async (req) => {
    const caller = await ctx.caller(req);
    const status = req.query.get('status') || undefined;
    if (status !== undefined && !STATUSES.includes(status as JobStatus)) {
      throw appError('invalid_pagination', `status must be one of ${STATUSES.join(', ')}`, { details: [{ path: 'status', message: 'unknown status' }] });
    }
    const limit = pageLimit(req, DEFAULT_PAGE, MAX_PAGE);
    const cursor = req.query.get('cursor') ?? undefined;
    const page = await jobs.list(caller, { status: status as JobStatus | undefined, limit, cursor });
    return json(200, { jobs: page.jobs.map(jobView), ...(page.nextCursor ? { nextCursor: page.nextCursor } : {}) });
  }, ctx.http);

  route(app, 'get', '/api/jobs/:id', async (req) => json(200, jobView(await jobs.get(await ctx.caller(req), req.params.id!))), ctx.http);

  route(app, 'get', '/api/jobs/:id/result', async (req) => {
    const caller = await ctx.caller(req);
    const wait = req.query.get('wait');
    if (wait !== null) {
      // ?wait=<seconds>: hold the answer until the job ends (on its events, no polling), so a
      // client never gets a 409 for a job that is merely still running. Capped at SYNC_WAIT_MS
      // so a request cannot pin the edge forever; a client that needs longer asks again.
      const seconds = Number(wait);
      if (!Number.isFinite(seconds) || seconds < 0) throw appError('invalid_request', 'wait must be a number of seconds', { details: [{ path: 'wait', message: 'not a number of seconds' }] });
      await jobs.get(caller, req.params.id!); // 404 for unknown ids and other callers' jobs, before any wait
      await waitForJobEnd(ctx.bus, req.params.id!, Math.min(seconds * 1000, ctx.config.syncWaitMs));
    }
    const { job, bytes, contentType } = await jobs.result(caller, req.params.id!, req.requestId);
    if (bytes) return { status: 200, headers: { 'content-type': contentType!, 'x-content-sha256': job.result!.image!.sha256 }, body: bytes };
    return json(200, job.result?.findings ?? {});
  }, ctx.http);

  route(app, 'post', '/api/jobs/:id/cancel', async (req) => json(200, jobView(await jobs.cancel(await ctx.caller(req), req.params.id!, req.requestId))), ctx.http);
}
