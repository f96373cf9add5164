/**
 * Versioned table definitions of the metrics database, applied in order at sink start.
 *
 * - Each migration's statements are idempotent on their own (IF NOT EXISTS ...), so a start that
 *   died half-way through a migration simply runs it again.
 * - Applied versions are recorded in `<db>.schema_migrations` (ReplacingMergeTree keyed on
 *   version: two sinks starting at once may both record a version; it still reads once).
 * - Never edit a released migration: add a new one.
 *
 * The DDL is written for the oldest server we support (clickhouse-server 18.16) and works
 * unchanged on chDB 26.x: the `ENGINE ... PARTITION BY ... ORDER BY` syntax, DateTime (no
 * DateTime64: epoch milliseconds are UInt64 columns), plain String (LowCardinality is
 * experimental in 18.16), no column DEFAULT expressions the sink relies on.
 *
 * Duplicates: both tables are ReplacingMergeTree ordered by their message id (run_id / job_id).
 * A batch inserted twice (sink killed between insert and ack, redelivered) leaves two copies
 * until a background merge folds them; every read must use FINAL (or aggregate with
 * uniqExact/argMax over the id) so duplicates never show. The partition key derives from the
 * record itself (finished_at), so copies of one record always share a partition and merge.
 */
import { assertIdentifier, type MetricsStore } from './clickhouse.js';
import type { Logger } from '../shared/logger.js';

export interface Migration {
  version: number;
  name: string;
  statements: (db: string) => string[];
}

export const STAGE_RUNS_TABLE = 'stage_runs';
export const JOBS_TABLE = 'jobs';
export const AUDIT_TABLE = 'audit';
export const MIGRATIONS_TABLE = 'schema_migrations';

export const migrations: readonly Migration[] = [
  {
    version: 1,
    name: 'stage_runs and jobs',
    statements: (db) => [
      `CREATE TABLE IF NOT EXISTS ${db}.${STAGE_RUNS_TABLE} (
        run_id String,
        job_id String,
        sub String,
        tenant String,
        step String,
        step_index UInt16,
        attempt UInt16,
        status String,
        error_code String,
        model String,
        model_sha256 String,
        provider String,
        input_pixels UInt64,
        output_pixels UInt64,
        input_bytes UInt64,
        output_bytes UInt64,
        queue_wait_ms Float64,
        run_ms Float64,
        host String,
        started_at_ms UInt64,
        finished_at_ms UInt64,
        finished_at DateTime,
        ingested_at_ms UInt64
      ) ENGINE = ReplacingMergeTree(ingested_at_ms)
      PARTITION BY toYYYYMM(finished_at)
      ORDER BY run_id`,
      `CREATE TABLE IF NOT EXISTS ${db}.${JOBS_TABLE} (
        job_id String,
        sub String,
        tenant String,
        status String,
        error_code String,
        steps UInt16,
        pipeline String,
        input_bytes UInt64,
        output_bytes UInt64,
        total_ms Float64,
        host String,
        created_at_ms UInt64,
        finished_at_ms UInt64,
        finished_at DateTime,
        ingested_at_ms UInt64
      ) ENGINE = ReplacingMergeTree(ingested_at_ms)
      PARTITION BY toYYYYMM(finished_at)
      ORDER BY job_id`,
    ],
  },
  {
    version: 2,
    name: 'audit (chain of custody)',
    // One row per access to evidence. Same duplicate rule as the other tables: ReplacingMergeTree
    // on audit_id (the record's ULID), read with FINAL, so a redelivered batch never shows twice
    // and N accesses read as exactly N rows.
    statements: (db) => [
      `CREATE TABLE IF NOT EXISTS ${db}.${AUDIT_TABLE} (
        audit_id String,
        scope String,
        case_id String,
        job_id String,
        action String,
        sub String,
        tenant String,
        request_id String,
        sha256 String,
        bytes UInt64,
        detail String,
        at_ms UInt64,
        at DateTime,
        ingested_at_ms UInt64
      ) ENGINE = ReplacingMergeTree(ingested_at_ms)
      PARTITION BY toYYYYMM(at)
      ORDER BY audit_id`,
    ],
  },
];

/** Checks the list itself: versions strictly increasing from 1, without gaps. */
export function checkMigrations(list: readonly Migration[] = migrations): void {
  list.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migration #${i} has version ${m.version}; versions must be 1, 2, 3, ... in order`);
  });
}

async function appliedVersions(store: MetricsStore): Promise<Set<number>> {
  const rs = await store.client.query({ query: `SELECT DISTINCT version FROM ${store.table(MIGRATIONS_TABLE)}`, format: 'JSONEachRow' });
  const rows = await rs.json<{ version: number | string }>();
  return new Set(rows.map((r) => Number(r.version)));
}

/**
 * Creates the database and applies the migrations not applied yet. Returns the versions it
 * applied (empty when the schema was up to date).
 */
export async function migrate(store: MetricsStore, options: { logger?: Logger; list?: readonly Migration[] } = {}): Promise<number[]> {
  const list = options.list ?? migrations;
  checkMigrations(list);
  const db = assertIdentifier(store.database, 'database');
  await store.client.command({ query: `CREATE DATABASE IF NOT EXISTS ${db}` });
  await store.client.command({
    query: `CREATE TABLE IF NOT EXISTS ${db}.${MIGRATIONS_TABLE} (
      version UInt32,
      name String,
      applied_at DateTime
    ) ENGINE = ReplacingMergeTree
    ORDER BY version`,
  });
  const done = await appliedVersions(store);
  const applied: number[] = [];
  for (const m of list) {
    if (done.has(m.version)) continue;
    for (const statement of m.statements(db)) await store.client.command({ query: statement });
    await store.client.insert({
      table: store.table(MIGRATIONS_TABLE),
      values: [{ version: m.version, name: m.name, applied_at: Math.floor(Date.now() / 1000) }],
      format: 'JSONEachRow',
    });
    options.logger?.info({ version: m.version, name: m.name, database: db }, 'metrics migration applied');
    applied.push(m.version);
  }
  return applied;
}
