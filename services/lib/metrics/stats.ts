/**
 * The read side behind GET /api/stats: per step, per model and per provider over a time window,
 * count, p50/p95/p99 run time, error rate and throughput; plus the same for whole jobs.
 *
 * SQL safety: nothing a caller sends is pasted into SQL.
 * - The window is parsed into integers by parseStatsQuery (epoch ms, range-checked) and the
 *   grouping into names from a fixed list; the grouped column comes from our own map.
 * - Engines with query parameters (chDB, ClickHouse >= 20) get the numbers as server-side
 *   parameters ({from_ms:UInt64} ...).
 * - clickhouse-server 18.16 has no query parameters: there the numbers are written into the SQL
 *   as literals, produced by String() of integers that passed Number.isSafeInteger and the range
 *   checks, never from the caller's text (see `literal`).
 *
 * Duplicates (a batch inserted twice after a sink crash) never count: every read uses FINAL.
 */
import { AppError, appError, toAppError, fromErrorInfo } from '../shared/errors.js';
import type { JobStats, StatsQuery, StatsResponse, StatsRow } from '../shared/schema-types.js';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../shared/logger.js';
import { isNotCreatedYet, type MetricsStore } from './clickhouse.js';
import { JOBS_TABLE, STAGE_RUNS_TABLE } from './migrations.js';

export type StatsDimension = 'step' | 'model' | 'provider';
export const STATS_DIMENSIONS: readonly StatsDimension[] = ['step', 'model', 'provider'];
/** Column of stage_runs for each dimension: the only column names a query can group by. */
const DIMENSION_COLUMN: Record<StatsDimension, string> = { step: 'step', model: 'model', provider: 'provider' };

export const DEFAULT_WINDOW_MS = 3600_000;
export const MAX_WINDOW_MS = 400 * 24 * 3600_000;
const MAX_EPOCH_MS = 4_294_967_295_000; // end of DateTime

export interface StatsWindow {
  from: number;
  to: number;
  groupBy: StatsDimension[];
}

/** Input as the edge has it: the parsed query string (strings), or typed values. */
export type StatsQueryInput = StatsQuery | Record<string, string | number | undefined | null>;

const invalid = (message: string) => appError('invalid_stats_query', message);

const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$/;

function parseInstant(raw: unknown, name: string): number | undefined {
  if (raw === undefined || raw === null || raw === '') return undefined;
  let ms: number;
  if (typeof raw === 'number') ms = raw;
  else if (typeof raw === 'string' && /^\d{1,16}$/.test(raw)) ms = Number(raw);
  else if (typeof raw === 'string' && ISO_DATE_TIME.test(raw)) ms = Date.parse(raw);
  else throw invalid(`${name} must be epoch milliseconds or an ISO 8601 date-time, got ${JSON.stringify(String(raw).slice(0, 64))}`);
  if (!Number.isSafeInteger(ms) || ms < 0 || ms > MAX_EPOCH_MS) {
    throw invalid(`${name} must be a whole number of epoch milliseconds between 0 and ${MAX_EPOCH_MS}, got ${JSON.stringify(String(raw).slice(0, 64))}`);
  }
  return ms;
}

/** Validates the window parameters. Throws AppError 400 `invalid_stats_query` with a clear message. */
export function parseStatsQuery(input: StatsQueryInput | undefined, now: number = Date.now()): StatsWindow {
  const q = (input ?? {}) as Record<string, unknown>;
  if (typeof q !== 'object' || Array.isArray(q)) throw invalid('the stats query must be an object');
  for (const key of Object.keys(q)) {
    if (!['from', 'to', 'groupBy'].includes(key)) throw invalid(`unknown stats parameter ${JSON.stringify(key.slice(0, 64))} (known: from, to, groupBy)`);
  }
  const to = parseInstant(q.to, 'to') ?? Math.trunc(now);
  const from = parseInstant(q.from, 'from') ?? Math.max(0, to - DEFAULT_WINDOW_MS);
  if (from >= to) throw invalid(`from (${from}) must be before to (${to})`);
  if (to - from > MAX_WINDOW_MS) throw invalid(`the window may span at most ${MAX_WINDOW_MS / 86_400_000} days`);
  let groupBy: StatsDimension[] = [...STATS_DIMENSIONS];
  if (q.groupBy !== undefined && q.groupBy !== null && q.groupBy !== '') {
    if (typeof q.groupBy !== 'string') throw invalid('groupBy must be a comma-separated string');
    const names = q.groupBy.split(',').map((s) => s.trim()).filter(Boolean);
    if (names.length === 0) throw invalid('groupBy names no dimension');
    groupBy = [];
    for (const name of names) {
      if (!(STATS_DIMENSIONS as readonly string[]).includes(name)) throw invalid(`groupBy: unknown dimension ${JSON.stringify(name.slice(0, 64))} (known: ${STATS_DIMENSIONS.join(', ')})`);
      if (!groupBy.includes(name as StatsDimension)) groupBy.push(name as StatsDimension);
    }
  }
  return { from, to, groupBy };
}

