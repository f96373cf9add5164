/** POST /api/blobs: upload an image once, use its blobId in job requests (HTTP or WebSocket). */
import type { TemplatedApp } from 'uWebSockets.js';
import { appError } from '../../../lib/shared/errors.js';
import type { ApiContext } from '../api.js';
import { parseMultipart } from '../multipart.js';
import { json, route } from '../uws-http.js';

export function mountBlobRoutes(app: TemplatedApp, ctx: ApiContext): void {
  route(app, 'post', '/api/blobs', async (req) => {
    const caller = await ctx.caller(req);
    const contentType = req.headers['content-type'] ?? 'application/octet-stream';
    const body = await req.body();
    let bytes = body;
    let type = contentType;
    if (contentType.startsWith('multipart/form-data')) {
      const file = parseMultipart(body, contentType).files.get('file');
      if (!file) throw appError('image_required', 'multipart field "file" is missing');
      bytes = file.data;
      type = file.type ?? 'application/octet-stream';
    }
    const { blobId, ref } = await ctx.blobs.upload(caller, bytes, type);
    return json(201, { blobId, bytes: ref.bytes, sha256: ref.sha256, contentType: type });
  }, ctx.http);
}
