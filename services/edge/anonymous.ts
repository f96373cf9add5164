/**
 * Requests without a token, for a front end that sends none (PLAYE's): off unless
 * ANONYMOUS_SUBJECT is set; then a request with no Authorization header at all acts as that one
 * subject (its jobs are that subject's, as for a token with that `sub`). Anyone who can reach
 * the port is then that user, so the edge refuses to start with it on a listener other than
 * loopback unless ANONYMOUS_ANY_HOST says so, and it says so in a warning at every start.
 *
 * A browser page from another site can still send simple requests to a loopback port (no
 * preflight for a multipart POST); those carry an Origin header, and an origin that CORS_ORIGINS
 * does not allow gets no anonymous access (401 as before): only the configured front end, or a
 * non-browser client on this machine, rides on the setting.
 */
import type { Config } from '../lib/shared/config.js';
import type { Logger } from '../lib/shared/logger.js';
import type { Owner } from '../lib/shared/schema-types.js';
import { originAllowed } from './cors.js';

const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|\[::1\]|localhost)$/i;

export const isLoopbackHost = (host: string) => LOOPBACK.test(host);

/** Why the setting is not allowed on this listener, or undefined when it is (or is off). */
export function anonymousRefusal(config: Config): string | undefined {
  if (!config.anonymousSubject || isLoopbackHost(config.httpHost) || config.anonymousAnyHost) return undefined;
  return `ANONYMOUS_SUBJECT is set but HTTP_HOST is ${config.httpHost}: requests without a token are only accepted on a loopback listener (HTTP_HOST=127.0.0.1); set ANONYMOUS_ANY_HOST=true to allow them from the network`;
}

/** Throws when the setting is not allowed on this listener; warns when it is on. */
export function checkAnonymousSetting(config: Config, log: Logger): void {
  if (!config.anonymousSubject) return;
  const refusal = anonymousRefusal(config);
  if (refusal) throw new Error(refusal);
  log.warn({ subject: config.anonymousSubject, httpHost: config.httpHost, anyHost: config.anonymousAnyHost },
    'ANONYMOUS_SUBJECT is set: HTTP requests without a token act as this subject (anyone who can reach this port)');
}

/** The owner a request without any Authorization header acts as, or undefined (then: 401). */
export function anonymousOwner(config: Config, headers: Record<string, string | undefined>): Owner | undefined {
  if (!config.anonymousSubject || headers.authorization !== undefined) return undefined;
  const origin = headers.origin;
  if (origin !== undefined && !originAllowed(config.corsOrigins, origin)) return undefined;
  return { sub: config.anonymousSubject };
}
