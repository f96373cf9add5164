/**
 * Section "ingest": upload throughput of the edge (uWebSockets.js) against the same endpoint
 * on node:http + ws (bench/ingest/node-edge.ts: identical auth, body reading, validation,
 * JobsService submit), and of the HTTP layer alone on each (bench/ingest/front-only.ts). No
 * stage runs: jobs just queue, and the queue, uploads and job records are purged after each
 * round so memory and disk stay bounded.
 *
 * This machine's speed drifts by tens of percent from minute to minute (other tenants), so
 * the two servers of a pair take turns in short rounds and each figure sums its rounds; the
 * server's own CPU time per request (from /proc, user + system) is reported beside the rate,
 * as it hardly depends on that drift.
 *
 * Load generator: wrk when installed (bench/ingest/wrk.ts), else this process with a node:http
 * keep-alive agent, C connections each sending the same prebuilt multipart body back to back.
 */
import type { ChildProcess } from 'node:child_process';
import http from 'node:http';
import { freePort } from '../../services/launcher/nats-server.js';
import { multipartBody, post, startCluster, type Cluster, type ServiceKind } from '../lib/cluster.js';
import { cpuMs, fixed, ms, now, photo, progress, summarize, table } from '../lib/util.js';
import type { SectionResult } from './types.js';
import { wrkAvailable, wrkLoad, type LoadResult } from '../ingest/wrk.js';

async function imageOfSize(target: number): Promise<Buffer> {
  // Real JPEGs near the target size: a textured fixture at growing sizes.
  for (let mp = target / 600_000; ; mp *= 1.1) {
    const { bytes } = await photo(mp, { source: 'baboon.jpg', quality: 92 });
    if (bytes.length >= target) return bytes;
  }
}

async function nodeLoad(url: string, body: { body: Buffer; contentType: string }, token: string, connections: number, seconds: number, maxRequests: number): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const latencies: number[] = [];
  let ok = 0;
  let failed = 0;
  let firstError = '';
  let sent = 0;
  const until = now() + seconds * 1000;
  const t0 = now();
  await Promise.all(Array.from({ length: connections }, async () => {
    while (now() < until && sent < maxRequests) {
      sent++;
      const a = now();
      try {
        const r = await post(agent, url, body.body, { 'content-type': body.contentType, authorization: `Bearer ${token}` });
        if (r.status === 202) ok++;
        else {
          failed++;
          firstError ||= `${r.status} ${r.text.slice(0, 200)}`;
        }
      } catch (error) {
        failed++;
        firstError ||= String(error);
      }
      latencies.push(now() - a);
    }
  }));
  const seconds_ = (now() - t0) / 1000;
  agent.destroy();
  const latency = summarize(latencies);
  return { ok, failed, firstError, seconds: seconds_, latency: { p50: latency.p50, p95: latency.p95 } };
}


interface Server {
  name: string;
  url: string;
  pid: number;
}

interface Totals {
  ok: number;
  failed: number;
  firstError: string;
  seconds: number;
  cpuMs: number;
  p50s: number[];
  p95s: number[];
}

async function purge(cluster: Cluster): Promise<void> {
  for await (const s of cluster.jsm.streams.list()) {
    const name = s.config.name;
    if (name === 'PHOTOLAB_STAGES' || name === 'PHOTOLAB_EVENTS' || name === 'PHOTOLAB_BLOBS' || name.startsWith('KV_photolab')) {
      await cluster.jsm.streams.purge(name).catch(() => undefined);
    }
  }
}

