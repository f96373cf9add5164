/**
 * Chain of custody against the real system: nats-server, the edge with decode and encode
 * workers, the metrics sink and a real clickhouse-server (18.16, the oldest supported).
 * N accesses to a case's evidence give exactly N audit rows, with who, what, when, the request
 * id and the bytes' sha256; rows written while ClickHouse is down arrive once it is back, none
 * lost, none doubled.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { openMetricsStore, type MetricsStore } from '../../services/lib/metrics/clickhouse.js';
import { serveAudit } from '../../services/lib/metrics/audit.js';
import { MetricsSink } from '../../services/metrics-sink/sink.js';
import { assertSchema, bearer, multipart, request, type HttpAnswer } from '../helpers/edge-client.js';
import { startClickHouseServer, type ClickHouseServer } from '../helpers/clickhouse-server.js';
import { fixture } from '../helpers/paths.js';
import { startSystem, waitFor, type TestSystem } from '../helpers/system.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const DECODE_ENCODE = [{ step: 'decode' }, { step: 'encode', params: { format: 'png' } }];

describe('chain of custody (audit)', () => {
  let system: TestSystem;
  let ch: ClickHouseServer;
  let store: MetricsStore;
  let sink: MetricsSink;
  let stopAudit: () => void;
  let headers: Record<string, string>;
  let caseId: string;
  const original = readFileSync(fixture('dog.jpg'));
  /** What the test did, in order: [action, request id, sha256]. */
  const expected: [string, string, string][] = [];
  const url = (path: string) => `${system.baseUrl}${path}`;
  let n = 0;
  const rid = () => `audit-test-${++n}`;

  async function call(path: string, options: { method?: string; body?: Buffer | string; headers?: Record<string, string> } = {}): Promise<HttpAnswer & { requestId: string }> {
    const requestId = rid();
    const answer = await request(url(path), { ...options, headers: { ...headers, 'x-request-id': requestId, ...options.headers } });
    return { ...answer, requestId };
  }

  async function audit(): Promise<any[]> {
    const answer = await request(url(`/api/cases/${caseId}/audit`), { headers });
    if (answer.status !== 200) return [];
    assertSchema('http/audit-list.schema.json', answer.body);
    return answer.body.records;
  }

  before(async () => {
    ch = await startClickHouseServer();
    system = await startSystem({ steps: ['decode', 'encode'] });
    store = await openMetricsStore({ url: ch.url, database: 'photolab_audit', requestTimeoutMs: 3000 });
    sink = new MetricsSink({ nc: system.nc, store, batchRows: 50, batchMs: 200, retryInitialMs: 100, retryMaxMs: 500, ackWaitMs: 5000 });
    await sink.start();
    stopAudit = serveAudit(system.nc, store);
    headers = bearer(await system.token('inspector', 'lab-custody'));
  });
  after(async () => {
    stopAudit?.();
    await sink?.stop();
    await store?.close();
    await system?.stop();
    await ch?.stop();
  });

  test('N accesses give exactly N rows: who, what, when, request id, sha256', async () => {
    const created = await call('/api/cases', { method: 'POST', body: JSON.stringify({ name: 'custody' }), headers: { 'content-type': 'application/json' } });
    assert.equal(created.status, 201);
    caseId = created.body.id;
    expected.push(['case.created', created.requestId, '']);
    const uploaded = await call(`/api/cases/${caseId}/evidence`, { method: 'POST', body: original, headers: { 'content-type': 'image/jpeg' } });
    assert.equal(uploaded.status, 201);
    expected.push(['evidence.uploaded', uploaded.requestId, sha256(original)]);
    for (let i = 0; i < 3; i++) {
      const read = await call(`/api/cases/${caseId}/evidence/${sha256(original)}`);
      assert.equal(read.status, 200);
      expected.push(['evidence.read', read.requestId, sha256(original)]);
    }
    const form = multipart([{ name: 'pipeline', value: JSON.stringify(DECODE_ENCODE) }, { name: 'caseId', value: caseId }, { name: 'originalSha256', value: sha256(original) }]);
    const job = await call('/api/jobs', { method: 'POST', body: form.body, headers: { 'content-type': form.contentType } });
    assert.equal(job.status, 202, job.bytes.toString());
    expected.push(['job.created', job.requestId, sha256(original)]);
    await waitFor(async () => (await request(url(`/api/jobs/${job.body.jobId}`), { headers })).body.status === 'done', 'the job');
    for (let i = 0; i < 2; i++) {
      const result = await call(`/api/jobs/${job.body.jobId}/result`);
      assert.equal(result.status, 200);
      expected.push(['result.read', result.requestId, sha256(result.bytes)]);
    }
    // Reads of what is not there are not accesses to evidence.
    assert.equal((await call(`/api/cases/${caseId}/evidence/${'0'.repeat(64)}`)).status, 404);

    const rows = await waitFor(async () => {
      const r = await audit();
      return r.length >= expected.length ? r : undefined;
    }, `${expected.length} audit rows`, 30_000);
    assert.equal(rows.length, expected.length, JSON.stringify(rows));
    assert.deepEqual(rows.map((r) => [r.action, r.requestId, r.sha256]), expected);
    for (const r of rows) {
      assert.equal(r.sub, 'inspector');
      assert.equal(r.tenant, 'lab-custody');
      assert.equal(r.caseId, caseId);
      assert.ok(Math.abs(Date.parse(r.at) - Date.now()) < 10 * 60_000);
    }
    const jobRows = rows.filter((r) => r.action === 'job.created' || r.action === 'result.read');
    assert.ok(jobRows.every((r) => r.jobId === job.body.jobId));
    assert.equal(rows.find((r) => r.action === 'evidence.read').bytes, original.length);
    // Another tenant cannot read this case's custody.
    assert.equal((await request(url(`/api/cases/${caseId}/audit`), { headers: bearer(await system.token('x', 'other-lab')) })).status, 404);
  });

  test('accesses during a ClickHouse outage are served and their rows arrive after it, none lost or doubled', async () => {
    await ch.signal('SIGKILL');
    const failuresBefore = sink.stats.insertFailures;
    for (let i = 0; i < 4; i++) {
      const read = await call(`/api/cases/${caseId}/evidence/${sha256(original)}`);
      assert.equal(read.status, 200, 'JetStream first: the outage does not stop the access');
      assert.ok(read.bytes.equals(original));
      expected.push(['evidence.read', read.requestId, sha256(original)]);
    }
    const closed = await call(`/api/cases/${caseId}/close`, { method: 'POST' });
    assert.equal(closed.status, 200);
    expected.push(['case.closed', closed.requestId, '']);
    await waitFor(() => sink.stats.insertFailures > failuresBefore, 'the sink to notice the outage', 30_000);
    await ch.restart();
    const rows = await waitFor(async () => {
      const r = await audit();
      return r.length >= expected.length ? r : undefined;
    }, `${expected.length} audit rows after the restart`, 60_000);
    assert.equal(rows.length, expected.length);
    assert.deepEqual(rows.map((r) => [r.action, r.requestId, r.sha256]), expected);
    assert.equal(new Set(rows.map((r) => r.auditId)).size, rows.length, 'no row twice');
  });
});
