/**
 * One error type for everything a caller can be told about. `status` is the HTTP status the
 * edge answers with; `retryable` tells the stage runner whether trying again can help
 * (a corrupt image will stay corrupt; a NATS timeout may not). Both come from the code's entry
 * in the catalogue (error-catalogue.ts): make errors with appError(code, message).
 */
import { ERROR_CATALOGUE, errorSpec, type ErrorCode } from './error-catalogue.js';

export { ERROR_CATALOGUE, ERROR_CODES, errorSpec, isErrorCode, type ErrorCode, type ErrorSpec } from './error-catalogue.js';

interface ErrorOptions {
  details?: unknown;
  cause?: unknown;
}

export class AppError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details?: unknown;
  readonly retryable: boolean;

  /** Prefer appError(code, ...): this constructor takes status and retryable on trust. */
  constructor(status: number, code: string, message: string, options: ErrorOptions & { retryable?: boolean } = {}) {
    super(message, { cause: options.cause });
    this.name = 'AppError';
    this.status = status;
    this.code = code;
    this.details = options.details;
    this.retryable = options.retryable ?? status >= 500;
  }

  toInfo(): { code: string; message: string; details?: unknown } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }

  /** The same error (code, status, retryable, details) told with more context; this one is its cause. */
  withMessage(message: string): AppError {
    return new AppError(this.status, this.code, message, { details: this.details, retryable: this.retryable, cause: this });
  }
}

/** An error whose status and retryable are the catalogue's for `code`. */
export function appError(code: ErrorCode, message: string, options: ErrorOptions = {}): AppError {
  const { status, retryable } = ERROR_CATALOGUE[code];
  return new AppError(status, code, message, { ...options, retryable });
}

/** Whether `error` is an AppError with this code (typed, so a misspelt code does not compile). */
export const hasErrorCode = (error: unknown, code: ErrorCode): error is AppError => error instanceof AppError && error.code === code;

/**
 * An error that arrived as data (a failed job's record, a peer's reply): a code in the
 * catalogue gets the catalogue's status; a code this build does not know keeps the status it
 * came with, or 500.
 */
export function fromErrorInfo(info: { code: string; message: string; details?: unknown; status?: number }): AppError {
  const spec = errorSpec(info.code);
  if (spec) return new AppError(spec.status, info.code, info.message, { details: info.details, retryable: spec.retryable });
  return new AppError(info.status ?? 500, info.code, info.message, { details: info.details });
}

/** Catalogue entry when there is one; else the old fixed status (code not yet catalogued). */
function catalogued(code: string, fallbackStatus: number, message: string, details?: unknown): AppError {
  const spec = errorSpec(code);
  return new AppError(spec?.status ?? fallbackStatus, code, message, { details, retryable: spec?.retryable ?? false });
}

/** @deprecated use appError(code, message, { details }): the status is the catalogue's. */
export const badRequest = (code: string, message: string, details?: unknown) => catalogued(code, 400, message, details);
/** @deprecated use appError(code, message). */
export const notFound = (code: string, message: string) => catalogued(code, 404, message);
/** @deprecated use appError(code, message, { details }). */
export const conflict = (code: string, message: string, details?: unknown) => catalogued(code, 409, message, details);
/** @deprecated use appError(code, message, { details }); input no retry can fix has retryable: false there. */
export const unprocessable = (code: string, message: string, details?: unknown) => catalogued(code, 422, message, details);

/** Anything thrown, as an AppError (unknown errors become retryable 500s). */
export function toAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return appError('internal_error', message, { cause: error });
}