/** Typed window values, and how they reach the SQL (parameter or checked literal). */
interface WindowSql {
  where: string;
  params: Record<string, number> | undefined;
}

/** A numeric SQL literal; only ever called with integers our own code validated. */
function literal(value: number): string {
  if (!Number.isSafeInteger(value) || value < 0) throw new Error(`internal: refusing to write ${value} into SQL`);
  return String(value);
}

export function windowSql(store: Pick<MetricsStore, 'supportsQueryParams'>, w: StatsWindow): WindowSql {
  const values = { from_ms: w.from, to_ms: w.to, from_s: Math.floor(w.from / 1000), to_s: Math.floor(w.to / 1000) };
  const types = { from_ms: 'UInt64', to_ms: 'UInt64', from_s: 'UInt32', to_s: 'UInt32' } as const;
  const v = (name: keyof typeof values) => (store.supportsQueryParams ? `{${name}:${types[name]}}` : literal(values[name]));
  // finished_at (DateTime, the partition key) prunes partitions; finished_at_ms is the exact bound.
  const where = `finished_at >= toDateTime(${v('from_s')}) AND finished_at <= toDateTime(${v('to_s')}) AND finished_at_ms >= ${v('from_ms')} AND finished_at_ms < ${v('to_ms')}`;
  return { where, params: store.supportsQueryParams ? values : undefined };
}

export function stageStatsSql(store: Pick<MetricsStore, 'supportsQueryParams' | 'table'>, w: StatsWindow, dim: StatsDimension): WindowSql & { sql: string } {
  const column = DIMENSION_COLUMN[dim];
  const { where, params } = windowSql(store, w);
  const sql = `SELECT ${column} AS key,
      count() AS count,
      countIf(status = 'ok') AS ok,
      countIf(status = 'error') AS errors,
      quantilesExactIf(0.5, 0.95, 0.99)(run_ms, status = 'ok') AS q
    FROM ${store.table(STAGE_RUNS_TABLE)} FINAL
    WHERE ${where}
    GROUP BY key
    ORDER BY key`;
  return { sql, where, params };
}

export function jobStatsSql(store: Pick<MetricsStore, 'supportsQueryParams' | 'table'>, w: StatsWindow): WindowSql & { sql: string } {
  const { where, params } = windowSql(store, w);
  const sql = `SELECT count() AS count,
      countIf(status = 'done') AS done,
      countIf(status = 'failed') AS failed,
      countIf(status = 'canceled') AS canceled,
      countIf(status = 'timeout') AS timeout,
      quantilesExactIf(0.5, 0.95, 0.99)(total_ms, status = 'done') AS q
    FROM ${store.table(JOBS_TABLE)} FINAL
    WHERE ${where}`;
  return { sql, where, params };
}

// 18.16 quotes 64-bit integers in JSON, chDB does not: read every number through this.
const num = (v: unknown): number => (v === null || v === undefined ? 0 : Number(v));
const quantile = (q: unknown, i: number, count: number): number | null => {
  if (count === 0 || !Array.isArray(q)) return null;
  const v = Number(q[i]);
  return Number.isFinite(v) ? Math.round(v * 1000) / 1000 : null;
};
const ratio = (a: number, b: number) => (b > 0 ? a / b : 0);

async function rows(store: MetricsStore, q: { sql: string; params: Record<string, number> | undefined }): Promise<Record<string, unknown>[]> {
  try {
    const rs = await store.client.query({ query: q.sql, format: 'JSONEachRow', ...(q.params ? { query_params: q.params } : {}) });
    return await rs.json<Record<string, unknown>>();
  } catch (error) {
    if (isNotCreatedYet(error)) return [];
    throw error;
  }
}

/**
 * Stats over [from, to). `input` is the (untrusted) query: see parseStatsQuery. Throws AppError
 * 400 for bad parameters, and AppError 503 `metrics_unavailable` when ClickHouse cannot answer.
 */
