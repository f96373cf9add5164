/**
 * The reliability suite's short form (test/reliability/suite.ts; `npm run reliability` is the
 * full run, RELIABILITY.md its figures): one stage worker SIGKILLed mid-step, one nats-server
 * SIGKILL + restart, one edge SIGKILL + restart with WebSocket clients waiting, and an overload
 * burst. Nothing lost, nothing duplicated, every admitted job completes, refusals carry
 * Retry-After, memory under the stated bound. Recovery times are printed, not asserted.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatReliability, SHORT } from '../reliability/main.js';
import { MEMORY_BOUND_MIB, runReliability } from '../reliability/suite.js';

test('reliability (short): faults under load lose and duplicate nothing', async () => {
  const report = await runReliability({ ...SHORT, log: (l) => console.log(l) });
  console.log(formatReliability(report));
  const t = report.totals;
  assert.equal(t.lost, 0, 'lost');
  assert.equal(t.duplicated, 0, 'duplicated');
  assert.equal(t.completed, t.admitted, `every admitted job completes (failed: ${JSON.stringify(t.failed)})`);
  assert.equal(t.refusedWithoutRetryAfter, 0, 'every 429/503 has Retry-After');
  for (const [status] of Object.entries(t.refused)) assert.match(status, /^(429|503) /, `refusal ${status}`);
  const burst = report.phases.find((p) => p.memoryMiB)!;
  assert.ok(burst.memoryMiB!.edge < MEMORY_BOUND_MIB.edge && burst.memoryMiB!.nats < MEMORY_BOUND_MIB.nats, JSON.stringify(burst.memoryMiB));
});
