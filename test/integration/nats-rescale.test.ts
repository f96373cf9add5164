/**
 * NATS_REPLICAS raised on a topology that holds data, on a real 3-node cluster (Debian's
 * nats-server 2.9.10). There an in-place scale-up keeps acknowledging writes its new replicas
 * never get (lib/bus/rescale.ts): a start must refuse it, and `photolab rescale` must move every
 * stream and bucket to R3 by copy with every message kept, into streams that then survive a
 * SIGKILLed leader without losing an acknowledged write; a run that stopped half-way is
 * finished by the next.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { jetstream, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { eventHeaders } from '../../services/lib/bus/job-store.js';
import { ALL_STREAMS, BUCKETS, STREAMS, stageConsumer, subjects } from '../../services/lib/bus/subjects.js';
import { rescaleStreams } from '../../services/lib/bus/rescale.js';
import { ensureStream, ensureTopology, streamConfigs } from '../../services/lib/bus/topology.js';
import { findNatsServer } from '../../services/launcher/nats-server.js';
import { loadConfig } from '../../services/lib/shared/config.js';
import { allReplicasCurrent, connectAll, ensureTopologyWhenReady, replicaState, startNatsCluster, type NatsCluster } from '../helpers/nats-cluster.js';
import { startCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';

const env = (replicas: number) => ({ ...process.env, NATS_REPLICAS: String(replicas), FRAME_STREAM_MAX_BYTES: String(256 * 1024 * 1024) });

let cluster: NatsCluster;
let nc: NatsConnection;
let jsm: JetStreamManager;

before(async () => {
  assert.ok(findNatsServer(), 'nats-server is not installed (scripts/setup.sh --test installs it)');
  cluster = await startNatsCluster(3, 'photolab-rescale-');
  nc = await connectAll(cluster.urls, 'photolab-rescale-test');
  // The topology as a single-server deployment leaves it: every stream and bucket R1.
  jsm = await ensureTopologyWhenReady(nc, loadConfig(env(1)), ['decode']);
}, { timeout: 120_000 });

after(async () => {
  await nc?.close();
  await cluster?.stop();
}, { timeout: 60_000 });

/** Every message of a stream, read by sequence (no consumer: a work queue allows no second one). */
async function contents(stream: string): Promise<string[]> {
  const { state } = await jsm.streams.info(stream);
  const out: string[] = [];
  for (let seq = state.first_seq; state.messages > 0 && seq <= state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
    if (!m) continue; // a deleted sequence
    const kept = ['Photolab-Event', 'KV-Operation'].map((h) => `${h}=${m.header?.get(h) ?? ''}`).join(' ');
    out.push(`${m.subject} ${createHash('sha256').update(m.data).digest('hex').slice(0, 16)} ${kept}`);
  }
  return out;
}

const cli = (args: string[], replicas: number) => startCli(args, { ...env(replicas), NATS_URL: cluster.urls }).done;

test('a start refuses to scale up in place; `photolab rescale` makes everything R3 with every message kept', { timeout: 240_000 }, async () => {
  const js = jetstream(nc);
  // Data of every kind the product keeps: KV records (one deleted), events with headers, blobs, queued steps.
  const jobs = await new Kvm(nc).open(BUCKETS.jobs);
  for (let i = 0; i < 30; i++) await jobs.put(`owner.job${i}`, JSON.stringify({ jobId: `job${i}`, n: i }));
  await jobs.delete('owner.job7');
  for (let i = 0; i < 40; i++) await js.publish(subjects.endEvent(`JOB${i}`), JSON.stringify({ type: 'job.done', jobId: `JOB${i}` }), { headers: eventHeaders('job.done') });
  for (let i = 0; i < 5; i++) await js.publish(subjects.blob(`rescale/b${i}`), randomBytes(200_000));
  for (let i = 0; i < 3; i++) await js.publish(subjects.stage('decode'), JSON.stringify({ queued: i }));
  const before = Object.fromEntries(await Promise.all(ALL_STREAMS.map(async (s) => [s, await contents(s)] as const)));
  assert.equal(before[`KV_${BUCKETS.jobs}`]!.length, 30, 'history 1: the delete marker replaced the deleted record');
  assert.equal(before[STREAMS.stages]!.length, 3);

  await assert.rejects(ensureTopology(nc, jsm, loadConfig(env(3)), ['decode']), /loses acknowledged messages after a stream is scaled up in place[\s\S]*npm run cli -- rescale/);
  assert.ok(Object.values(await replicaState(jsm)).every((s) => s.replicas === 1), 'the refused start scaled nothing up');

  const run = await cli(['rescale'], 3);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, new RegExp(`${STREAMS.events}\\s+1 -> 3\\s+40`));
  assert.match(run.stdout, new RegExp(`${STREAMS.stages}\\s+1 -> 3\\s+3\\s+${stageConsumer('decode')}`));
  const state = await replicaState(jsm);
  for (const [name, s] of Object.entries(state)) assert.equal(s.replicas, 3, `${name} replicas`);
  await waitFor(() => allReplicasCurrent(jsm, 3), 'every copy current', 60_000);
  for (const stream of ALL_STREAMS) assert.deepEqual(await contents(stream), before[stream], `${stream}: the same messages in the same order`);
  assert.deepEqual((await jsm.streams.list().next()).map((s) => s.config.name).filter((n) => n.endsWith('_RESCALE')), [], 'no copy left behind');

  // The services' start now changes nothing and makes the stage consumer again, which finds the queued steps.
  await ensureTopology(nc, jsm, loadConfig(env(3)), ['decode']);
  const consumer = await jetstream(nc).consumers.get(STREAMS.stages, stageConsumer('decode'));
  const queued: unknown[] = [];
  for await (const m of await consumer.fetch({ max_messages: 3, expires: 5000 })) {
    queued.push(m.json());
    m.ack();
  }
  assert.deepEqual(queued, [{ queued: 0 }, { queued: 1 }, { queued: 2 }]);
  const record = await jobs.get('owner.job3');
  assert.deepEqual(record?.json(), { jobId: 'job3', n: 3 });
  assert.equal((await jobs.get('owner.job7'))?.operation, 'DEL');

  const again = await cli(['rescale'], 3);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /every stream already has 3 replica\(s\)/);
});