export async function queryStats(store: MetricsStore, input?: StatsQueryInput, now: number = Date.now()): Promise<StatsResponse> {
  const w = parseStatsQuery(input, now);
  const seconds = (w.to - w.from) / 1000;
  try {
    const groups: StatsResponse['groups'] = {};
    for (const dim of w.groupBy) {
      const list = await rows(store, stageStatsSql(store, w, dim));
      groups[dim] = list.map((r): StatsRow => {
        const count = num(r.count);
        const ok = num(r.ok);
        const errors = num(r.errors);
        return {
          key: String(r.key),
          count,
          ok,
          errors,
          errorRate: ratio(errors, count),
          p50Ms: quantile(r.q, 0, ok),
          p95Ms: quantile(r.q, 1, ok),
          p99Ms: quantile(r.q, 2, ok),
          throughput: ratio(count, seconds),
        };
      });
    }
    const [j = {}] = await rows(store, jobStatsSql(store, w));
    const count = num(j.count);
    const done = num(j.done);
    const failed = num(j.failed);
    const timeout = num(j.timeout);
    const jobs: JobStats = {
      count,
      done,
      failed,
      canceled: num(j.canceled),
      timeout,
      errorRate: ratio(failed + timeout, count),
      p50Ms: quantile(j.q, 0, done),
      p95Ms: quantile(j.q, 1, done),
      p99Ms: quantile(j.q, 2, done),
      throughput: ratio(count, seconds),
    };
    return { from: w.from, to: w.to, windowSeconds: seconds, groupBy: w.groupBy, groups, jobs };
  } catch (error) {
    if (error instanceof AppError) throw error;
    throw appError('metrics_unavailable', `metrics store cannot answer: ${(error as Error)?.message ?? error}`, { cause: error });
  }
}

/**
 * Stats over NATS request/reply. chDB lives inside one process (the metrics sink, which owns
 * DATA_DIR/chdb); the edge must not open the same chDB directory. So the sink process answers
 * requests on this subject and the edge asks with requestStats(). With a ClickHouse server the
 * edge could call queryStats itself, but going through the sink works for both.
 */
export const STATS_SUBJECT = 'photolab.rpc.metrics.stats';

type StatsReply = { ok: true; stats: StatsResponse } | { ok: false; error: { status: number; code: string; message: string } };

/** Answers STATS_SUBJECT requests (body: the stats query as JSON) from `store`. Returns a stop function. */
export function serveStats(nc: NatsConnection, store: MetricsStore, logger?: Logger): () => void {
  const sub = nc.subscribe(STATS_SUBJECT, {
    queue: 'metrics-stats',
    callback: (err, msg) => {
      if (err) {
        logger?.warn({ err: err.message }, 'stats subscription error');
        return;
      }
      void (async () => {
        let reply: StatsReply;
        try {
          let input: unknown = {};
          if (msg.data.length > 0) {
            try {
              input = JSON.parse(msg.string());
            } catch {
              throw invalid('the stats request body is not JSON');
            }
          }
          if (input === null || typeof input !== 'object' || Array.isArray(input)) throw invalid('the stats query must be an object');
          reply = { ok: true, stats: await queryStats(store, input as StatsQueryInput) };
        } catch (error) {
          const e = toAppError(error);
          if (e.status >= 500) logger?.warn({ err: e.message, code: e.code }, 'stats query failed');
          reply = { ok: false, error: { status: e.status, code: e.code, message: e.message } };
        }
        msg.respond(JSON.stringify(reply));
      })();
    },
  });
  return () => sub.unsubscribe();
}

/**
 * Asks the metrics service for stats (see serveStats). Resolves to the StatsResponse; throws the
 * service's AppError (400 for bad parameters), or AppError 503 `metrics_unavailable` when no
 * metrics service answers in time.
 */
export async function requestStats(nc: NatsConnection, input?: StatsQueryInput, timeoutMs = 10_000): Promise<StatsResponse> {
  // Validate here too: a bad query gets its 400 even while the metrics service is down.
  // The window is fixed here (the default "last hour" ends now, at the caller).
  const w = parseStatsQuery(input);
  const body = JSON.stringify({ from: w.from, to: w.to, groupBy: w.groupBy.join(',') });
  let reply: StatsReply;
  try {
    const msg = await nc.request(STATS_SUBJECT, body, { timeout: timeoutMs });
    reply = JSON.parse(msg.string()) as StatsReply;
  } catch (error) {
    throw appError('metrics_unavailable', `the metrics service did not answer: ${(error as Error)?.message ?? error}`, { cause: error });
  }
  if (reply.ok) return reply.stats;
  throw fromErrorInfo(reply.error);
}
