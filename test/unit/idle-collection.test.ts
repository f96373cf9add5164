import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startIdleCollection, stopIdleCollection, v8Collector, workBegins, workInProgress } from '../../services/lib/shared/idle-collection.js';

/** Starts the collection with a counter in place of V8's collector. */
function counting(afterMs: number): { calls: string[] } {
  stopIdleCollection();
  const seen = { calls: [] as string[] };
  startIdleCollection(afterMs, (options) => seen.calls.push(options.type));
  return seen;
}

test('idle collection: one young collection once nothing is in progress, none while work is; ending twice counts once', async () => {
  const seen = counting(5);
  const first = workBegins();
  const second = workBegins();
  first();
  first(); // the same piece of work ended again: still one in progress
  assert.equal(workInProgress(), 1);
  await sleep(30);
  assert.deepEqual(seen.calls, []);
  second();
  assert.equal(workInProgress(), 0);
  await sleep(30);
  assert.deepEqual(seen.calls, ['minor']);
  await sleep(30);
  assert.deepEqual(seen.calls, ['minor'], 'idle for longer: still one collection');
  stopIdleCollection();
});

test('idle collection: work that begins within the delay puts it off until that work ends', async () => {
  const seen = counting(20);
  workBegins()();
  await sleep(5);
  const busy = workBegins();
  await sleep(40);
  assert.deepEqual(seen.calls, []);
  busy();
  await sleep(60);
  assert.deepEqual(seen.calls, ['minor']);
  stopIdleCollection();
});

test('idle collection: 0 leaves it off', async () => {
  stopIdleCollection();
  startIdleCollection(0, () => assert.fail('collected with IDLE_GC_MS=0'));
  workBegins()();
  await sleep(20);
});

test("idle collection: V8's young collection frees the external memory that nothing references", async () => {
  const collect = v8Collector();
  collect({ type: 'minor' });
  const before = process.memoryUsage().arrayBuffers;
  (() => Buffer.alloc(8 * 1024 * 1024, 1))();
  await sleep(1); // past the turn that made it
  collect({ type: 'minor' });
  await sleep(20); // V8's sweeper frees the backing store beside the main thread
  const after = process.memoryUsage().arrayBuffers;
  assert.ok(after - before < 4 * 1024 * 1024, `young collection left ${((after - before) / 1048576).toFixed(1)} MB`);
});
