/**
 * The NATS errors the product reacts to, checked by the client's typed error codes
 * (JetStreamApiError.code) in this one place instead of regular expressions over messages.
 * The message test stays only as the fallback for errors the client surfaces untyped (KV).
 */
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';

const apiCode = (error: unknown): number | undefined => (error instanceof JetStreamApiError ? error.code : undefined);

/** A compare-and-set lost: the subject's last sequence was not the one expected (KV create/update, terminal events). */
export function isWrongLastSequence(error: unknown): boolean {
  const code = apiCode(error);
  if (code !== undefined) return code === JetStreamApiCodes.StreamWrongLastSequence;
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
