import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LostAcks } from '../../services/lib/bus/lost-acks.js';
import { AppError } from '../../services/lib/shared/errors.js';

/** A publish that the test answers (or never does). */
function pendingPublish(): { promise: Promise<string>; answer: (v: string) => void } {
  let answer!: (v: string) => void;
  return { promise: new Promise<string>((resolve) => (answer = resolve)), answer };
}

test('lost acks: a publish made before a disconnect fails at the reconnect, retryable; one made while disconnected still waits for its ack', async () => {
  const acks = new LostAcks();
  const before = pendingPublish();
  const guardedBefore = acks.guard(() => before.promise);
  acks.disconnected();
  const during = pendingPublish();
  const guardedDuring = acks.guard(() => during.promise);
  assert.equal(acks.pending, 2);
  acks.reconnected();
  await assert.rejects(guardedBefore, (error: unknown) => error instanceof AppError && error.code === 'bus_unavailable' && error.retryable);
  assert.equal(acks.pending, 1);
  during.answer('ack');
  assert.equal(await guardedDuring, 'ack');
  assert.equal(acks.pending, 0, 'nothing kept once answered');
  before.answer('late'); // a late answer to the failed one changes nothing
});

test('lost acks: answered and failed publishes are forgotten; a reconnect without a disconnect fails nothing', async () => {
  const acks = new LostAcks();
  assert.equal(await acks.guard(async () => 1), 1);
  await assert.rejects(acks.guard(async () => { throw new Error('no stream'); }), /no stream/);
  const open = pendingPublish();
  const guarded = acks.guard(() => open.promise);
  acks.reconnected();
  open.answer('ack');
  assert.equal(await guarded, 'ack');
  assert.equal(acks.pending, 0);
});
