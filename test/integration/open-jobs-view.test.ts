/**
 * The in-memory view of unfinished jobs (quota and deadline sweep) against a real nats-server,
 * with two connections standing for two edges: it loads the job records already there, follows
 * new records and terminal events from either, and counts racing submissions in the order the
 * records stream gave them.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { connectBus, type Bus } from '../../services/lib/bus/bus.js';
import { ownerHash } from '../../services/lib/bus/job-store.js';
import { OpenJobsView } from '../../services/lib/bus/open-jobs-view.js';
import { finishJob } from '../../services/lib/pipeline/job-lifecycle.js';
import type { JobRecord, Owner } from '../../services/lib/shared/schema-types.js';
import { loadConfig } from '../../services/lib/shared/config.js';
import { newId } from '../../services/lib/shared/ids.js';
import { createLogger } from '../../services/lib/shared/logger.js';
import { startNatsServer, type TestNatsServer } from '../helpers/nats-server.js';
import { waitFor } from '../helpers/wait.js';
import { BUCKETS, STREAMS } from '../../services/lib/bus/subjects.js';
import { ensureTopology } from '../../services/lib/bus/topology.js';

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
  const view = await OpenJobsView.start(bus.js, 60 * 60_000, log);
  views.push(view);
  return view;
}

/** A job record as the edge writes it at submission; returns its revision. */
function submit(bus: Bus, job: { jobId: string; owner: Owner; deadline: number }): Promise<number> {
  const record: JobRecord = {
    ...job, status: 'pending', pipeline: [{ step: 'decode' }, { step: 'encode' }], createdAt: Date.now(), steps: [],
    input: { kind: 'blob', stream: 'PHOTOLAB_BLOBS', name: `uploads/${job.jobId}`, bytes: 1, chunks: 1, sha256: '0'.repeat(64) },
  };
  return bus.jobs.create(record);
}

function end(bus: Bus, job: { jobId: string; owner: Owner }) {
  return finishJob(bus, { ...job, pipeline: [{ step: 'decode' }], createdAt: Date.now(), inputBytes: 1 }, { status: 'canceled' }, 'test');
}

test('a view started late loads the open entries already there, per caller', async () => {
  const early = [newId(), newId()];
  for (const jobId of early) await submit(edgeA, { jobId, owner: alice, deadline: Date.now() + 60_000 });
  const last = await submit(edgeA, { jobId: newId(), owner: bob, deadline: Date.now() + 60_000 });
  const view = await watch(edgeB);
  assert.equal(await view.caughtUp(last, 5000), true);
  assert.deepEqual(view.entries(ownerHash(alice)).map((e) => e.jobId).sort(), [...early].sort());
  assert.equal(view.entries(ownerHash(bob)).length, 1);
  assert.equal(view.entries(ownerHash({ sub: 'nobody' })).length, 0);
});

test('records and ends from another edge show up once the view has caught up', async () => {
  const view = await watch(edgeA);
  const jobId = newId();
  const deadline = Date.now() + 60_000;
  const revision = await submit(edgeB, { jobId, owner: bob, deadline });
  assert.equal(await view.caughtUp(revision, 5000), true);
  assert.ok(view.entries(ownerHash(bob)).some((e) => e.jobId === jobId && e.deadline === deadline && e.revision === revision));
  assert.ok(await end(edgeB, { jobId, owner: bob }), 'the first end wins');
  assert.equal(await end(edgeA, { jobId, owner: bob }), null, 'a second end, from another edge, does not');
  const deadlineOf = Date.now() + 5000;
  while (view.entries(ownerHash(bob)).some((e) => e.jobId === jobId) && Date.now() < deadlineOf) await new Promise((r) => setTimeout(r, 20));
  assert.ok(!view.entries(ownerHash(bob)).some((e) => e.jobId === jobId), 'the ended job is gone');
  // A withdrawn submission (refused by the quota) goes too.
  const withdrawn = newId();
  await submit(edgeB, { jobId: withdrawn, owner: bob, deadline });
  await edgeB.jobs.withdraw(bob, withdrawn);
  const marker = await submit(edgeB, { jobId: newId(), owner: { sub: 'marker' }, deadline });
  assert.equal(await view.caughtUp(marker, 5000), true);
  assert.ok(!view.entries(ownerHash(bob)).some((e) => e.jobId === withdrawn), 'the withdrawn job is gone');
});

test('racing reservations from two edges count in stream order: each sees exactly those before it', async () => {
  const [viewA, viewB] = [await watch(edgeA), await watch(edgeB)];
  const racer = { sub: 'racer' };
  const deadline = Date.now() + 60_000;
  const reservations = await Promise.all(Array.from({ length: 12 }, (_, i) => {
    const jobId = newId();
    const bus = i % 2 ? edgeA : edgeB;
    return submit(bus, { jobId, owner: racer, deadline }).then((revision) => ({ jobId, revision, view: i % 2 ? viewA : viewB }));
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
  await submit(edgeB, gone);
  assert.equal(await view.caughtUp(await submit(edgeB, fine), 5000), true);
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

// Last: it makes the jobs bucket and the events stream anew.
test('streams made anew (a server back without its store): after the reconnect check the view starts over and counts the new records', async () => {
  const view = await watch(edgeA);
  const lost = { jobId: newId(), owner: alice, deadline: Date.now() + 60_000 };
  const oldRevision = await submit(edgeA, lost);
  assert.equal(await view.caughtUp(oldRevision, 5000), true);
  // What an empty server gets from the topology keeper: the same bucket and stream, new and empty.
  await edgeA.jsm.streams.delete(`KV_${BUCKETS.jobs}`);
  await edgeA.jsm.streams.delete(STREAMS.events);
  await ensureTopology(edgeA.nc, edgeA.jsm, loadConfig({ NATS_URL: nats.url }));
  view.afterReconnect();
  const fresh = { jobId: newId(), owner: alice, deadline: Date.now() + 60_000 };
  const revision = await submit(edgeA, fresh);
  assert.ok(revision < oldRevision, `the new bucket counts from 1 again (${revision} after ${oldRevision})`);
  await waitFor(() => view.entries(ownerHash(alice)).some((e) => e.jobId === fresh.jobId), 'the new record in the view', 15_000,
    () => JSON.stringify(view.entries(ownerHash(alice))));
  assert.ok(!view.entries(ownerHash(alice)).some((e) => e.jobId === lost.jobId), 'what the lost store held is gone from the view');
});
