/** Reports, replays and the report signing keys (docs/forensics.md). */
import type { TemplatedApp } from 'uWebSockets.js';
import type { ApiContext } from '../api.js';
import { json, route } from '../uws-http.js';

export function mountForensicsRoutes(app: TemplatedApp, ctx: ApiContext): void {
  const { forensics } = ctx;

  // Public, without a token: anyone holding a report must be able to check who signed it.
  route(app, 'get', '/.well-known/jwks.json', async () => json(200, forensics.jwks, { 'cache-control': 'public, max-age=300' }), ctx.http);

  route(app, 'get', '/api/jobs/:id/report', async (req) => {
    const owner = await ctx.caller(req);
    const html = req.query.get('format') === 'html' || (req.query.get('format') === null && /\btext\/html\b/.test(req.headers.accept ?? ''));
    const { body, contentType } = await forensics.report(owner, req.params.id!, req.requestId, html ? 'html' : 'json');
    return { status: 200, headers: { 'content-type': contentType, 'cache-control': 'no-store' }, body };
  }, ctx.http);

  route(app, 'post', '/api/jobs/:id/replay', async (req) => {
    const owner = await ctx.caller(req);
    const { ended, comparison } = await forensics.replay(owner, req.params.id!, req.requestId);
    const location = `/api/jobs/${req.params.id}/replay/${comparison.replayJobId}`;
    return json(ended ? 200 : 202, comparison, { location });
  }, ctx.http);

  route(app, 'get', '/api/jobs/:id/replay/:replay', async (req) => json(200, await forensics.comparison(await ctx.caller(req), req.params.id!, req.params.replay!)), ctx.http);
}
