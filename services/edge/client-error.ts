/**
 * What a client is told when handling its request threw: an AppError as it is; a NATS error
 * while the bus is away (nats-server restarting) a 503 bus_unavailable with Retry-After, which a
 * client retries, not a 500 that says the request itself broke something; anything else a 500.
 * Here at the edge, not in lib/shared, so that the steps' error module carries no NATS client.
 */
import { isBusUnavailable } from '../lib/bus/nats-errors.js';
import { AppError, appError, toAppError } from '../lib/shared/errors.js';

export function toClientError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  if (isBusUnavailable(error)) {
    return appError('bus_unavailable', 'the message bus is not reachable right now; retry shortly', { cause: error, details: { retryAfterS: 1 } });
  }
  return toAppError(error);
}
