/**
 * The metrics store: one @clickhouse/client, talking either to a ClickHouse server over HTTP
 * (CLICKHOUSE_URL set) or to chDB, the in-process ClickHouse engine, through chDB's
 * `chdb/connection` plug for createClient({ connection }) (CLICKHOUSE_URL empty; data under
 * DATA_DIR/chdb).
 *
 * Everything the metrics code runs must work on both chDB (ClickHouse 26.x) and the oldest
 * server we support, Debian's clickhouse-server 18.16, which has no query parameters, no
 * JSONCompactEachRow, no DateTime64, no insert_deduplication_token and no async_insert.
 * `supportsQueryParams` tells the read side which of its two query forms to use.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { createClient, ClickHouseLogLevel, type ClickHouseClient, type Logger as ChLogger, type LogParams, type ErrorLogParams, type WarnLogParams } from '@clickhouse/client';
import type { Config } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';

export type MetricsBackend = 'chdb' | 'server';

export interface MetricsStore {
  readonly client: ClickHouseClient;
  readonly backend: MetricsBackend;
  /** Database holding the metrics tables; always a plain identifier (see assertIdentifier). */
  readonly database: string;
  /** Server-side query parameters ({name:Type}); false on ClickHouse before 19.x. */
  readonly supportsQueryParams: boolean;
  /** version() of the engine, e.g. "26.7.2.1" or "18.16.1". */
  readonly version: string;
  /** `${database}.${table}`, for SQL. */
  table(name: string): string;
  close(): Promise<void>;
}