export async function ingestSection(options: { quick: boolean }): Promise<SectionResult> {
  const rounds = options.quick ? 2 : 4;
  const seconds = options.quick ? 2 : 4;
  const pipeline = [{ step: 'decode' }, { step: 'encode' }];
  const sizes = [
    { label: '100 KB', bytes: await imageOfSize(100 * 1024), connections: 16, max: 20_000 },
    { label: '5 MB', bytes: await imageOfSize(5 * 1024 * 1024), connections: 8, max: 400 },
  ];
  const useWrk = wrkAvailable();
  const cluster = await startCluster({ workers: {}, edge: false });
  const rows: string[][] = [];
  const data: Record<string, unknown> = {};
  try {
    const start = async (name: string, kind: ServiceKind): Promise<Server> => {
      const port = await freePort();
      const child: ChildProcess = await cluster.spawnService(kind, undefined, port);
      return { name, url: `http://127.0.0.1:${port}/api/jobs`, pid: child.pid! };
    };
    // Two pairs: the whole submission (the edge against node-edge), and the HTTP layer alone
    // (front-only.ts: everything before the bus, then 202) on each server.
    const pairs = [
      { what: 'whole submission', servers: [await start('edge (uWebSockets.js)', 'edge'), await start('node:http + ws', 'node-edge')] },
      { what: 'HTTP layer only', servers: [await start('uWebSockets.js, front only', 'uws-front'), await start('node:http, front only', 'node-front')] },
    ];
    for (const size of sizes) {
      const body = multipartBody(size.bytes, pipeline);
      for (const pair of pairs) {
        const totals = new Map<Server, Totals>(pair.servers.map((server) => [server, { ok: 0, failed: 0, firstError: '', seconds: 0, cpuMs: 0, p50s: [], p95s: [] }]));
        for (const server of pair.servers) await nodeLoad(server.url, body, cluster.token, 2, 1, 20); // warm-up
        await purge(cluster);
        for (let round = 0; round < rounds; round++) {
          // Alternate who goes first, so neither always runs right after a purge.
          for (const server of round % 2 ? [...pair.servers].reverse() : pair.servers) {
            progress(`ingest: ${server.name}, ${size.label}, round ${round + 1}/${rounds}, ${size.connections} connections, ${seconds} s`);
            const cpuBefore = cpuMs(server.pid);
            const r = useWrk ? await wrkLoad(server.url, body, cluster.token, size.connections, seconds) : await nodeLoad(server.url, body, cluster.token, size.connections, seconds, size.max);
            const t = totals.get(server)!;
            t.cpuMs += cpuMs(server.pid) - cpuBefore;
            t.ok += r.ok;
            t.failed += r.failed;
            t.firstError ||= r.firstError;
            t.seconds += r.seconds;
            t.p50s.push(r.latency.p50);
            t.p95s.push(r.latency.p95);
            await purge(cluster);
          }
        }
        const [uws, node] = pair.servers.map((server) => totals.get(server)!) as [Totals, Totals];
        const rps = (t: Totals) => t.ok / t.seconds;
        const cpuPerRequest = (t: Totals) => t.cpuMs / Math.max(1, t.ok + t.failed);
        for (const [i, server] of pair.servers.entries()) {
          const t = totals.get(server)!;
          data[`${pair.what}: ${server.name} ${size.label}`] = { ...t, rps: rps(t), cpuMsPerRequest: cpuPerRequest(t) };
          rows.push([size.label, pair.what, server.name, String(size.connections), String(t.ok), String(t.failed), fixed(rps(t), 1),
            fixed((rps(t) * size.bytes.length) / (1024 * 1024), 1), `${ms(summarize(t.p50s).p50)} / ${ms(summarize(t.p95s).p50)}`, ms(cpuPerRequest(t), 3),
            i === 0 ? `${fixed(rps(uws) / rps(node), 2)}x` : '', i === 0 ? `${fixed(cpuPerRequest(node) / cpuPerRequest(uws), 2)}x` : '']);
        }
        if (uws.firstError || node.firstError) rows.push([size.label, pair.what, 'first error', '', '', '', uws.firstError || node.firstError, '', '', '', '', '']);
      }
    }
  } finally {
    await cluster.stop();
  }
  const markdown = [
    `POST /api/jobs, multipart (pipeline + file, a real JPEG of the size shown), bearer JWT (HS256), keep-alive connections on loopback from ${useWrk ? 'wrk (one thread; bench/ingest/wrk.ts)' : 'this process (node:http agent; install wrk for a client that needs less CPU)'}. The two servers of a pair take turns: ${rounds} rounds of ${seconds} s each, after a warm-up; figures sum the rounds (latency: median over the rounds of each round's p50 and p95). No stage service runs; the queue, uploads and job records are purged after each round. The server under test, nats-server and the load generator share the 2 cores.`,
    '"whole submission": both servers run the edge\'s own auth, rate limiter, body reading + validation (readJobSubmission, same multipart parser) and JobsService.submit (pipeline validation, pixel check from the header, quota slot, blobs-stream put of the upload, job record, job index, job.accepted event, first step publish). Only the HTTP layer differs.',
    '"HTTP layer only": the same steps up to the bus (auth, rate limit, body, multipart, schema and pipeline validation, pixel check), then 202 without storing or publishing (bench/ingest/front-only.ts, one handler for both servers).',
    '"server CPU ms / request": user + system CPU of the server process over its rounds, divided by the requests it answered (from /proc; steadier than the rate on this shared machine).',
    '',
    table(['upload', 'path', 'server', 'connections', 'accepted', 'failed', 'requests/s', 'MiB/s', 'latency p50 / p95 ms', 'server CPU ms / request', 'uWS / node (rate)', 'node / uWS (CPU per request)'], rows),
  ].join('\n');
  return { title: 'Edge ingest: uWebSockets.js vs node:http', markdown, data };
}
