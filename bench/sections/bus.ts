/**
 * Section "bus": what nats-server handles per job, by connection, for decode -> detect_objects ->
 * encode (1 MP, frames on this host), one process per step and fused. Read from the server's
 * own monitoring (/connz: messages and bytes in and out of each client connection, /varz:
 * totals) and /proc (its CPU), over jobs run one at a time after warm-ups. This is where the
 * bus work per job is: each message the server takes in or sends out costs it a wake-up,
 * whether it is a stored write, its PubAck, a delivery, an ack, a pull request or a live event.
 */
import { freePort } from '../../services/launcher/nats-server.js';
import { busCost, costPerJob, multipartBody, startCluster } from '../lib/cluster.js';
import { fixed, photo, progress, table } from '../lib/util.js';
import type { SectionResult } from './types.js';

interface Connz { connections: { cid: number; name?: string; in_msgs: number; out_msgs: number; in_bytes: number; out_bytes: number }[] }
interface Varz { in_msgs: number; out_msgs: number; in_bytes: number; out_bytes: number }

const PIPELINE = [{ step: 'decode' }, { step: 'detect_objects', params: { model: 'yolox' } }, { step: 'encode' }];

export async function busSection(options: { quick: boolean }): Promise<SectionResult> {
  const jobs = options.quick ? 10 : 30;
  const image = (await photo(1)).bytes;
  const body = multipartBody(image, PIPELINE);
  const layouts: { name: string; workers: Record<string, number> }[] = [
    { name: 'one process per step', workers: { decode: 1, detect_objects: 1, encode: 1 } },
    { name: 'fused', workers: { 'decode,detect_objects,encode': 1 } },
  ];
  const summary: (string | number)[][] = [];
  const detail: (string | number)[][] = [];
  const data: Record<string, unknown> = {};
  for (const layout of layouts) {
    progress(`bus: ${layout.name} x ${jobs}`);
    const monitorPort = await freePort();
    const cluster = await startCluster({ workers: layout.workers, monitorPort, env: { FRAME_TRANSPORT: 'local' } });
    try {
      const monitor = async <T>(path: string): Promise<T> => (await fetch(`http://127.0.0.1:${monitorPort}${path}`)).json() as Promise<T>;
      for (let i = 0; i < 5; i++) await cluster.client.run(body);
      const [c0, v0, b0] = [await monitor<Connz>('/connz?limit=256'), await monitor<Varz>('/varz'), await busCost(cluster)];
      for (let i = 0; i < jobs; i++) await cluster.client.run(body);
      const [c1, v1, b1] = [await monitor<Connz>('/connz?limit=256'), await monitor<Varz>('/varz'), await busCost(cluster)];
      const cost = costPerJob(b0, b1, jobs);
      const per = (a: number, b: number) => (a - b) / jobs;
      summary.push([layout.name, fixed(cost.writes, 1), fixed(cost.natsCpuMs, 1), fixed(per(v1.in_msgs, v0.in_msgs), 1), fixed(per(v1.out_msgs, v0.out_msgs), 1),
        fixed(per(v1.in_bytes, v0.in_bytes) / 1024, 0), fixed(per(v1.out_bytes, v0.out_bytes) / 1024, 0)]);
      const before = new Map(c0.connections.map((c) => [c.cid, c]));
      const rows = c1.connections.map((c) => {
        const b = before.get(c.cid) ?? { in_msgs: 0, out_msgs: 0, in_bytes: 0, out_bytes: 0 };
        return { name: c.name ?? `cid ${c.cid}`, inMsgs: per(c.in_msgs, b.in_msgs), outMsgs: per(c.out_msgs, b.out_msgs), inKB: per(c.in_bytes, b.in_bytes) / 1024, outKB: per(c.out_bytes, b.out_bytes) / 1024 };
      }).filter((r) => r.inMsgs + r.outMsgs >= 0.05);
      for (const r of rows) detail.push([layout.name, r.name, fixed(r.inMsgs, 1), fixed(r.inKB, 0), fixed(r.outMsgs, 1), fixed(r.outKB, 0)]);
      data[layout.name] = { cost, rows };
    } finally {
      await cluster.stop();
    }
  }
  const markdown = [
    table(['layout', 'stored writes / job', 'nats-server CPU ms / job', 'msgs in / job', 'msgs out / job', 'KB in / job', 'KB out / job'], summary),
    '',
    table(['layout', 'connection', 'msgs to the server', 'KB', 'msgs from the server', 'KB'], detail),
    '',
    `decode -> detect_objects(yolox) -> encode, 1 MP JPEG, FRAME_TRANSPORT=local, ${jobs} jobs one at a time after 5 warm-ups; the bench client (photolab-bench) follows each job over core NATS. "To the server": publishes, stored writes, acks, pull requests, direct-get requests; "from the server": deliveries, PubAcks, replies, live events.`,
  ].join('\n');
  return { title: 'Bus: messages per job, by connection', markdown, data };
}
