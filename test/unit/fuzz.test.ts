/**
 * Property-based fuzzing (fast-check) of the edge's parsers: the multipart reader, path and
 * query parsing, JSON depth checking and pipeline validation. The property everywhere: any
 * input either parses or is refused with an AppError carrying a 4xx status; nothing else
 * escapes (a TypeError or RangeError out of these would be a 500, or worse, a dead edge).
 * Bounded by a run count and fast-check's time limit so CI stays short; a failure prints the
 * seed and the shrunk input, to be replayed with FUZZ_SEED.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { nestingDepth, parseJson, decodeBase64Image } from '../../services/edge/http/body.js';
import { formValue, parseMultipart } from '../../services/edge/http/multipart.js';
import { decodePathParameter } from '../../services/edge/http/uws-http.js';
import { validatePipeline } from '../../services/lib/pipeline/pipeline.js';
import { loadStages } from '../../services/lib/steps/registry.js';
import { AppError } from '../../services/lib/shared/errors.js';
import { loadConfig } from '../../services/lib/shared/config.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 300);
const params: fc.Parameters<unknown> = { numRuns: RUNS, interruptAfterTimeLimit: 8000, ...(process.env.FUZZ_SEED ? { seed: Number(process.env.FUZZ_SEED) } : {}) };
const config = loadConfig({ MAX_JSON_DEPTH: '32' });

/** Runs work; passes when it returns or throws a 4xx AppError. */
function totalOr4xx(work: () => unknown): true {
  try {
    work();
  } catch (error) {
    assert.ok(error instanceof AppError, `not an AppError: ${String(error)}`);
    assert.ok(error.status >= 400 && error.status < 500, `status ${error.status}`);
  }
  return true;
}

const boundary = fc.stringMatching(/^[A-Za-z0-9'()+_,./:=?-]{1,40}$/);
const fieldName = fc.stringMatching(/^[a-z][a-z0-9_]{0,15}$/);

test('multipart: arbitrary bytes and content types are parsed or refused with 400, never thrown otherwise', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 2048 }), fc.oneof(boundary.map((b) => `multipart/form-data; boundary=${b}`), fc.string({ maxLength: 80 })), (bytes, contentType) =>
    totalOr4xx(() => parseMultipart(Buffer.from(bytes), contentType))), params);
});

test('multipart: mutations of a valid body (truncation, inserted bytes) are parsed or refused with 400', () => {
  fc.assert(fc.property(boundary, fc.uint8Array({ maxLength: 512 }), fc.nat(), fc.uint8Array({ maxLength: 16 }), (b, file, cut, inserted) => {
    const body = Buffer.concat([Buffer.from(`--${b}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`), Buffer.from(file), Buffer.from(`\r\n--${b}--\r\n`)]);
    const at = cut % (body.length + 1);
    const mutated = Buffer.concat([body.subarray(0, at), Buffer.from(inserted), body.subarray(at)]);
    totalOr4xx(() => parseMultipart(mutated.subarray(0, mutated.length - (cut % 7)), `multipart/form-data; boundary=${b}`));
    return true;
  }), params);
});

test('multipart: a well-formed form round-trips (fields and file bytes come back unchanged)', () => {
  fc.assert(fc.property(boundary, fc.uniqueArray(fieldName, { maxLength: 4 }).chain((names) => fc.tuple(fc.constant(names), fc.array(fc.string({ unit: 'binary', maxLength: 40 }).filter((s) => !s.includes('\r\n--')), { minLength: names.length, maxLength: names.length }))), fc.uint8Array({ maxLength: 512 }), (b, [names, values], file) => {
    const fileBytes = Buffer.from(file);
    if (fileBytes.includes(Buffer.from(`--${b}`)) || values.some((v) => v.includes(`--${b}`))) return true; // the boundary must not occur in the content
    const parts = names.map((n, i) => Buffer.from(`--${b}\r\nContent-Disposition: form-data; name="${n === 'file' ? 'f' : n}"\r\n\r\n${values[i]}\r\n`));
    const body = Buffer.concat([...parts, Buffer.from(`--${b}\r\nContent-Disposition: form-data; name="file"; filename="x.bin"\r\n\r\n`), fileBytes, Buffer.from(`\r\n--${b}--\r\n`)]);
    const form = parseMultipart(body, `multipart/form-data; boundary=${b}`);
    assert.deepEqual(form.files.get('file')?.data, fileBytes);
    names.forEach((n, i) => assert.equal(form.fields.get(n === 'file' ? 'f' : n), values[i]));
    return true;
  }), params);
});

test('path parameters: any percent-encoding decodes or is 400 invalid_path; encoded text round-trips', () => {
  const escapes = fc.array(fc.oneof(fc.constantFrom('%', '%%', '%f', '%ff', '%c0', '%E0%A4%A', '%ZZ', '%2F', '%00'), fc.string({ maxLength: 5 })), { maxLength: 10 }).map((a) => a.join(''));
  fc.assert(fc.property(escapes, (raw) => totalOr4xx(() => decodePathParameter(raw, 'id'))), params);
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 60 }), (text) => decodePathParameter(encodeURIComponent(text), 'id') === text), params);
});

test('query strings: URLSearchParams never throws and form values never throw', () => {
  fc.assert(fc.property(fc.string({ maxLength: 200 }), (raw) => {
    const query = new URLSearchParams(raw);
    for (const [, value] of query) formValue(value);
    return true;
  }), params);
});

test('JSON: nestingDepth matches the real depth of any value; parseJson refuses only with 400', () => {
  const depthOf = (v: unknown): number => (v !== null && typeof v === 'object' ? 1 + Math.max(0, ...Object.values(v as object).map(depthOf)) : 0);
  fc.assert(fc.property(fc.jsonValue({ maxDepth: 40 }), (value) => nestingDepth(JSON.stringify(value)) === depthOf(value)), params);
  fc.assert(fc.property(fc.string({ maxLength: 300 }), (text) => totalOr4xx(() => parseJson(text, config, 'body'))), params);
  fc.assert(fc.property(fc.integer({ min: 33, max: 20_000 }), (depth) => {
    assert.throws(() => parseJson('['.repeat(depth) + ']'.repeat(depth), config, 'body'), (e: AppError) => e.code === 'json_too_deep');
    return true;
  }), { ...params, numRuns: Math.min(RUNS, 50) });
  fc.assert(fc.property(fc.string({ maxLength: 200 }), (text) => totalOr4xx(() => decodeBase64Image(text))), params);
});

test('pipelines: any JSON value is a valid pipeline or refused with a 400 naming where', async () => {
  const stages = await loadStages();
  const names = [...stages.keys()];
  const step = fc.record({
    step: fc.oneof(fc.constantFrom(...names), fc.string({ maxLength: 10 })),
    params: fc.option(fc.dictionary(fc.constantFrom('factor', 'quality', 'format', 'strength', 'model', 'tile', 'x'), fc.oneof(fc.double(), fc.integer(), fc.string({ maxLength: 8 }), fc.boolean(), fc.constant(null))), { nil: undefined }),
    when: fc.option(fc.string({ maxLength: 12 }), { nil: undefined }),
  }, { requiredKeys: ['step'] });
  fc.assert(fc.property(fc.oneof(fc.array(step, { maxLength: 8 }), fc.jsonValue({ maxDepth: 4 })), (raw) => {
    try {
      validatePipeline(raw, stages);
    } catch (error) {
      assert.ok(error instanceof AppError && error.status === 400, `not a 400: ${String(error)}`);
      assert.match(error.message, /pipeline/);
    }
    return true;
  }), params);
});
