/**
 * Small HTTP helpers for the edge's integration tests: a request that returns status,
 * headers and the body (JSON when it says so), a multipart body built by hand (exactly the
 * bytes and headers a browser form sends, nothing added), and checks for the error body.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { schemaValidator, describeErrors } from '../../services/lib/shared/schemas.js';

export interface HttpAnswer {
  status: number;
  headers: Record<string, string>;
  bytes: Buffer;
  body: any;
}

/** A request with node:http, so no header is added that the test did not ask for. */
export function request(url: string, options: { method?: string; headers?: Record<string, string>; body?: Buffer | string } = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const body = options.body === undefined ? undefined : Buffer.isBuffer(options.body) ? options.body : Buffer.from(options.body);
    const headers: Record<string, string> = { ...options.headers };
    if (body && headers['content-length'] === undefined && headers['transfer-encoding'] === undefined) headers['content-length'] = String(body.length);
    const req = http.request(url, { method: options.method ?? 'GET', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const bytes = Buffer.concat(chunks);
        const flat: Record<string, string> = {};
        for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) flat[k] = Array.isArray(v) ? v.join(', ') : v;
        let parsed: unknown;
        if ((flat['content-type'] ?? '').includes('json') && bytes.length > 0) parsed = JSON.parse(bytes.toString('utf8'));
        resolve({ status: res.statusCode ?? 0, headers: flat, bytes, body: parsed });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

export interface FormPart {
  name: string;
  value: string | Buffer;
  filename?: string;
  contentType?: string;
}

/** A multipart/form-data body as browsers build it. */
export function multipart(parts: FormPart[]): { body: Buffer; contentType: string } {
  const boundary = `----WebKitFormBoundary${Math.random().toString(36).slice(2, 18)}`;
  const chunks: Buffer[] = [];
  for (const part of parts) {
    let head = `--${boundary}\r\nContent-Disposition: form-data; name="${part.name}"`;
    if (part.filename !== undefined) head += `; filename="${part.filename}"\r\nContent-Type: ${part.contentType ?? 'application/octet-stream'}`;
    chunks.push(Buffer.from(`${head}\r\n\r\n`), Buffer.isBuffer(part.value) ? part.value : Buffer.from(part.value), Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` };
}

/** Asserts a value matches schemas/<path>. */
export function assertSchema(relativePath: string, value: unknown): void {
  const validate = schemaValidator(relativePath);
  // Validation fills defaults in: check a copy.
  const ok = validate(structuredClone(value));
  assert.ok(ok, `${relativePath}: ${JSON.stringify(describeErrors(validate.errors))} in ${JSON.stringify(value).slice(0, 500)}`);
}

/** An error answer: status, code, a body that matches the error schema, and the request id in body and header. */
export function assertError(answer: HttpAnswer, status: number, code: string): void {
  assert.equal(answer.status, status, `expected ${status} ${code}, got ${answer.status} ${answer.bytes.toString().slice(0, 300)}`);
  assertSchema('http/error.schema.json', answer.body);
  assert.equal(answer.body.code, code, answer.bytes.toString());
  assert.ok(answer.headers['x-request-id'], 'x-request-id header');
  assert.equal(answer.body.requestId, answer.headers['x-request-id']);
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** Sends raw bytes and collects everything the edge answers until it closes (or `settleMs` after the first answer). */
export function rawRequest(port: number, bytes: Buffer | string, settleMs = 200): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    let timer: NodeJS.Timeout | undefined;
    socket.on('data', (d) => {
      text += d.toString('latin1');
      clearTimeout(timer);
      timer = setTimeout(() => { socket.destroy(); resolve({ text, closed: false }); }, settleMs);
    });
    socket.on('close', () => { clearTimeout(timer); resolve({ text, closed: true }); });
    socket.on('error', reject);
    socket.write(bytes);
  });
}

/** The JSON body of a raw HTTP answer. */
export function rawBody(text: string): any {
  const body = text.slice(text.indexOf('\r\n\r\n') + 4);
  return JSON.parse(body);
}
