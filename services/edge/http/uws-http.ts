/**
 * A thin async layer over uWebSockets.js' callback API: reads headers before the first
 * await (uWS invalidates `req` after the handler returns), reads the body with a size limit,
 * handles client aborts, and always answers with a request id and a JSON error body
 * {code, message, requestId, details?} on failure.
 *
 * Request handling is total: nothing a client sends can throw out of a uWS callback (an
 * exception there ends the process, and with it every WebSocket client). Malformed
 * percent-encoding is a 400, over-long URLs and headers a 431, a body that does not arrive
 * within BODY_TIMEOUT_MS a 408, and anything unforeseen is caught by a last-resort guard that
 * logs it and answers 500 with the envelope.
 */
import { randomUUID } from 'node:crypto';
import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import { AppError, appError } from '../../lib/shared/errors.js';
import { toClientError } from '../client-error.js';
import { workBegins } from '../../lib/shared/idle-collection.js';
import type { Logger } from '../../lib/shared/logger.js';

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
  404: 'Not Found', 405: 'Method Not Allowed', 408: 'Request Timeout', 409: 'Conflict', 410: 'Gone', 413: 'Payload Too Large', 415: 'Unsupported Media Type',
  422: 'Unprocessable Entity', 429: 'Too Many Requests', 431: 'Request Header Fields Too Large', 500: 'Internal Server Error', 503: 'Service Unavailable', 504: 'Gateway Timeout',
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
  /** Longest path + query (431 above). */
  maxUrlBytes?: number;
  /** Largest total of header names and values (431 above). */
  maxHeaderBytes?: number;
  /** Longest time the body may take to arrive (408 after). */
  bodyTimeoutMs?: number;
}

/** Statuses after which the connection is closed: the rest of the body is not worth reading, or never comes. */
const CLOSE_AFTER = new Set([408, 413, 431]);

/** decodeURIComponent that answers 400 instead of throwing URIError on malformed percent-encoding. */
export function decodePathParameter(raw: string, name: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw appError('invalid_path', `path parameter "${name}" is not valid percent-encoded UTF-8`, { details: { parameter: name } });
  }
}