export interface MetricsStoreOptions {
  /** HTTP URL of a ClickHouse server; empty or absent: embedded chDB. */
  url?: string;
  user?: string;
  password?: string;
  database?: string;
  /** chDB's data directory (default: <DATA_DIR>/chdb). Only used without url. */
  chdbPath?: string;
  dataDir?: string;
  /** HTTP request timeout against a server, ms (default 10 s: a stopped server must not hang an insert for long). */
  requestTimeoutMs?: number;
  logger?: Logger;
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Throws unless `name` is a bare ClickHouse identifier (no quoting needed, nothing to inject). */
export function assertIdentifier(name: string, what = 'identifier'): string {
  if (typeof name !== 'string' || !IDENTIFIER.test(name) || name.length > 64) {
    throw new Error(`${what} must match ${IDENTIFIER} (at most 64 characters), got ${JSON.stringify(name)}`);
  }
  return name;
}

/** Options for openMetricsStore from the process configuration. */
export function storeOptionsFromConfig(config: Config, logger?: Logger): MetricsStoreOptions {
  return {
    url: config.clickhouseUrl,
    user: config.clickhouseUser,
    password: config.clickhousePassword,
    database: config.clickhouseDatabase,
    dataDir: config.dataDir,
    logger,
  };
}

/** Routes @clickhouse/client's own log lines into pino (as debug: we log failures ourselves). */
function loggerClassFor(logger: Logger | undefined): new () => ChLogger {
  const log = logger?.child({ component: 'clickhouse-client' });
  return class implements ChLogger {
    trace(p: LogParams) { log?.trace({ module: p.module, args: p.args }, p.message); }
    debug(p: LogParams) { log?.debug({ module: p.module, args: p.args }, p.message); }
    info(p: LogParams) { log?.debug({ module: p.module, args: p.args }, p.message); }
    warn(p: WarnLogParams) { log?.debug({ module: p.module, args: p.args, err: p.err }, p.message); }
    error(p: ErrorLogParams) { log?.debug({ module: p.module, args: p.args, err: p.err?.message }, p.message); }
  };
}

/** chDB binds one data directory per process: the one chDB store of this process, shared. */
let chdbShared: { path: string; client: ClickHouseClient; version: string; refs: number } | undefined;

async function openChdb(chdbPath: string, logger?: Logger): Promise<{ client: ClickHouseClient; version: string }> {
  if (chdbShared) {
    if (chdbShared.path !== chdbPath) {
      throw new Error(`chDB is already open at ${chdbShared.path} in this process; it cannot open ${chdbPath} too (one data directory per process)`);
    }
    chdbShared.refs++;
    return chdbShared;
  }
  mkdirSync(chdbPath, { recursive: true });
  let createChdbConnection: (opts: { path: string }) => unknown;
  try {
    ({ createChdbConnection } = (await import('chdb/connection')) as unknown as { createChdbConnection: typeof createChdbConnection });
  } catch (error) {
    throw new Error(`CLICKHOUSE_URL is empty, so metrics use embedded chDB, but the chdb package could not be loaded: ${(error as Error).message}`, { cause: error });
  }
  const client = createClient({
    // The plug's type is @clickhouse/client-common's Connection; chdb declares it against its own copy.
    connection: createChdbConnection({ path: chdbPath }) as NonNullable<Parameters<typeof createClient>[0]>['connection'],
    log: { LoggerClass: loggerClassFor(logger), level: ClickHouseLogLevel.WARN },
  });
  const version = await readVersion(client);
  chdbShared = { path: chdbPath, client, version, refs: 1 };
  return chdbShared;
}

async function readVersion(client: ClickHouseClient): Promise<string> {
  const rs = await client.query({ query: 'SELECT version() AS v', format: 'JSONEachRow' });
  const rows = await rs.json<{ v: string }>();
  return String(rows[0]?.v ?? '');
}

/** [major, minor] of a ClickHouse version string. */
export function parseVersion(version: string): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(version);
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

/**
 * Opens the store and checks that the engine answers. With a server URL this fails while the
 * server is down (callers that must survive that retry; see MetricsSink).
 */
export async function openMetricsStore(options: MetricsStoreOptions = {}): Promise<MetricsStore> {
  const database = assertIdentifier(options.database || 'photolab', 'CLICKHOUSE_DATABASE');
  const logger = options.logger;
  let client: ClickHouseClient;
  let version: string;
  let backend: MetricsBackend;
  if (options.url) {
    let url: URL;
    try {
      url = new URL(options.url);
    } catch {
      throw new Error(`CLICKHOUSE_URL is not a valid URL: ${JSON.stringify(options.url)}`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`CLICKHOUSE_URL must be http(s)://, got ${url.protocol}`);
    backend = 'server';
    client = createClient({
      url: options.url,
      username: options.user || 'default',
      password: options.password ?? '',
      request_timeout: options.requestTimeoutMs ?? 10_000,
      // 18.16 knows none of the newer settings the client could send; send none.
      clickhouse_settings: {},
      compression: { request: false, response: false },
      keep_alive: { enabled: true, idle_socket_ttl: 1500 },
      log: { LoggerClass: loggerClassFor(logger), level: ClickHouseLogLevel.WARN },
    });
    try {
      version = await readVersion(client);
    } catch (error) {
      await client.close().catch(() => undefined);
      throw error;
    }
  } else {
    backend = 'chdb';
    const chdbPath = path.resolve(options.chdbPath ?? path.join(options.dataDir ?? 'data', 'chdb'));
    ({ client, version } = await openChdb(chdbPath, logger));
  }
  const [major] = parseVersion(version);
  let closed = false;
  return {
    client,
    backend,
    database,
    version,
    // Query parameters arrived in ClickHouse 19.x; chDB always has them.
    supportsQueryParams: backend === 'chdb' || major >= 20,
    table: (name: string) => `${database}.${assertIdentifier(name, 'table name')}`,
    async close() {
      if (closed) return;
      closed = true;
      if (backend === 'chdb') {
        if (chdbShared && --chdbShared.refs === 0) {
          const shared = chdbShared;
          chdbShared = undefined;
          await shared.client.close();
        }
      } else {
        await client.close();
      }
    },
  };
}

/** The numeric ClickHouse error code of a failure, if it came from the engine (any version's format). */
export function clickhouseErrorCode(error: unknown): number | undefined {
  const e = error as { code?: unknown; message?: unknown } | undefined;
  if (e && typeof e.code === 'string' && /^\d+$/.test(e.code)) return Number(e.code);
  if (e && typeof e.code === 'number') return e.code;
  const m = /Code: (\d+)/.exec(String(e?.message ?? ''));
  return m ? Number(m[1]) : undefined;
}

// UNKNOWN_TABLE, UNKNOWN_DATABASE: nothing was ever inserted (the sink creates the tables).
const NOT_CREATED_YET = new Set([60, 81]);

/** A query failed only because the table (or database) is not created yet: read as no rows. */
export function isNotCreatedYet(error: unknown): boolean {
  const code = clickhouseErrorCode(error);
  return code !== undefined && NOT_CREATED_YET.has(code);
}

/**
 * Error codes that mean "these rows are wrong" rather than "the server is unavailable": retrying
 * the same rows can never succeed (parse errors, type mismatches, too large values).
 */
const DATA_ERROR_CODES = new Set([6, 26, 27, 38, 41, 53, 69, 70, 72, 117, 131, 321]);

export function isDataError(error: unknown): boolean {
  const code = clickhouseErrorCode(error);
  return code !== undefined && DATA_ERROR_CODES.has(code);
}
