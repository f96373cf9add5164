/**
 * Reading request bodies: JSON with size and depth limits, base64 images, and the image of a
 * job request from multipart (`file`), JSON (`image`: base64 or a data URL) or an uploaded
 * blob (`blobId`).
 */
import type { Config } from '../../lib/shared/config.js';
import { appError } from '../../lib/shared/errors.js';
import type { BlobRef, CreateJobRequest, Owner } from '../../lib/shared/schema-types.js';
import { validateOrThrow } from '../../lib/shared/schemas.js';
import type { CallerBlobs } from '../blobs.js';
import { formValue, parseMultipart } from './multipart.js';
import type { Request } from './uws-http.js';

export interface JobSubmission {
  pipeline: unknown;
  image?: Buffer;
  contentType?: string;
  input?: BlobRef;
  deadlineMs?: number;
  caseId?: string;
  originalSha256?: string;
}

/** caseId and originalSha256 of a request, as the submission takes them. */
const caseFields = (request: CreateJobRequest) => ({
  ...(request.caseId !== undefined ? { caseId: request.caseId } : {}),
  ...(request.originalSha256 !== undefined ? { originalSha256: request.originalSha256 } : {}),
});

/** The image and pipeline of POST /api/jobs, from multipart or JSON. */
export async function readJobSubmission(req: Request, owner: Owner, config: Config, blobs: CallerBlobs): Promise<JobSubmission> {
  const contentType = req.headers['content-type'] ?? '';
  const body = await req.body();
  if (contentType.startsWith('multipart/form-data')) {
    const form = parseMultipart(body, contentType);
    const rawPipeline = form.fields.get('pipeline') ?? req.query.get('pipeline');
    if (!rawPipeline) throw appError('pipeline_required', 'field "pipeline" (JSON) is missing');
    const parsed = parseJson(rawPipeline, config, 'pipeline');
    const spec = (Array.isArray(parsed) ? { pipeline: parsed } : parsed) as Record<string, unknown>;
    if (spec && typeof spec === 'object') {
      for (const name of ['deadlineMs', 'blobId']) {
        const raw = form.fields.get(name) ?? req.query.get(name);
        if (raw !== undefined && raw !== null) spec[name] = formValue(raw);
      }
      // Ids and hashes stay strings: formValue would read an all-digit PLAYE case id as a number.
      for (const name of ['caseId', 'originalSha256']) {
        const raw = form.fields.get(name) ?? req.query.get(name);
        if (raw !== undefined && raw !== null) spec[name] = raw;
      }
    }
    const request = validateOrThrow<CreateJobRequest>('http/create-job.schema.json', spec, { what: 'job request' });
    const file = form.files.get('file');
    if (file) return { pipeline: request.pipeline, image: file.data, contentType: file.type, deadlineMs: request.deadlineMs, ...caseFields(request) };
    if (request.blobId) return { pipeline: request.pipeline, ...(await fromBlob(blobs, owner, request.blobId)), deadlineMs: request.deadlineMs, ...caseFields(request) };
    if (request.originalSha256) return { pipeline: request.pipeline, deadlineMs: request.deadlineMs, ...caseFields(request) };
    throw appError('image_required', 'multipart field "file" with the image (or a "blobId", or with a caseId an "originalSha256") is missing');
  }
  if (contentType.startsWith('application/json')) {
    const request = validateOrThrow<CreateJobRequest>('http/create-job.schema.json', parseJsonBody(body, config, true), { what: 'job request' });
    if ([request.image, request.blobId, request.originalSha256].filter((v) => v !== undefined).length > 1) throw appError('invalid_request', 'give one of "image", "blobId" or "originalSha256"');
    if (request.blobId) return { pipeline: request.pipeline, ...(await fromBlob(blobs, owner, request.blobId)), deadlineMs: request.deadlineMs, ...caseFields(request) };
    if (request.originalSha256) return { pipeline: request.pipeline, deadlineMs: request.deadlineMs, ...caseFields(request) };
    if (!request.image) throw appError('image_required', 'give the image as "image" (base64 or a data URL), as "blobId", or with a caseId as "originalSha256"');
    return { pipeline: request.pipeline, image: decodeBase64Image(request.image), deadlineMs: request.deadlineMs, ...caseFields(request) };
  }
  throw appError('unsupported_media_type', 'send multipart/form-data (file + pipeline) or application/json');
}

async function fromBlob(blobs: CallerBlobs, owner: Owner, blobId: string): Promise<{ image: Buffer; input: BlobRef }> {
  const { ref, bytes } = await blobs.read(owner, blobId);
  return { image: bytes, input: ref };
}

/**
 * A JSON body: at most MAX_JSON_BYTES, or, when it may carry a base64 image, that plus the
 * base64 size of the largest upload (and then the part besides the image is checked too).
 */
export function parseJsonBody(body: Buffer, config: Config, mayCarryImage = false): unknown {
  const imageAllowance = mayCarryImage ? Math.ceil((config.maxUploadBytes * 4) / 3) + 1024 : 0;
  if (body.length > config.maxJsonBytes + imageAllowance) {
    throw appError('payload_too_large', `the JSON body is ${body.length} bytes; the limit is ${config.maxJsonBytes + imageAllowance}`, { details: { limit: config.maxJsonBytes + imageAllowance } });
  }
  const value = parseJson(body.toString('utf8'), config, 'body');
  if (mayCarryImage && body.length > config.maxJsonBytes) {
    const image = (value as { image?: unknown } | null)?.image;
    const rest = body.length - (typeof image === 'string' ? image.length : 0);
    if (rest > config.maxJsonBytes) throw appError('payload_too_large', `the JSON besides the image is ${rest} bytes; the limit is ${config.maxJsonBytes}`, { details: { limit: config.maxJsonBytes } });
  }
  return value;
}

export function parseJson(text: string, config: Config, what: string): unknown {
  // Depth is checked on the text before JSON.parse builds anything (a deeply nested body is cheap to send).
  if (nestingDepth(text) > config.maxJsonDepth) throw appError('json_too_deep', `${what} is nested deeper than ${config.maxJsonDepth} levels`, { details: { maxDepth: config.maxJsonDepth } });
  try {
    return JSON.parse(text);
  } catch (error) {
    throw appError('invalid_json', `${what} is not valid JSON: ${(error as Error).message}`);
  }
}

/** The deepest nesting of [ and { outside strings. */
export function nestingDepth(text: string): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) deepest = Math.max(deepest, ++depth);
    else if (c === 0x7d || c === 0x5d) depth--;
  }
  return deepest;
}

export function decodeBase64Image(text: string): Buffer {
  const match = /^data:[^;,]*(;base64)?,/.exec(text);
  const payload = match ? text.slice(match[0].length) : text;
  if (!/^[A-Za-z0-9+/=_\-\s]*$/.test(payload)) throw appError('invalid_base64', 'image is not valid base64');
  return Buffer.from(payload, 'base64');
}

/** A list route's `limit` query parameter: `fallback` when absent, else an integer from 1 to `max` (400 invalid_pagination). */
export function pageLimit(req: Request, fallback: number, max: number): number {
  const raw = req.query.get('limit');
  const limit = raw === null ? fallback : Number(raw);
  if (!Number.isInteger(limit) || limit < 1 || limit > max) {
    throw appError('invalid_pagination', `limit must be an integer from 1 to ${max}`, { details: [{ path: 'limit', message: 'out of range' }] });
  }
  return limit;
}
