/**
 * One error type for everything a caller can be told about. `status` is the HTTP status the
 * edge answers with; `retryable` tells the stage runner whether trying again can help
 * (a corrupt image will stay corrupt; a NATS timeout may not).
 */
export class AppError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details?: unknown;
  readonly retryable: boolean;

  constructor(status: number, code: string, message: string, options: { details?: unknown; retryable?: boolean; cause?: unknown } = {}) {
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
}

export const badRequest = (code: string, message: string, details?: unknown) => new AppError(400, code, message, { details });
export const notFound = (code: string, message: string) => new AppError(404, code, message);
export const conflict = (code: string, message: string, details?: unknown) => new AppError(409, code, message, { details });
/** Input that no retry can fix: the job fails at once. */
export const unprocessable = (code: string, message: string, details?: unknown) =>
  new AppError(422, code, message, { details, retryable: false });

/** Anything thrown, as an AppError (unknown errors become retryable 500s). */
export function toAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new AppError(500, 'internal_error', message, { cause: error, retryable: true });
}

const BUS_ERRORS = new Set(['TimeoutError', 'ConnectionError', 'ClosedConnectionError', 'DrainingConnectionError', 'NoRespondersError', 'RequestError']);

/**
 * For answers to clients: a NATS error while the bus is away (nats-server restarting) is a
 * 503 bus_unavailable with Retry-After, which a client retries, not a 500 that says the
 * request itself broke something. Everything else as toAppError.
 */
export function toClientError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  const name = error instanceof Error ? error.name : '';
  if (BUS_ERRORS.has(name) || BUS_ERRORS.has(error?.constructor?.name ?? '')) {
    return new AppError(503, 'bus_unavailable', 'the message bus is not reachable right now; retry shortly', { cause: error, retryable: true, details: { retryAfterS: 1 } });
  }
  return toAppError(error);
}
