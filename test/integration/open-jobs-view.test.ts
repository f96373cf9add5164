/**
 * The in-memory view of unfinished jobs (quota and deadline sweep) against a real nats-server,
 * with two connections standing for two edges: it loads what is already there, follows puts
 * and deletes from either, and counts racing reservations in the order the stream gave them.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { connectBus, type Bus } from '../../services/bus/bus.js';
import { ownerHash } from '../../services/bus/job-index.js';
import { Kvm } from '@nats-io/kv';
import { OpenJobsView } from '../../services/bus/open-jobs-view.js';
import { BUCKETS } from '../../services/bus/subjects.js';
import { loadConfig } from '../../services/shared/config.js';
import { newId } from '../../services/shared/ids.js';
import { createLogger } from '../../services/shared/logger.js';
import { startNatsServer, type TestNatsServer } from '../helpers/nats-server.js';

let nats: TestNatsServer;
let edgeA: Bus;
let edgeB: Bus;
const views: OpenJobsView[] = [];
const log = createLogger('open-jobs-test');
const alice = { sub: 'alice' };
const bob = { sub: 'bob', tenant: 'lab-2' };

before(async () => {
  nats = await startNatsServer();
  const config = loadConfig({ NATS_URL: nats.url, LOG_LEVEL: 'warn' });
  edgeA = await connectBus(config, log, 'edge-a');
  edgeB = await connectBus(config, log, 'edge-b');
});
after(async () => {
  for (const view of views) view.stop();
  await edgeA?.close();
  await edgeB?.close();
  await nats?.stop();
});

async function watch(bus: Bus): Promise<OpenJobsView> {
  const view = await OpenJobsView.start(await new Kvm(bus.nc).open(BUCKETS.openJobs), log);
  views.push(view);
  return view;
}

test('a view started late loads the open entries already there, per caller', async () => {
  const early = [newId(), newId()];
  for (const jobId of early) await edgeA.jobIndex.markOpen({ jobId, owner: alice, deadline: Date.now() + 60_000 });
  await edgeA.jobIndex.markOpen({ jobId: newId(), owner: bob, deadline: Date.now() + 60_000 });
  const view = await watch(edgeB);
  assert.deepEqual(view.entries(ownerHash(alice)).map((e) => e.jobId).sort(), [...early].sort());
  assert.equal(view.entries(ownerHash(bob)).length, 1);
  assert.equal(view.entries(ownerHash({ sub: 'nobody' })).length, 0);
});

test('puts and deletes from another edge show up once the view has caught up with their revision', async () => {
  const view = await watch(edgeA);
  const jobId = newId();
  const deadline = Date.now() + 60_000;
  const revision = await edgeB.jobIndex.markOpen({ jobId, owner: bob, deadline });
  assert.equal(await view.caughtUp(revision, 5000), true);
  assert.ok(view.entries(ownerHash(bob)).some((e) => e.jobId === jobId && e.deadline === deadline && e.revision === revision));
  await edgeB.jobIndex.markFinished({ jobId, owner: bob, deadline });
  const marker = await edgeB.jobIndex.markOpen({ jobId: newId(), owner: { sub: 'marker' }, deadline });
  assert.equal(await view.caughtUp(marker, 5000), true);
  assert.ok(!view.entries(ownerHash(bob)).some((e) => e.jobId === jobId), 'the finished job is gone');
});

test('racing reservations from two edges count in stream order: each sees exactly those before it', async () => {
  const [viewA, viewB] = [await watch(edgeA), await watch(edgeB)];
  const racer = { sub: 'racer' };
  const deadline = Date.now() + 60_000;
  const reservations = await Promise.all(Array.from({ length: 12 }, (_, i) => {
    const jobId = newId();
    const bus = i % 2 ? edgeA : edgeB;
    return bus.jobIndex.markOpen({ jobId, owner: racer, deadline }).then((revision) => ({ jobId, revision, view: i % 2 ? viewA : viewB }));
  }));
  const ordered = [...reservations].sort((x, y) => x.revision - y.revision);
  for (const [position, r] of ordered.entries()) {
    assert.equal(await r.view.caughtUp(r.revision, 5000), true);
    const counted = r.view.entries(ownerHash(racer), r.revision).map((e) => e.jobId).sort();
    assert.deepEqual(counted, ordered.slice(0, position + 1).map((x) => x.jobId).sort(), `reservation ${position} counts the ones before it and itself`);
  }
});

test('entries() of everyone carry the deadlines the sweep looks for', async () => {
  const view = await watch(edgeA);
  const now = Date.now();
  const gone = { jobId: newId(), owner: { sub: 'late-1' }, deadline: now - 1000 };
  const fine = { jobId: newId(), owner: { sub: 'late-2' }, deadline: now + 60_000 };
  await edgeB.jobIndex.markOpen(gone);
  assert.equal(await view.caughtUp(await edgeB.jobIndex.markOpen(fine), 5000), true);
  const late = view.entries().filter((e) => e.deadline < now).map((e) => e.jobId);
  assert.ok(late.includes(gone.jobId));
  assert.ok(!late.includes(fine.jobId));
});

test('caughtUp gives false after its timeout for a revision that never comes, and once stopped', async () => {
  const view = await watch(edgeA);
  assert.equal(await view.caughtUp(Number.MAX_SAFE_INTEGER, 50), false);
  view.stop();
  assert.equal(await view.caughtUp(Number.MAX_SAFE_INTEGER, 5000), false);
});
