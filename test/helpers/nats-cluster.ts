/**
 * A real 3-node nats-server cluster on loopback ports, JetStream on every node (Debian's
 * 2.9.10 does R3), for the cluster test and the replication bench. A node can be SIGKILLed and
 * restarted on the same ports and store, as a crashed machine that comes back would be.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { freePort, startNatsServer, type NatsServerOptions, type RunningNatsServer } from '../../services/launcher/nats-server.js';
import { ensureTopology } from '../../services/lib/bus/topology.js';
import { ALL_STREAMS } from '../../services/lib/bus/subjects.js';
import type { Config } from '../../services/lib/shared/config.js';

export interface ClusterNode {
  name: string;
  url: string;
  options: NatsServerOptions;
  server?: RunningNatsServer;
}

export interface NatsCluster {
  nodes: ClusterNode[];
  /** Every node's URL, comma-separated: what NATS_URL is set to. */
  urls: string;
  storeDir: string;
  /** SIGKILL: no shutdown, no flush, as a machine that loses power. */
  kill(name: string): Promise<void>;
  restart(name: string): Promise<void>;
  /** Names of the client connections a running node holds (its /connz). */
  connections(name: string): Promise<string[]>;
  /** user + system CPU seconds of the running nats-server processes so far (from /proc). */
  cpuSeconds(): number;
  /** Each running node's own copy of a stream (its /jsz): messages, first and last sequence, deleted. */
  replicaCopies(stream: string): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

export async function startNatsCluster(size = 3, prefix = 'photolab-cluster-'): Promise<NatsCluster> {
  const storeDir = mkdtempSync(path.join(os.tmpdir(), prefix));
  // freePort closes its probe socket before returning, so take them all first and keep them distinct.
  const ports: number[] = [];
  while (ports.length < 3 * size) {
    const port = await freePort();
    if (!ports.includes(port)) ports.push(port);
  }
  const clientPorts = ports.slice(0, size);
  const routePorts = ports.slice(size, 2 * size);
  const monitorPorts = ports.slice(2 * size);
  const nodes: ClusterNode[] = clientPorts.map((port, i) => ({
    name: `n${i + 1}`,
    url: `nats://127.0.0.1:${port}`,
    options: {
      port,
      host: '127.0.0.1',
      storeDir: path.join(storeDir, `n${i + 1}`),
      logFile: path.join(storeDir, `n${i + 1}.log`),
      serverName: `n${i + 1}`,
      monitorPort: monitorPorts[i],
      // size 1: a plain single server (the embedded default's shape), for R1 baselines.
      ...(size > 1 ? { cluster: { name: 'photolab-test', port: routePorts[i]!, routes: routePorts } } : {}),
      // Three servers share this machine's memory: the frames stream is capped well below this.
      maxMemoryStore: 1024 * 1024 * 1024,
    },
  }));
  const node = (name: string) => {
    const found = nodes.find((n) => n.name === name);
    if (!found) throw new Error(`no node ${name}`);
    return found;
  };
  // CPU time accumulated by servers that were killed, so cpuSeconds() covers the whole run.
  let retiredCpu = 0;
  const cluster: NatsCluster = {
    nodes,
    urls: nodes.map((n) => n.url).join(','),
    storeDir,
    async kill(name) {
      const n = node(name);
      const child = n.server?.process;
      if (!child || child.exitCode !== null || child.signalCode !== null) throw new Error(`node ${name} is not running`);
      retiredCpu += processCpuSeconds(child.pid!);
      await new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      });
      n.server = undefined;
    },
    async restart(name) {
      const n = node(name);
      if (n.server) throw new Error(`node ${name} is running`);
      n.server = await startNatsServer(n.options);
    },
    async connections(name) {
      const response = await fetch(`http://127.0.0.1:${node(name).options.monitorPort}/connz?limit=1000`);
      const connz = await response.json() as { connections?: { name?: string }[] };
      return (connz.connections ?? []).map((c) => c.name ?? '');
    },
    cpuSeconds() {
      return retiredCpu + nodes.reduce((sum, n) => sum + (n.server?.process.pid ? processCpuSeconds(n.server.process.pid) : 0), 0);
    },
    async replicaCopies(stream) {
      const copies: Record<string, unknown> = {};
      for (const n of nodes) {
        if (!n.server) continue;
        try {
          const response = await fetch(`http://127.0.0.1:${n.options.monitorPort}/jsz?accounts=true&streams=true`);
          const jsz = await response.json() as { account_details?: { stream_detail?: { name: string; state?: Record<string, unknown>; cluster?: { leader?: string } }[] }[] };
          const copy = jsz.account_details?.flatMap((a) => a.stream_detail ?? []).find((d) => d.name === stream);
          const st = copy?.state ?? {};
          copies[n.name] = copy ? { messages: st.messages, first_seq: st.first_seq, last_seq: st.last_seq, num_deleted: st.num_deleted, leader: copy.cluster?.leader } : 'no copy';
        } catch (error) {
          copies[n.name] = String(error);
        }
      }
      return copies;
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.server?.stop()));
      rmSync(storeDir, { recursive: true, force: true });
    },
  };
  try {
    for (const n of nodes) n.server = await startNatsServer(n.options);
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}

/** user + system CPU of a process, seconds (/proc/<pid>/stat fields 14 and 15, in clock ticks). */
export function processCpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    // After the ") " the state is field 3, so utime (14) and stime (15) are at 11 and 12.
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** Connects to every URL of NATS_URL, as the services do. */
export function connectAll(urls: string, name: string): Promise<NatsConnection> {
  return connect({ servers: urls.split(','), name, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
}

/**
 * Creates the topology once the cluster can hold it: JetStream answers only once a meta leader
 * is elected, and an R3 stream is refused ("insufficient resources", "no suitable peers for
 * placement") until all three peers
 * have joined the meta group. Retries those two conditions only, until the deadline.
 */
export async function ensureTopologyWhenReady(nc: NatsConnection, config: Config, steps: string[], timeoutMs = 60_000): Promise<JetStreamManager> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.getAccountInfo();
      await ensureTopology(nc, jsm, config, steps);
      return jsm;
    } catch (error) {
      last = error;
      if (!/insufficient resources|no suitable peers|unavailable|no responders|timeout|leader|not enabled|503/i.test(String(error))) throw error;
    }
    if (Date.now() > until) throw new Error(`the cluster did not accept the topology within ${timeoutMs} ms: ${String(last)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}


/** Per stream: replica count, leader, and whether every follower is current. */
export async function replicaState(jsm: JetStreamManager): Promise<Record<string, { replicas: number; leader?: string; followers: { name: string; current: boolean }[] }>> {
  const state: Record<string, { replicas: number; leader?: string; followers: { name: string; current: boolean }[] }> = {};
  for (const name of ALL_STREAMS) {
    const info = await jsm.streams.info(name);
    state[name] = {
      replicas: info.config.num_replicas,
      leader: info.cluster?.leader,
      followers: (info.cluster?.replicas ?? []).map((r) => ({ name: r.name, current: r.current })),
    };
  }
  return state;
}

/** True when every stream has a leader and `size - 1` current followers: a restarted node has caught up. */
export async function allReplicasCurrent(jsm: JetStreamManager, size: number): Promise<boolean> {
  try {
    const state = await replicaState(jsm);
    return Object.values(state).every((s) => s.leader && s.followers.length === size - 1 && s.followers.every((f) => f.current));
  } catch {
    // A stream info during an election may time out: not current yet.
    return false;
  }
}
