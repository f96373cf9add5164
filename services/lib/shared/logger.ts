import { Writable } from 'node:stream';
import { pino, type DestinationStream, type Logger } from 'pino';
import { loadConfig, type Config } from './config.js';

/**
 * A pino logger per service, field `service` to tell processes apart. JSON lines when stdout
 * is not a terminal (files, containers, log shippers); one readable line per entry when it is
 * (LOG_FORMAT overrides). Either way each key appears once: pino writes a child's bindings and
 * the call's own fields side by side without merging them (`step` from the child and from the
 * call), so every line is re-read and the last value of a key wins.
 */
export function createLogger(service: string, options: { format?: 'json' | 'pretty'; out?: NodeJS.WritableStream; config?: Pick<Config, 'logLevel' | 'logFormat'> } = {}): Logger {
  // LOG_LEVEL and LOG_FORMAT as the process has them now, unless the caller passes its Config.
  const config = options.config ?? loadConfig();
  const out = options.out ?? process.stdout;
  const format = options.format ?? resolveFormat(out, config.logFormat);
  return pino({ level: config.logLevel, base: { service, pid: process.pid } }, lineStream(out, format === 'pretty' ? prettyLine : (entry) => `${JSON.stringify(entry)}\n`));
}

function resolveFormat(out: NodeJS.WritableStream, logFormat: Config['logFormat']): 'json' | 'pretty' {
  if (logFormat !== 'auto') return logFormat;
  return (out as NodeJS.WriteStream).isTTY ? 'pretty' : 'json';
}

function lineStream(out: NodeJS.WritableStream, render: (entry: Record<string, unknown>) => string): DestinationStream {
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue;
        let entry: Record<string, unknown>;
        try {
          entry = JSON.parse(line) as Record<string, unknown>;
        } catch {
          out.write(`${line}\n`);
          continue;
        }
        out.write(render(entry));
      }
      done();
    },
  }) as unknown as DestinationStream;
}

const LEVELS: Record<number, [string, string]> = {
  10: ['TRACE', '\x1b[90m'], 20: ['DEBUG', '\x1b[36m'], 30: ['INFO ', '\x1b[32m'], 40: ['WARN ', '\x1b[33m'], 50: ['ERROR', '\x1b[31m'], 60: ['FATAL', '\x1b[35m'],
};
const OMIT = new Set(['level', 'time', 'msg', 'service', 'pid', 'hostname']);

/** `12:01:02.345 INFO  edge        job finished jobId=01H… status=done ms=120` */
export function prettyLine(entry: Record<string, unknown>): string {
  const [level, color] = LEVELS[entry.level as number] ?? ['?', ''];
  const time = new Date(entry.time as number).toISOString().slice(11, 23);
  const fields = Object.entries(entry).filter(([k]) => !OMIT.has(k)).map(([k, v]) => {
    if (k === 'err' && v && typeof v === 'object') return `err=${JSON.stringify((v as { message?: string }).message ?? v)}${(v as { stack?: string }).stack ? `\n${(v as { stack: string }).stack}` : ''}`;
    return `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`;
  });
  return `\x1b[90m${time}\x1b[0m ${color}${level}\x1b[0m ${String(entry.service ?? '').padEnd(14)} ${entry.msg ?? ''}${fields.length ? ` \x1b[90m${fields.join(' ')}\x1b[0m` : ''}\n`;
}
export type { Logger };
