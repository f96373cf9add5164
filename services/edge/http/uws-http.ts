/**
 * A thin async layer over uWebSockets.js' callback API: reads headers before the first
 * await (uWS invalidates `req` after the handler returns), reads the body with a size limit,
 * handles client aborts, and always answers with a request id and a JSON error body
 * {code, message, requestId, details?} on failure.
 */
import { randomUUID } from 'node:crypto';
import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import { AppError, toAppError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';

export interface Request {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: Record<string, string>;
  params: Record<string, string>;
  requestId: string;
  remoteAddress: string;
  /** The whole body (rejects with 413 past the limit). */
  body(): Promise<Buffer>;
}

export interface Reply {
  status: number;
  headers?: Record<string, string>;
  body?: string | Buffer | Uint8Array;
}

export type Handler = (req: Request) => Promise<Reply>;

const STATUS_TEXT: Record<number, string> = {
  200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content', 304: 'Not Modified', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden',
  404: 'Not Found', 405: 'Method Not Allowed', 409: 'Conflict', 410: 'Gone', 413: 'Payload Too Large', 415: 'Unsupported Media Type',
  422: 'Unprocessable Entity', 429: 'Too Many Requests', 500: 'Internal Server Error', 503: 'Service Unavailable', 504: 'Gateway Timeout',
};

export const json = (status: number, value: unknown, headers: Record<string, string> = {}): Reply => ({
  status, headers: { 'content-type': 'application/json; charset=utf-8', ...headers }, body: JSON.stringify(value),
});

export function errorReply(error: AppError, requestId: string): Reply {
  const body: Record<string, unknown> = { code: error.code, message: error.message, requestId };
  if (error.details !== undefined) body.details = error.details;
  const headers: Record<string, string> = {};
  const retryAfter = (error.details as { retryAfterS?: number } | undefined)?.retryAfterS;
  if (retryAfter !== undefined) headers['retry-after'] = String(retryAfter);
  return json(error.status, body, headers);
}

export interface HttpOptions {
  log: Logger;
  /** Largest body; may depend on the headers (a JSON body with a base64 image is 4/3 larger). */
  maxBodyBytes: number | ((headers: Record<string, string>) => number);
  /** Told about every answer (Prometheus request metrics); `route` is the route's pattern. */
  onReply?: (route: string, method: string, status: number, ms: number) => void;
  /** Extra headers on every answer (CORS). */
  commonHeaders?: (req: Request) => Record<string, string>;
}

export function route(app: TemplatedApp, method: 'get' | 'post' | 'put' | 'patch' | 'del' | 'options' | 'any', pattern: string, handler: Handler, options: HttpOptions): void {
  const paramNames = [...pattern.matchAll(/:([A-Za-z_]+)/g)].map((m) => m[1]!);
  app[method](pattern, (res: HttpResponse, uwsReq: HttpRequest) => {
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    const headers: Record<string, string> = {};
    uwsReq.forEach((key, value) => {
      headers[key] = value;
    });
    const params: Record<string, string> = {};
    paramNames.forEach((name, i) => {
      params[name] = decodePathParameter(uwsReq.getParameter(i) ?? '');
    });
    const requestId = /^[\w.-]{1,64}$/.test(headers['x-request-id'] ?? '') ? headers['x-request-id']! : randomUUID();
    const httpMethod = uwsReq.getCaseSensitiveMethod?.() ?? uwsReq.getMethod().toUpperCase();
    const declared = Number(headers['content-length'] ?? 0);
    const bodyPromise = httpMethod === 'GET' || httpMethod === 'HEAD' ? Promise.resolve(Buffer.alloc(0)) : readBody(res, typeof options.maxBodyBytes === 'function' ? options.maxBodyBytes(headers) : options.maxBodyBytes, declared);
    bodyPromise.catch(() => undefined);
    const req: Request = {
      method: httpMethod,
      path: uwsReq.getUrl(),
      query: new URLSearchParams(uwsReq.getQuery() ?? ''),
      headers,
      params,
      requestId,
      remoteAddress: Buffer.from(res.getRemoteAddressAsText()).toString(),
      body: () => bodyPromise,
    };
    const started = Date.now();
    handler(req)
      .catch((error: unknown) => {
        const appError = toAppError(error);
        // 503s (overloaded, model_not_installed) are the system saying no on purpose, not a fault.
        if (appError.status === 503) options.log.warn({ code: appError.code, requestId, path: req.path }, 'request refused');
        else if (appError.status >= 500) options.log.error({ err: error, requestId, path: req.path }, 'request failed');
        return errorReply(appError, requestId);
      })
      .then((reply) => {
        if (aborted) return;
        const closeAfter = reply.status === 413;
        res.cork(() => {
          res.writeStatus(`${reply.status} ${STATUS_TEXT[reply.status] ?? ''}`);
          res.writeHeader('x-request-id', requestId);
          for (const [k, v] of Object.entries({ ...options.commonHeaders?.(req), ...reply.headers })) res.writeHeader(k, v);
          res.end(reply.body ?? '', closeAfter);
        });
        const ms = Date.now() - started;
        options.onReply?.(pattern, req.method, reply.status, ms);
        options.log.debug({ requestId, method: req.method, path: req.path, status: reply.status, ms }, 'request');
      });
  });
}

/**
 * A malformed escape (`/%`) must not throw here: this runs in uWS' callback, outside any
 * promise, and an exception would end the edge process. The raw text matches nothing, so the
 * route answers as for any unknown name or id.
 */
function decodePathParameter(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

const PREALLOCATE_MAX = 1024 * 1024;

function readBody(res: HttpResponse, limit: number, declared: number): Promise<Buffer> {
  if (declared > limit) {
    // Say no before reading anything; the connection is closed after the answer.
    res.onData(() => undefined);
    return Promise.reject(new AppError(413, 'payload_too_large', `body is ${declared} bytes; the limit is ${limit}`, { details: { limit } }));
  }
  return new Promise((resolve, reject) => {
    // uWS reuses a chunk's memory after its callback returns, so each chunk is copied once:
    // for bodies up to PREALLOCATE_MAX straight into a buffer of the declared size (larger ones
    // are collected as they arrive, so a client cannot make the edge reserve memory it never
    // fills). Either way the body owns its whole ArrayBuffer, and the multipart parser reads
    // it without another copy.
    let whole = declared > 0 && declared <= PREALLOCATE_MAX ? Buffer.allocUnsafeSlow(declared) : undefined;
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    res.onData((chunk, isLast) => {
      if (failed) return;
      const bytes = new Uint8Array(chunk);
      if (size + bytes.byteLength > limit) {
        failed = true;
        reject(new AppError(413, 'payload_too_large', `body is over the limit of ${limit} bytes`, { details: { limit } }));
        return;
      }
      if (whole && size + bytes.byteLength <= whole.length) {
        whole.set(bytes, size);
      } else {
        if (whole) chunks.push(whole.subarray(0, size)); // longer than declared: collect a list instead
        whole = undefined;
        chunks.push(Buffer.from(bytes.slice().buffer));
      }
      size += bytes.byteLength;
      if (isLast) resolve(whole ? whole.subarray(0, size) : Buffer.concat(chunks, size));
    });
  });
}
