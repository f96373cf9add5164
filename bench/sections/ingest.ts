/**
 * Section "ingest": upload throughput of the edge (uWebSockets.js) against the same endpoint
 * on node:http + ws (bench/ingest/node-edge.ts: identical auth, body reading, validation,
 * JobsService submit). No stage runs: jobs just queue, and the queue, uploads and job records
 * are purged after each case so memory and disk stay bounded.
 *
 * Load generator: this process, node:http keep-alive agent, C connections each sending the
 * same prebuilt multipart body back to back, for a fixed time (and at most a fixed count).
 */
import http from 'node:http';
import { freePort } from '../../services/launcher/nats-server.js';
import { multipartBody, post, startCluster, type Cluster } from '../lib/cluster.js';
import { fixed, mb, ms, now, photo, progress, summarize, table } from '../lib/util.js';
import type { SectionResult } from './types.js';

async function imageOfSize(target: number): Promise<Buffer> {
  // Real JPEGs near the target size: a textured fixture at growing sizes.
  for (let mp = target / 600_000; ; mp *= 1.1) {
    const { bytes } = await photo(mp, { source: 'baboon.jpg', quality: 92 });
    if (bytes.length >= target) return bytes;
  }
}

async function load(url: string, body: { body: Buffer; contentType: string }, token: string, connections: number, seconds: number, maxRequests: number) {
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
  const elapsed = (now() - t0) / 1000;
  agent.destroy();
  return { ok, failed, firstError, rps: ok / elapsed, mbps: (ok * body.body.length) / elapsed / (1024 * 1024), latency: summarize(latencies) };
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
  const seconds = options.quick ? 3 : 8;
  const pipeline = [{ step: 'decode' }, { step: 'encode' }];
  const sizes = [
    { label: '100 KB', bytes: await imageOfSize(100 * 1024), connections: 16, max: 20_000 },
    { label: '5 MB', bytes: await imageOfSize(5 * 1024 * 1024), connections: 8, max: 400 },
  ];
  const cluster = await startCluster({ workers: {}, edge: true });
  const rows: string[][] = [];
  const data: Record<string, unknown> = {};
  try {
    const nodePort = await freePort();
    await cluster.spawnService('node-edge', undefined, nodePort);
    const servers = [
      { name: 'edge (uWebSockets.js)', url: `${cluster.baseUrl}/api/jobs` },
      { name: 'node:http + ws', url: `http://127.0.0.1:${nodePort}/api/jobs` },
    ];
    for (const size of sizes) {
      const body = multipartBody(size.bytes, pipeline);
      const results: Record<string, Awaited<ReturnType<typeof load>>> = {};
      for (const server of servers) {
        progress(`ingest: ${server.name}, ${size.label} (${size.bytes.length} bytes), ${size.connections} connections, ${seconds} s`);
        await load(server.url, body, cluster.token, 2, 1, 20); // warm-up
        await purge(cluster);
        const r = await load(server.url, body, cluster.token, size.connections, seconds, size.max);
        await purge(cluster);
        results[server.name] = r;
        data[`${server.name} ${size.label}`] = r;
      }
      const [uws, node] = [results[servers[0]!.name]!, results[servers[1]!.name]!];
      for (const server of servers) {
        const r = results[server.name]!;
        rows.push([size.label, `${(size.bytes.length / 1024).toFixed(0)} KiB`, server.name, String(size.connections), String(r.ok), String(r.failed), fixed(r.rps, 1), fixed(r.mbps, 1),
          `${ms(r.latency.p50)} / ${ms(r.latency.p95)}`, server === servers[0] ? `${fixed(uws.rps / node.rps, 2)}x` : '']);
      }
      if (uws.firstError || node.firstError) rows.push([size.label, '', 'first error', '', '', '', uws.firstError || node.firstError, '', '', '']);
    }
  } finally {
    await cluster.stop();
  }
  const markdown = [
    `POST /api/jobs, multipart (pipeline + file, a real JPEG of the size shown), bearer JWT (HS256), keep-alive connections from this process on loopback, ${seconds} s per case after a warm-up. No stage service runs; the queue, uploads and job records are purged between cases. The server, nats-server and the load generator share the 2 cores.`,
    'Both servers run the edge\'s own auth, rate limiter, body reading + validation (readJobSubmission, same multipart parser) and JobsService.submit (pipeline validation, pixel check from the header, blobs-stream put of the upload, job record, job.accepted event, first step publish). Only the HTTP layer differs.',
    '',
    table(['upload', 'body', 'server', 'connections', 'accepted', 'failed', 'requests/s', 'MiB/s', 'latency p50 / p95 ms', 'uWS / node'], rows),
  ].join('\n');
  return { title: 'Edge ingest: uWebSockets.js vs node:http', markdown, data };
}
