/**
 * The web playground's static files (web/, built into dist/web by `npm run build`) at `/`.
 *
 * Only the files found in dist/web at start are served, by their exact name (one path segment),
 * so no request path ever reaches the file system: nothing to traverse. The names are not
 * content-hashed, so every answer says `no-cache` with an ETag: a browser revalidates (a 304
 * without a body) and never runs an old script against a new edge.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TemplatedApp } from 'uWebSockets.js';
import { appError } from '../../../lib/shared/errors.js';
import type { ApiContext } from '../api.js';
import { route, type Reply, type Request } from '../uws-http.js';

/** dist/web, from dist/services/edge/http/routes/. */
export const WEB_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../web');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json; charset=utf-8',
};

// The page loads only its own script and style; images are blob: URLs made from fetched bytes.
// 'unsafe-eval': the page validates parameters with ajv (as the edge does), which compiles
// schemas to functions.
const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

interface WebFile { body: Buffer; type: string; etag: string }

function loadFiles(dir: string): Map<string, WebFile> {
  const files = new Map<string, WebFile>();
  if (!existsSync(dir)) return files;
  for (const name of readdirSync(dir)) {
    const full = path.join(dir, name);
    const type = TYPES[path.extname(name)];
    if (!type || !statSync(full).isFile()) continue;
    const body = readFileSync(full);
    files.set(name, { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` });
  }
  return files;
}

/** Whether the playground is built and will be served at `/` (other routes may take `/` otherwise). */
export function playgroundAvailable(ctx: Pick<ApiContext, 'config'>, dir = WEB_DIR): boolean {
  return ctx.config.webPlayground && existsSync(path.join(dir, 'index.html'));
}

export function mountWebRoutes(app: TemplatedApp, ctx: ApiContext, dir = WEB_DIR): void {
  const files = loadFiles(dir);
  const serve = (name: string, req: Request): Reply => {
    const file = files.get(name);
    if (!file) throw appError('route_not_found', `no route ${req.method} ${req.path}`);
    const headers = { 'content-type': file.type, 'cache-control': 'no-cache', etag: file.etag, ...SECURITY_HEADERS };
    if (req.headers['if-none-match'] === file.etag) return { status: 304, headers };
    return { status: 200, headers, body: file.body };
  };
  route(app, 'get', '/', async (req) => serve('index.html', req), ctx.http);
  // One segment only (uWS parameters never span a slash); anything else is not a file of ours.
  route(app, 'get', '/:file', async (req) => serve(req.params.file!, req), ctx.http);
}
