/**
 * Cases (docs/api.md, "Cases"). The same two paths serve the product's API and the PLAYE front
 * end's cloudStorage: GET /api/cases answers an array of case objects (paged with ?limit and
 * ?cursor, the next cursor in the X-Next-Cursor header, so a plain array is still the body);
 * POST /api/cases with {name} creates a case, with a whole case object {id, updatedAt, ...}
 * creates or updates it, the later updatedAt winning.
 */
import type { TemplatedApp } from 'uWebSockets.js';
import { appError } from '../../../lib/shared/errors.js';
import type { RenameCaseRequest } from '../../../lib/shared/schema-types.js';
import { validateOrThrow } from '../../../lib/shared/schemas.js';
import { caseScope } from '../../../lib/bus/case-store.js';
import { requestAudit } from '../../../lib/metrics/audit.js';
import { caseView, evidenceView } from '../../cases.js';
import type { ApiContext } from '../api.js';
import { pageLimit, parseJsonBody } from '../body.js';
import { parseMultipart } from '../multipart.js';
import { json, route } from '../uws-http.js';

const DEFAULT_PAGE = 100;
const MAX_PAGE = 1000;

export function mountCaseRoutes(app: TemplatedApp, ctx: ApiContext): void {
  const { cases } = ctx;

  route(app, 'get', '/api/cases', async (req) => {
    const owner = await ctx.caller(req);
    const limit = pageLimit(req, DEFAULT_PAGE, MAX_PAGE);
    const page = await cases.list(owner, { limit, cursor: req.query.get('cursor') ?? undefined });
    const headers: Record<string, string> = page.nextCursor
      ? { 'x-next-cursor': page.nextCursor, link: `</api/cases?limit=${limit}&cursor=${page.nextCursor}>; rel="next"` }
      : {};
    return json(200, page.cases.map(caseView), headers);
  }, ctx.http);

  route(app, 'post', '/api/cases', async (req) => {
    const owner = await ctx.caller(req);
    if (!(req.headers['content-type'] ?? '').startsWith('application/json')) throw appError('unsupported_media_type', 'send the case as application/json');
    const { record, created } = await cases.createOrUpsert({ owner, requestId: req.requestId }, parseJsonBody(await req.body(), ctx.config));
    return json(created ? 201 : 200, caseView(record), { location: `/api/cases/${record.caseId}` });
  }, ctx.http);

  route(app, 'get', '/api/cases/:id', async (req) => json(200, await cases.detail(await ctx.caller(req), req.params.id!)), ctx.http);

  route(app, 'patch', '/api/cases/:id', async (req) => {
    const owner = await ctx.caller(req);
    const body = validateOrThrow<RenameCaseRequest>('http/rename-case.schema.json', parseJsonBody(await req.body(), ctx.config), { what: 'rename' });
    return json(200, caseView(await cases.rename({ owner, requestId: req.requestId }, req.params.id!, body.name)));
  }, ctx.http);

  route(app, 'post', '/api/cases/:id/close', async (req) => {
    const owner = await ctx.caller(req);
    return json(200, caseView(await cases.close({ owner, requestId: req.requestId }, req.params.id!)));
  }, ctx.http);

  // The original as uploaded (multipart field "file", or the raw bytes as the body), kept unaltered.
  route(app, 'post', '/api/cases/:id/evidence', async (req) => {
    const owner = await ctx.caller(req);
    const contentType = req.headers['content-type'] ?? 'application/octet-stream';
    let bytes = await req.body();
    let type = contentType;
    if (contentType.startsWith('multipart/form-data')) {
      const file = parseMultipart(bytes, contentType).files.get('file');
      if (!file) throw appError('image_required', 'multipart field "file" is missing');
      bytes = file.data;
      type = file.type ?? 'application/octet-stream';
    }
    if (bytes.length > ctx.config.maxUploadBytes) throw appError('payload_too_large', `the upload is ${bytes.length} bytes; the limit is ${ctx.config.maxUploadBytes}`, { details: { limit: ctx.config.maxUploadBytes } });
    const { evidence } = await cases.keepOriginal({ owner, requestId: req.requestId }, req.params.id!, bytes, type);
    return json(201, evidenceView(req.params.id!, evidence), { location: `/api/cases/${req.params.id}/evidence/${evidence.sha256}` });
  }, ctx.http);

  // The chain of custody from ClickHouse. Records take the metrics' path (JetStream, then the
  // sink), so one written a moment ago may not be here yet; none is ever lost on the way.
  route(app, 'get', '/api/cases/:id/audit', async (req) => {
    const owner = await ctx.caller(req);
    const record = await cases.get(owner, req.params.id!);
    const records = await requestAudit(ctx.bus.nc, { scope: caseScope(owner), caseId: record.caseId });
    return json(200, { caseId: record.caseId, records });
  }, ctx.http);

  route(app, 'get', '/api/cases/:id/evidence/:digest', async (req) => {
    const owner = await ctx.caller(req);
    const { evidence, bytes } = await cases.readOriginal({ owner, requestId: req.requestId }, req.params.id!, req.params.digest!);
    return { status: 200, headers: { 'content-type': evidence.contentType, 'x-content-sha256': evidence.sha256, 'cache-control': 'no-store' }, body: bytes };
  }, ctx.http);
}
