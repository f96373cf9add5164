/**
 * Loads every JSON Schema under schemas/ into one ajv instance. Messages, HTTP bodies and
 * WebSocket frames are validated with these where they enter a process.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { appError, type ErrorCode } from './errors.js';

const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

/** The repository's schemas/ folder, found from this file (works from services/ and dist/services/). */
export const schemasDir = findSchemasDir();
const BASE = 'https://photolab.dev/schemas/';

function findSchemasDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = path.join(dir, 'schemas');
    try {
      if (statSync(path.join(candidate, 'common.schema.json')).isFile()) return candidate;
    } catch {
      /* keep looking upwards */
    }
    dir = path.dirname(dir);
  }
  throw new Error('schemas/ folder not found');
}

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    return statSync(full).isDirectory() ? walk(full) : name.endsWith('.schema.json') ? [full] : [];
  });
}

// discriminator: a oneOf tagged by a property (the WebSocket messages' `type`) is checked against
// its one branch, so an error names what is wrong with that message, not with the first branch.
const ajv = new Ajv({ allErrors: true, strict: false, useDefaults: true, coerceTypes: false, discriminator: true });
addFormats(ajv);
for (const file of walk(schemasDir)) ajv.addSchema(JSON.parse(readFileSync(file, 'utf8')));

export interface ValidationIssue {
  path: string;
  message: string;
}

export function describeErrors(errors: ErrorObject[] | null | undefined, prefix = ''): ValidationIssue[] {
  return (errors ?? []).map((e) => {
    const extra = e.keyword === 'additionalProperties' ? `: ${(e.params as { additionalProperty: string }).additionalProperty}`
      : e.keyword === 'enum' ? `: ${(e.params as { allowedValues: unknown[] }).allowedValues.join(', ')}` : '';
    return { path: `${prefix}${e.instancePath}` || '/', message: `${e.message ?? 'invalid'}${extra}` };
  });
}

/** A compiled validator for the schema at schemas/<relativePath>. */
export function schemaValidator<T>(relativePath: string): ValidateFunction<T> {
  const fn = ajv.getSchema<T>(BASE + relativePath);
  if (!fn) throw new Error(`no schema ${relativePath}`);
  return fn;
}

/**
 * Validates and returns the value typed, or throws the AppError `code` (a 400, invalid_request
 * unless told) whose details list each failing path.
 */
export function validateOrThrow<T>(relativePath: string, value: unknown, options: { code?: ErrorCode; what?: string; prefix?: string } = {}): T {
  const validate = schemaValidator<T>(relativePath);
  if (validate(value)) return value;
  const issues = describeErrors(validate.errors, options.prefix);
  const first = issues[0];
  throw appError(options.code ?? 'invalid_request',
    `${options.what ?? 'request'} is invalid${first ? `: ${first.path} ${first.message}` : ''}`, { details: issues });
}

/**
 * Adds a schema that is not a file under schemas/ (a test's fixture step, say), under its $id
 * (https://photolab.dev/schemas/<path>): from then on it validates like the files do.
 */
export function registerSchema(schema: { $id: string; [keyword: string]: unknown }): void {
  if (!ajv.getSchema(schema.$id)) ajv.addSchema(schema);
}

/** Names of the steps that have a params schema (schemas/steps/<step>.schema.json). */
export function stepSchemaNames(): string[] {
  return readdirSync(path.join(schemasDir, 'steps'))
    .filter((f) => f.endsWith('.schema.json'))
    .map((f) => f.replace(/\.schema\.json$/, ''))
    .sort();
}
