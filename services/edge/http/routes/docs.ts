/**
 * GET /api/openapi.json, /api/asyncapi.json and /api/docs (no token): the API described for
 * machines and people, built once from schemas/ when the edge starts.
 */
import { packageInfo } from '../../../lib/shared/package-info.js';
import type { TemplatedApp } from 'uWebSockets.js';
import { asyncApiDocument, docsPage, openApiDocument } from '../../api-docs.js';
import type { ApiContext } from '../api.js';
import { route } from '../uws-http.js';

const VERSION = packageInfo().version;

export function mountDocsRoutes(app: TemplatedApp, ctx: ApiContext): void {
  const openapi = openApiDocument(VERSION);
  const openapiText = JSON.stringify(openapi);
  const asyncapiText = JSON.stringify(asyncApiDocument(VERSION));
  const page = docsPage(openapi);
  const jsonText = (body: string) => async () => ({ status: 200, headers: { 'content-type': 'application/json; charset=utf-8' }, body });
  route(app, 'get', '/api/openapi.json', jsonText(openapiText), ctx.http);
  route(app, 'get', '/api/asyncapi.json', jsonText(asyncapiText), ctx.http);
  route(app, 'get', '/api/docs', async () => ({ status: 200, headers: { 'content-type': 'text/html; charset=utf-8' }, body: page }), ctx.http);
}
