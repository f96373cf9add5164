/**
 * The NATS errors the product reacts to, checked in this one place by the client's typed errors
 * (the core client's error classes, JetStreamApiError.code) instead of regular expressions over
 * messages or class names. The message test stays only as the fallback for JetStream answers
 * the client surfaces untyped.
 */
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import { errors } from '@nats-io/transport-node';
import { AppError } from '../shared/errors.js';

const apiCode = (error: unknown): number | undefined => (error instanceof JetStreamApiError ? error.code : undefined);

/** A compare-and-set lost: the subject's last sequence was not the one expected (KV create/update, terminal events). */
export function isWrongLastSequence(error: unknown): boolean {
  const code = apiCode(error);
  if (code !== undefined) return code === JetStreamApiCodes.StreamWrongLastSequence || code === JetStreamApiCodes.StreamWrongLastSequenceUnknown;
  return /wrong last sequence|key exists/i.test(String(error));
}

export function isStreamNotFound(error: unknown): boolean {
  const code = apiCode(error);
  if (code !== undefined) return code === JetStreamApiCodes.StreamNotFound;
  return (error as { name?: string })?.name === 'StreamNotFoundError' || /stream not found/i.test(String(error));
}

export function isConsumerNotFound(error: unknown): boolean {
  const code = apiCode(error);
  if (code !== undefined) return code === JetStreamApiCodes.ConsumerNotFound;
  return (error as { name?: string })?.name === 'ConsumerNotFoundError' || /consumer not found/i.test(String(error));
}

/** Another process created the same stream or consumer between our look and our add. */
export function isAlreadyExists(error: unknown): boolean {
  // 10058: stream name already in use; 10148: consumer already exists; 10013: consumer name already in use.
  const code = apiCode(error);
  if (code !== undefined && [10058, 10148, 10013].includes(code)) return true;
  return /already (exists|in use)/i.test(String(error));
}

/**
 * The bus is away (nats-server restarting, the connection closed or draining, a request that
 * nobody answered in time): trying again shortly can succeed. A JetStream API refusal is not this.
 */
const BUS_UNAVAILABLE = [
  errors.TimeoutError, errors.ConnectionError, errors.ClosedConnectionError, errors.DrainingConnectionError,
  errors.NoRespondersError, errors.RequestError,
];
export const isBusUnavailable = (error: unknown): boolean => BUS_UNAVAILABLE.some((type) => error instanceof type);

/**
 * `error`, or an error it was made from, says the bus is away: isBusUnavailable, a publish whose
 * ack was lost with the connection (lost-acks.ts), JetStream not answering (the client's
 * JetStreamNotEnabled is a no-responders answer: a stream with no leader yet, or none on a server
 * that is starting). Trying the same thing again later can succeed; the input is not at fault.
 */
export function isBusOutage(error: unknown): boolean {
  for (let e = error, depth = 0; e !== undefined && e !== null && depth < 6; e = (e as { cause?: unknown }).cause, depth++) {
    if (isBusUnavailable(e) || (e instanceof AppError && e.code === 'bus_unavailable')) return true;
  }
  return false;
}

/**
 * How long to wait before trying again after the n-th outage in a row (0-based): 0.25, 0.5, 1,
 * then every 2 s. Short at first (a nats-server restart is over in about a second), then slow
 * enough that a long outage costs little. The stage runner and the WebSocket gateway use it.
 */
export const outageWaitMs = (outages: number): number => Math.min(2000, 250 * 2 ** outages);

/** A request that no subscriber answered (the server's 503 status), bare or as a RequestError's cause. */
export function isNoResponders(error: unknown): boolean {
  return error instanceof errors.NoRespondersError || (error instanceof errors.RequestError && error.isNoResponders());
}