export function route(app: TemplatedApp, method: 'get' | 'post' | 'put' | 'patch' | 'del' | 'options' | 'any', pattern: string, handler: Handler, options: HttpOptions): void {
  const paramNames = [...pattern.matchAll(/:([A-Za-z_]+)/g)].map((m) => m[1]!);
  app[method](pattern, (res: HttpResponse, uwsReq: HttpRequest) => {
    const state = { aborted: false, answered: false };
    const workEnds = workBegins();
    res.onAborted(() => {
      state.aborted = true;
      workEnds();
    });
    let requestId = '';
    let req: Request | undefined;
    const started = Date.now();
    try {
      // Everything read from uwsReq must be read now, before any await.
      const headers: Record<string, string> = {};
      let headerBytes = 0;
      uwsReq.forEach((key, value) => {
        headers[key] = value;
        headerBytes += key.length + value.length;
      });
      requestId = /^[\w.-]{1,64}$/.test(headers['x-request-id'] ?? '') ? headers['x-request-id']! : randomUUID();
      const httpMethod = uwsReq.getCaseSensitiveMethod?.() ?? uwsReq.getMethod().toUpperCase();
      const url = uwsReq.getUrl();
      const rawQuery = uwsReq.getQuery() ?? '';
      const rawParams = paramNames.map((_, i) => uwsReq.getParameter(i) ?? '');
      req = {
        method: httpMethod,
        path: url,
        query: new URLSearchParams(rawQuery), // never throws: malformed escapes become U+FFFD
        headers,
        params: {},
        requestId,
        remoteAddress: Buffer.from(res.getRemoteAddressAsText()).toString(),
        body: () => Promise.resolve(Buffer.alloc(0)),
      };
      const request = req;
      if (options.maxUrlBytes !== undefined && url.length + rawQuery.length > options.maxUrlBytes) {
        throw appError('url_too_long', `the URL is ${url.length + rawQuery.length} bytes; the limit is ${options.maxUrlBytes}`, { details: { limit: options.maxUrlBytes } });
      }
      if (options.maxHeaderBytes !== undefined && headerBytes > options.maxHeaderBytes) {
        throw appError('headers_too_large', `the headers are ${headerBytes} bytes; the limit is ${options.maxHeaderBytes}`, { details: { limit: options.maxHeaderBytes } });
      }
      paramNames.forEach((name, i) => {
        request.params[name] = decodePathParameter(rawParams[i]!, name);
      });
      const declared = Number(headers['content-length'] ?? 0);
      if (!Number.isSafeInteger(declared) || declared < 0) throw appError('invalid_content_length', 'Content-Length is not a byte count');
      const bodyPromise = httpMethod === 'GET' || httpMethod === 'HEAD'
        ? Promise.resolve(Buffer.alloc(0))
        : readBody(res, typeof options.maxBodyBytes === 'function' ? options.maxBodyBytes(headers) : options.maxBodyBytes, declared, options.bodyTimeoutMs ?? 0, state);
      bodyPromise.catch(() => undefined);
      request.body = () => bodyPromise;
      handler(request)
        .catch((error: unknown) => failure(error))
        .then((reply) => write(reply))
        .catch((error: unknown) => guard(error));
    } catch (error) {
      // Thrown before the handler ran (limits, bad escapes) or by the route code itself.
      if (!requestId) requestId = randomUUID();
      write(failure(error));
    }

    function failure(error: unknown): Reply {
      const clientError = toClientError(error);
      // 503s (overloaded, model_not_installed) are the system saying no on purpose, not a fault.
      if (clientError.status === 503) options.log.warn({ code: clientError.code, requestId, path: req?.path }, 'request refused');
      else if (clientError.status >= 500) options.log.error({ err: error, requestId, path: req?.path }, 'request failed');
      return errorReply(clientError, requestId);
    }

    function write(reply: Reply): void {
      if (state.aborted || state.answered) return;
      state.answered = true;
      workEnds();
      const closeAfter = CLOSE_AFTER.has(reply.status);
      try {
        res.cork(() => {
          res.writeStatus(`${reply.status} ${STATUS_TEXT[reply.status] ?? ''}`);
          res.writeHeader('x-request-id', requestId);
          for (const [k, v] of Object.entries({ ...(req ? options.commonHeaders?.(req) : {}), ...reply.headers })) res.writeHeader(k, v);
          res.end(reply.body ?? '', closeAfter);
        });
      } catch (error) {
        // Writing failed half-way (a header value uWS refuses): nothing sane can follow on this connection.
        options.log.error({ err: error, requestId }, 'answer could not be written; closing the connection');
        if (!state.aborted) res.close();
        return;
      }
      const ms = Date.now() - started;
      options.onReply?.(pattern, req?.method ?? '', reply.status, ms);
      options.log.debug({ requestId, method: req?.method, path: req?.path, status: reply.status, ms }, 'request');
    }

    /** The last resort: a fault in the answering code itself. Logged, answered 500 if still possible, never rethrown. */
    function guard(error: unknown): void {
      options.log.error({ err: error, requestId }, 'unexpected fault while answering');
      if (state.answered || state.aborted) return;
      try {
        write(errorReply(appError('internal_error', 'internal error'), requestId));
      } catch {
        // write() does not throw; this only keeps the guard itself total.
      }
    }
  });
}

const PREALLOCATE_MAX = 1024 * 1024;

function readBody(res: HttpResponse, limit: number, declared: number, timeoutMs: number, state: { aborted: boolean; answered: boolean }): Promise<Buffer> {
  if (declared > limit) {
    // Say no before reading anything; the connection is closed after the answer.
    res.onData(() => undefined);
    return Promise.reject(appError('payload_too_large', `body is ${declared} bytes; the limit is ${limit}`, { details: { limit } }));
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
    // A body shorter than its Content-Length, or one that trickles in, would hold the
    // request (and its buffer) until uWS' idle timeout; the deadline answers 408 instead.
    const timer = timeoutMs > 0 ? setTimeout(() => {
      if (failed || state.aborted) return;
      failed = true;
      reject(appError('body_timeout', `the body did not arrive within ${timeoutMs} ms (${size} of ${declared || 'unknown'} bytes came)`, { details: { timeoutMs, received: size } }));
    }, timeoutMs) : undefined;
    timer?.unref();
    res.onData((chunk, isLast) => {
      if (failed) return;
      const bytes = new Uint8Array(chunk);
      if (size + bytes.byteLength > limit) {
        failed = true;
        clearTimeout(timer);
        reject(appError('payload_too_large', `body is over the limit of ${limit} bytes`, { details: { limit } }));
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
      if (!isLast) return;
      clearTimeout(timer);
      resolve(whole ? whole.subarray(0, size) : Buffer.concat(chunks, size));
      // uWS keeps this callback until the connection's next request: without these the body
      // would stay alive (and its pages unusable for the next one) until then.
      whole = undefined;
      chunks.length = 0;
    });
  });
}
