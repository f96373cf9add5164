/**
 * CORS: which browser origins may read the edge's answers (CORS_ORIGINS). An entry is an exact
 * origin, `*` for any, or an origin ending in `:*` for any port of that scheme and host
 * (`http://localhost:*`): a front end served by whatever local dev server, on whatever port.
 */
import type { Request } from './http/uws-http.js';

export function originAllowed(origins: string[], origin: string): boolean {
  return origins.some((allowed) => allowed === '*' || allowed === origin
    || (allowed.endsWith(':*') && origin.startsWith(allowed.slice(0, -1)) && /^\d{1,5}$/.test(origin.slice(allowed.length - 1))));
}

export function corsHeaders(origins: string[], req: Request): Record<string, string> {
  const origin = req.headers.origin;
  if (!origin || origins.length === 0 || !originAllowed(origins, origin)) return {};
  return {
    'access-control-allow-origin': origins.includes('*') ? '*' : origin,
    'access-control-allow-headers': 'authorization, content-type, idempotency-key, prefer, x-request-id',
    'access-control-allow-methods': 'GET, POST, PATCH, OPTIONS',
    'access-control-expose-headers': 'x-request-id, retry-after, location, x-task-id, x-content-sha256, x-next-cursor, link',
    vary: 'origin',
  };
}
