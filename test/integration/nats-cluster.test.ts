/**
 * Scale-out on a real 3-node nats-server cluster (Debian's 2.9.10), every stream and bucket R3.
 * The edge and one process per step (decode -> detect_objects -> encode) connect to all three
 * URLs. Under a load of CLUSTER_TEST_JOBS jobs (100 by default) the server holding the most
 * service connections is SIGKILLed, later restarted, and once it has caught up another server
 * is SIGKILLed and restarted too. Every job must end done, none twice, none lost, and the services must have
 * reconnected by themselves (nobody restarts them). The figures are printed.
 *
 * The kills and restarts are driven by progress (jobs completed), never by fixed sleeps, and
 * no assertion is about time: the only clocks are the deadlines that keep CI bounded.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { STREAMS, subjects } from '../../services/lib/bus/subjects.js';
import { findNatsServer } from '../../services/launcher/nats-server.js';
import { runLoad, startServices, waitForCount, type RunningServices } from '../helpers/cluster-system.js';
import { allReplicasCurrent, replicaState, startNatsCluster, type NatsCluster } from '../helpers/nats-cluster.js';
import { fixture } from '../helpers/paths.js';
import { waitFor } from '../helpers/system.js';

const JOBS = Number(process.env.CLUSTER_TEST_JOBS ?? 100);
const IN_FLIGHT = 6;
const STEPS = ['decode', 'detect_objects', 'encode'];
// Bounds, not expectations: on the 2-core development machine the run took 32-243 s (how long
// a server stays down depends on how fast ten jobs finish without it), and once ran out of a
// 240 s bound with every job correct but one still running; the bound is a liveness check.
const RUN_TIMEOUT_MS = 420_000;
const CATCH_UP_TIMEOUT_MS = 60_000;

let cluster: NatsCluster;
let services: RunningServices;
let jsm: JetStreamManager;

before(async () => {
  assert.ok(findNatsServer(), 'nats-server is not installed (scripts/setup.sh --test installs it)');
  cluster = await startNatsCluster(3);
  // The topology made R3 from the start, as a new cluster deployment makes it (startServices
  // does, before the services come up). Moving a single server's R1 topology to R3 is
  // nats-rescale.test.ts: done in place on this nats-server, it lost the end events of 18 of
  // 100 jobs here in CI once a leader was killed.
  services = await startServices({ natsUrls: cluster.urls, replicas: 3, steps: STEPS });
  jsm = await jetstreamManager(services.nc);
}, { timeout: 180_000 });

after(async () => {
  await services?.stop();
  await cluster?.stop();
}, { timeout: 60_000 });

test('every stream and KV bucket is R3 with a leader and two current followers', async () => {
  const state = await replicaState(jsm);
  for (const [name, s] of Object.entries(state)) {
    assert.equal(s.replicas, 3, `${name} replicas`);
    assert.ok(s.leader, `${name} has a leader`);
  }
  await waitFor(() => allReplicasCurrent(jsm, 3), 'all followers current', CATCH_UP_TIMEOUT_MS);
});

test(`${JOBS} jobs through two SIGKILLed and restarted servers: none lost, none duplicated`, { timeout: RUN_TIMEOUT_MS + 2 * CATCH_UP_TIMEOUT_MS + 30_000 }, async () => {
  const load = await runLoad(services, {
    jobs: JOBS,
    inFlight: IN_FLIGHT,
    // A small photo: the test is about the bus surviving crashes, not about pixels (detect_objects letterboxes it to the model's size anyway).
    image: readFileSync(fixture('HappyFish.jpg')),
    pipeline: [{ step: 'decode' }, { step: 'detect_objects' }, { step: 'encode' }],
    timeoutMs: RUN_TIMEOUT_MS,
    // Is the end in the stream (the leader's copy) and in which replicas' copies: a reader's
    // mistake and a replica that lost acknowledged messages read differently.
    explainSilent: async (jobIds) => {
      const lines = [`${STREAMS.events} per node: ${JSON.stringify(await cluster.replicaCopies(STREAMS.events))}`];
      for (const jobId of jobIds) {
        const atLeader = await jsm.streams.getMessage(STREAMS.events, { last_by_subj: subjects.endEvent(jobId) }).catch((e) => String(e));
        lines.push(`${jobId}: leader ${atLeader && typeof atLeader !== 'string' ? `has seq ${atLeader.seq}` : `has none (${atLeader})`}`);
      }
      return lines.join('\n');
    },
  });
  const kills: { node: string; at: number; connected: string[]; restartedAt?: number; caughtUpAt?: number }[] = [];
  const leaderOfStages = async () => (await jsm.streams.info(STREAMS.stages)).cluster?.leader;
  const crash = async (doneBefore: number, doneWhileDown: number) => {
    await waitForCount(load.done, doneBefore, `${doneBefore} jobs done before a kill`, RUN_TIMEOUT_MS);
    // The server holding the most service connections (so reconnects are exercised for sure: four
    // services on three servers put two on one), the leader of PHOTOLAB_STAGES on a tie, never
    // the server killed before.
    const leader = await waitFor(leaderOfStages, 'a leader of PHOTOLAB_STAGES', CATCH_UP_TIMEOUT_MS);
    const candidates = await Promise.all(cluster.nodes.filter((n) => !kills.some((k) => k.node === n.name)).map(async (n) => ({
      node: n.name,
      connected: (await cluster.connections(n.name)).filter((c) => /^photolab-(edge|stage-)/.test(c)),
    })));
    candidates.sort((a, b) => b.connected.length - a.connected.length || Number(b.node === leader) - Number(a.node === leader));
    const { node, connected } = candidates[0]!;
    const kill: (typeof kills)[number] = { node, at: Date.now(), connected };
    kills.push(kill);
    await cluster.kill(node);
    // Jobs keep completing on the two servers left (and a new leader) before it comes back.
    await waitForCount(load.done, doneWhileDown, `${doneWhileDown} jobs done with ${node} down`, RUN_TIMEOUT_MS);
    await cluster.restart(node);
    kill.restartedAt = Date.now();
    await waitFor(() => allReplicasCurrent(jsm, 3), `${node} caught up on every stream`, CATCH_UP_TIMEOUT_MS);
    kill.caughtUpAt = Date.now();
  };
  try {
    // Ten jobs done with a server down prove progress without it; more only lengthen CI.
    await crash(Math.round(JOBS * 0.15), Math.round(JOBS * 0.25));
    await crash(Math.round(JOBS * 0.5), Math.round(JOBS * 0.6));
    const figures = await load.finished;
    // Recovery: from the SIGKILL to the first job that completed after it.
    const recovery = kills.map((k) => ((load.completionTimes.find((t) => t > k.at) ?? NaN) - k.at) / 1000);
    const longestGap = load.completionTimes.slice(1).reduce((gap, t, i) => Math.max(gap, t - load.completionTimes[i]!), 0) / 1000;
    const report = {
      ...figures,
      jobsPerSecond: Number((figures.completed / figures.seconds).toFixed(2)),
      killed: kills.map((k, i) => `${k.node} (services on it: ${k.connected.join(', ') || 'none'}; SIGKILL, restarted after ${((k.restartedAt! - k.at) / 1000).toFixed(1)} s, caught up ${((k.caughtUpAt! - k.restartedAt!) / 1000).toFixed(1)} s later; next completion ${recovery[i]!.toFixed(2)} s after the kill)`),
      recoverySeconds: recovery.map((r) => Number(r.toFixed(2))),
      longestGapBetweenCompletionsSeconds: Number(longestGap.toFixed(2)),
      serviceReconnects: services.reconnects(),
      // The edge's open-jobs view made its feeds again after a stalled one (open-jobs-view.ts renew).
      openJobsViewRenewals: (services.tail('edge', 100_000).match(/open-jobs view: feeds renewed/g) ?? []).length,
    };
    console.log(`cluster test figures: ${JSON.stringify(report, null, 2)}`);
    assert.equal(kills.length, 2, 'two servers were killed and restarted');
    assert.notEqual(kills[0]!.node, kills[1]!.node, 'the second kill hit another server');
    assert.ok(kills[0]!.connected.length > 0, 'services were connected to the first killed server');
    assert.equal(figures.submitted, JOBS, 'every job was accepted');
    assert.equal(figures.lost, 0, 'no job lost');
    assert.equal(figures.duplicated, 0, 'no job duplicated');
    assert.equal(figures.failed, 0, 'no job failed');
    assert.equal(figures.completed, JOBS, 'every job done');
    // Nobody restarted a service: every process is the one started at the beginning.
    for (const p of services.processes) assert.equal(p.child.exitCode, null, `${p.name} still running:\n${services.tail(p.name)}`);
    // The probes Kubernetes uses: every stage alive and ready again after the crashes, by itself.
    for (const [step, port] of Object.entries(services.stagePorts)) {
      for (const probe of ['/healthz', '/readyz']) {
        const answer = await fetch(`http://127.0.0.1:${port}${probe}`);
        assert.equal(answer.status, 200, `${step} ${probe}: ${await answer.text()}`);
      }
    }
    // Every service that was on a killed server logged its reconnect (the client picks another URL by itself).
    const serviceName = (connection: string) => connection === 'photolab-edge' ? 'edge' : connection.replace(/^photolab-stage-/, '');
    for (const connection of new Set(kills.flatMap((k) => k.connected))) {
      const name = serviceName(connection);
      assert.ok((report.serviceReconnects[name] ?? 0) > 0, `${name} was on a killed server and reconnected:\n${services.tail(name)}`);
    }
  } catch (error) {
    console.log(`cluster test failed; state for the diagnosis:\n${await diagnose(load.statuses(), load.submitting())}`);
    throw error;
  } finally {
    await load.close();
  }
});

/** What a failure report needs: backlog per step, stream leaders and followers, the services' last warnings. */
async function diagnose(statuses: Map<string, string>, submitting: string): Promise<string> {
  const counts: Record<string, number> = {};
  for (const st of statuses.values()) counts[st.split(' ')[0]!] = (counts[st.split(' ')[0]!] ?? 0) + 1;
  const lines = [
    `accepted jobs by status: ${JSON.stringify(counts)}; not done: ${[...statuses].filter(([, st]) => !st.startsWith('done')).map(([id, st]) => `${id} ${st}`).join(', ')}`,
    `last submission: ${submitting}`,
  ];
  for (const step of STEPS) {
    const info = await jsm.consumers.info(STREAMS.stages, `stage-${step}`).catch((e) => String(e));
    lines.push(typeof info === 'string' ? `stage-${step}: ${info}` : `stage-${step}: pending ${info.num_pending}, ack pending ${info.num_ack_pending}, redelivered ${info.num_redelivered}, waiting pulls ${info.num_waiting}, leader ${info.cluster?.leader}`);
  }
  lines.push(JSON.stringify(await replicaState(jsm).catch((e) => String(e))));
  for (const p of services.processes) {
    const notable = services.tail(p.name, 4000).split('\n').filter((l) => /"level":(40|50|60)/.test(l)).slice(-8);
    lines.push(`--- ${p.name} (exit ${p.child.exitCode}):`, ...notable.map((l) => l.slice(0, 600)));
  }
  return lines.join('\n');
}
