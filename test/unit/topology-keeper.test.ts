import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { TopologyKeeper } from '../../services/lib/bus/topology-keeper.js';

const log = pino({ level: 'silent' });

test('topology keeper: retries a failed check with growing pauses, then tells its listeners once', async () => {
  const pauses: number[] = [];
  let calls = 0;
  const keeper = new TopologyKeeper(async () => {
    calls++;
    if (calls <= 3) throw new Error('JetStream not ready');
    return ['PHOTOLAB_FRAMES', 'KV_photolab-stages'];
  }, log, { retryMs: 100, maxRetryMs: 300, sleep: async (ms) => void pauses.push(ms) });
  let restored = 0;
  keeper.onRestored(() => restored++);
  await keeper.reconnected();
  assert.equal(calls, 4);
  assert.deepEqual(pauses, [100, 200, 300], 'doubled, up to maxRetryMs');
  assert.equal(restored, 1);
});

test('topology keeper: a reconnect during a check is followed by one more check, not by a second one alongside', async () => {
  let running = 0;
  let most = 0;
  let calls = 0;
  let release!: () => void;
  const keeper = new TopologyKeeper(async () => {
    calls++;
    running++;
    most = Math.max(most, running);
    if (calls === 1) await new Promise<void>((resolve) => (release = resolve));
    running--;
    return [];
  }, log);
  let restored = 0;
  keeper.onRestored(() => restored++);
  const first = keeper.reconnected();
  const second = keeper.reconnected();
  const third = keeper.reconnected();
  release();
  await Promise.all([first, second, third]);
  assert.equal(most, 1, 'never two checks at once');
  assert.equal(calls, 2, 'the reconnects during the first check gave one more');
  assert.equal(restored, 1, 'listeners run once the last check is over');
  await keeper.reconnected();
  assert.equal(calls, 3);
  assert.equal(restored, 2);
});

test('topology keeper: closed, it stops retrying and tells nobody', async () => {
  let calls = 0;
  let restored = 0;
  const keeper: TopologyKeeper = new TopologyKeeper(async () => {
    calls++;
    throw new Error('no JetStream');
  }, log, { sleep: async (): Promise<void> => keeper.close() });
  keeper.onRestored(() => restored++);
  await keeper.reconnected();
  assert.equal(calls, 1);
  assert.equal(restored, 0);
  await keeper.reconnected();
  assert.equal(calls, 1, 'a closed keeper checks nothing');
});
