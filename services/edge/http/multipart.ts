/**
 * multipart/form-data bodies, parsed by uWebSockets.js' own getParts. Values of text fields
 * come back as strings; the front end JSON-encodes some of them (`2`, `"medium"`), so
 * `formValue` accepts JSON-encoded and plain values alike.
 */
import './uws-env.js';
import uWS from 'uWebSockets.js';
import { appError } from '../../lib/shared/errors.js';

export interface FormData {
  files: Map<string, { data: Buffer; filename?: string; type?: string }>;
  fields: Map<string, string>;
}

export function parseMultipart(body: Buffer, contentType: string): FormData {
  // getParts takes an ArrayBuffer: the body's own when it spans all of it (no copy).
  const owned = body.byteOffset === 0 && body.byteLength === body.buffer.byteLength;
  const arrayBuffer = (owned ? body.buffer : body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength)) as ArrayBuffer;
  const parts = uWS.getParts(arrayBuffer, contentType);
  if (!parts) throw appError('invalid_multipart', 'the multipart body could not be parsed (check the boundary)');
  const form: FormData = { files: new Map(), fields: new Map() };
  for (const part of parts) {
    const data = Buffer.from(part.data);
    if (part.filename !== undefined || part.name === 'file') {
      form.files.set(part.name, { data, filename: part.filename, type: part.type });
    } else {
      form.fields.set(part.name, data.toString('utf8'));
    }
  }
  return form;
}

/** A form or query value that may be JSON-encoded ("2", "\"medium\"", "true") or plain (medium). */
export function formValue(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}
