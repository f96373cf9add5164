import { pino, type Logger } from 'pino';
import { config } from './config.js';

/** A pino logger per service; JSON lines on stdout, one field `service` to tell processes apart. */
export function createLogger(service: string): Logger {
  return pino({ name: service, level: config.logLevel, base: { service, pid: process.pid } });
}
export type { Logger };
