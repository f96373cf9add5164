/**
 * The load tool (npm run load) against the real system: every job it submits over HTTP and
 * over the WebSocket is followed to its result, once, and the report adds up. Its figures
 * (throughput, latency) are printed, not asserted: speed belongs in benchmarks.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { runLoad } from '../../services/load/load.js';
import { formatReport, PRESETS } from '../../services/load/main.js';
import { JWT_SECRET, startSystem, type TestSystem } from '../helpers/system.js';

describe('load tool', () => {
  let system: TestSystem;
  let image: Buffer;
  before(async () => {
    system = await startSystem({ steps: ['decode', 'encode'] });
    image = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#446688' } }).jpeg().toBuffer();
  });
  after(async () => system?.stop());

  for (const mode of ['http', 'ws'] as const) {
    test(`${mode}: 24 jobs from 6 slots over 3 callers all complete, none duplicated or lost`, async () => {
      const report = await runLoad({ url: system.baseUrl, mode, jobs: 24, concurrency: 6, callers: 3, pipeline: PRESETS.copy, image, jwtSecret: JWT_SECRET, timeoutMs: 60_000, retryRefused: true });
      console.log(formatReport(report));
      assert.deepEqual([report.submitted, report.admitted, report.completed, report.duplicated, report.lost], [24, 24, 24, 0, 0]);
      assert.deepEqual(report.failed, {});
      assert.ok(report.latencyMs.p50 > 0 && report.latencyMs.p50 <= report.latencyMs.p99);
    });
  }

  test('refuses a non-loopback URL unless allowed', async () => {
    await assert.rejects(runLoad({ url: 'http://192.0.2.1:8080', mode: 'http', jobs: 1, concurrency: 1, callers: 1, pipeline: PRESETS.copy, image, jwtSecret: JWT_SECRET, timeoutMs: 1000, retryRefused: false }), /loopback/);
  });
});