test('a rescaled stream loses no acknowledged write when its leader is SIGKILLed under load', { timeout: 180_000 }, async () => {
  // PHOTOLAB_EVENTS as the test before left it, rescaled to R3. What an in-place scale-up fails
  // on 2.9.10 (tens to hundreds of acknowledged writes lost per run, measured).
  const js = jetstream(nc, { timeout: 10_000 });
  const acked: string[] = [];
  let writing = true;
  const writers = Array.from({ length: 6 }, async (_, w) => {
    for (let i = 0; writing; i++) {
      const subject = subjects.endEvent(`K${w}N${i}`);
      try {
        await js.publish(subject, JSON.stringify({ type: 'job.done', w, i }), { expect: { lastSubjectSequence: 0 } });
        acked.push(subject);
      } catch {
        // Refused during the election: not acknowledged, so nothing is owed.
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  });
  await waitFor(() => acked.length >= 200, '200 acknowledged writes', 60_000);
  const leader = (await jsm.streams.info(STREAMS.events)).cluster!.leader!;
  await cluster.kill(leader);
  const whileDown = acked.length;
  await waitFor(() => acked.length >= whileDown + 100, '100 more writes with the leader down', 60_000);
  await cluster.restart(leader);
  writing = false;
  await Promise.all(writers);
  // Read at the stream's leader, which answers with two of three servers up: whether the
  // restarted one has caught up is not the question here (the cluster test waits for that).
  const missing: string[] = [];
  for (const subject of acked) {
    // null is "no such message"; an error (a request during an election) is asked again.
    const stored = await waitFor(async () => ({ message: await jsm.streams.getMessage(STREAMS.events, { last_by_subj: subject }) }), `the leader's answer for ${subject}`, 30_000);
    if (!stored.message) missing.push(subject);
  }
  assert.deepEqual(missing, [], `${missing.length} of ${acked.length} acknowledged writes lost; copies per node: ${JSON.stringify(await cluster.replicaCopies(STREAMS.events))}`);
});

test('a rescale that stopped after the delete, with the stream made again empty by a starting service, is finished by the next run', { timeout: 120_000 }, async () => {
  const js = jetstream(nc);
  const dlq = streamConfigs(loadConfig(env(1))).find((s) => s.name === STREAMS.deadLetters)!;
  for (let i = 0; i < 5; i++) await js.publish(`photolab.dlq.rescale.${i}`, JSON.stringify({ i }));
  const kept = await contents(STREAMS.deadLetters);
  // The first run, to R1, as far as its delete: the copy made and filled, the stream gone.
  const copyName = `${STREAMS.deadLetters}_RESCALE`;
  const original = (await jsm.streams.info(STREAMS.deadLetters)).config;
  await jsm.streams.add({ name: copyName, description: JSON.stringify({ ...original, num_replicas: 1 }), storage: original.storage, num_replicas: 1, sources: [{ name: STREAMS.deadLetters }] });
  await waitFor(async () => (await jsm.streams.info(copyName)).state.messages === kept.length, 'the copy filled');
  await jsm.streams.delete(STREAMS.deadLetters);
  // A service starts: its topology makes the stream again, empty, and something is written to it.
  await ensureStream(jsm, dlq, nc.info?.version);
  await js.publish('photolab.dlq.rescale.after', '{}');

  const steps = await rescaleStreams(jsm, [STREAMS.deadLetters], 1);
  assert.equal(steps.length, 1);
  const now = await contents(STREAMS.deadLetters);
  assert.deepEqual(now.filter((m) => !m.startsWith('photolab.dlq.rescale.after ')).sort(), [...kept].sort(), 'every message of the copy is back');
  assert.equal(now.length, kept.length + 1, 'and the one written since');
  assert.equal((await jsm.streams.info(STREAMS.deadLetters)).config.num_replicas, 1);
  assert.equal(await jsm.streams.info(copyName).catch(() => null), null, 'the copy is gone');
});
