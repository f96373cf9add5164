/**
 * Section "blobs": moving one raw frame between two steps, put then get, by every transport
 * the design could use: the Object Store (what uploads/results use), the JetStream frames
 * stream (BusFrames), the host-local tmpfs cache (LocalFrames), the tmpfs cache with zlib
 * level-1 compression, and an in-process hand-over (copy) for reference.
 */
import { deflateRawSync, inflateRawSync, constants as zc } from 'node:zlib';
import { mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { connectBus } from '../../services/lib/bus/bus.js';
import { BusFrames } from '../../services/lib/bus/frames/bus-frames.js';
import { LocalFrames } from '../../services/lib/bus/frames/local-frames.js';
import { StorageType } from '@nats-io/jetstream';
import { loadConfig } from '../../services/lib/shared/config.js';
import type { BlobRef, FrameRef } from '../../services/lib/shared/schema-types.js';
import { Objm } from '@nats-io/obj';
import { benchEnv, startNats } from '../lib/cluster.js';
import { fixed, mb, ms, now, progress, rawFrame, silentLog, summarize, table } from '../lib/util.js';
import type { SectionResult } from './types.js';

interface Transport {
  name: string;
  put(id: string, frame: { width: number; height: number; channels: 3; data: Buffer }): Promise<unknown>;
  get(id: string, frame: { width: number; height: number; channels: 3; data: Buffer }, token: unknown): Promise<Buffer>;
  skip?(megapixels: number): boolean;
  cleanup?(id: string): Promise<void>;
}

export async function blobsSection(options: { quick?: boolean } = {}): Promise<SectionResult> {
  const nats = await startNats();
  const dataDir = mkdtempSync(path.join('/dev/shm', 'photolab-bench-blobs-'));
  const config = loadConfig({ ...process.env, ...benchEnv(nats, dataDir, { FRAME_CACHE_DIR: dataDir }) });
  const bus = await connectBus(config, silentLog, 'bench-blobs');
  try {
    // The Object Store, for comparison (the product moved uploads and results off it by these numbers).
    const objects = await new Objm(bus.nc).create('photolab-bench-objects', { storage: StorageType.File });
    const busFrames = new BusFrames(bus.js, bus.jsm, bus.nc.info?.max_payload ?? 1024 * 1024);
    const local = new LocalFrames(dataDir, 'bench-host');
    const ref = (id: string, f: { width: number; height: number; data: Buffer }, chunks = 0): FrameRef => ({
      kind: 'frame', id, width: f.width, height: f.height, channels: 3, bytes: f.data.length, chunks, stored: ['local', 'bus'], host: 'bench-host',
    });
    const transports: Transport[] = [
      {
        name: 'in-process hand-over (copy)',
        put: async (_id, f) => Buffer.from(f.data),
        get: async (_id, _f, token) => token as Buffer,
      },
      {
        name: 'tmpfs cache (LocalFrames, /dev/shm)',
        put: (id, f) => local.put(id, f),
        get: async (id, f) => (await local.get(ref(id, f)))!.data,
        cleanup: (id) => local.deleteJob(id.split('.')[0]!),
      },
      {
        name: 'tmpfs cache + zlib level 1',
        put: async (id, f) => local.put(id, { ...f, data: deflateRawSync(f.data, { level: 1, strategy: zc.Z_DEFAULT_STRATEGY }) }),
        get: async (id) => inflateRawSync(await import('node:fs/promises').then((fs) => fs.readFile(path.join(dataDir, id.split('.')[0]!, `${id.split('.')[1]}.raw`)))),
        skip: (mp) => mp > 12,
        cleanup: (id) => local.deleteJob(id.split('.')[0]!),
      },
      {
        name: 'JetStream frames stream (BusFrames)',
        put: (id, f) => busFrames.put(id, f),
        get: async (id, f, chunks) => (await busFrames.get(ref(id, f, chunks as number))).data,
        cleanup: (id) => busFrames.deleteJob(id.split('.')[0]!),
      },
      {
        name: 'blobs stream (BlobStore: uploads, results)',
        put: async (id, f) => bus.blobs.put(`bench/${id.replace('.', '-')}`, f.data),
        get: async (_id, _f, token) => bus.blobs.get(token as BlobRef),
        cleanup: (id) => bus.blobs.delete(`bench/${id.replace('.', '-')}`),
      },
      {
        name: 'Object Store (@nats-io/obj)',
        put: (id, f) => objects.putBlob({ name: id }, f.data),
        get: async (id) => Buffer.from((await objects.getBlob(id))!),
        cleanup: async (id) => { await objects.delete(id).catch(() => undefined); },
      },
    ];
    const sizes = options.quick ? [1, 12] : [1, 12, 48];
    const rows: string[][] = [];
    const raw: Record<string, unknown> = {};
    for (const mp of sizes) {
      const frame = await rawFrame(mp);
      const reps = mp <= 1 ? 8 : mp <= 12 ? 4 : 2;
      for (const t of transports) {
        if (t.skip?.(mp)) continue;
        progress(`blobs: ${t.name}, ${mp} MP x ${reps}`);
        const puts: number[] = [];
        const gets: number[] = [];
        try {
        for (let i = 0; i <= reps; i++) {
          const id = `B${mp}x${i}${Math.random().toString(36).slice(2, 8)}.0`;
          const a = now();
          const token = await t.put(id, frame);
          const b = now();
          const back = await t.get(id, frame, token);
          const c = now();
          if (back.length !== frame.data.length) throw new Error(`${t.name}: got ${back.length} of ${frame.data.length} bytes`);
          await t.cleanup?.(id);
          if (i === 0) continue; // warm-up
          puts.push(b - a);
          gets.push(c - b);
        }
        } catch (error) {
          rows.push([`${mp} MP`, t.name, `failed: ${String((error as Error).message).slice(0, 80)}`, '', '', '', '']);
          continue;
        }
        const size = mb(frame.data.length);
        const put = summarize(puts);
        const get = summarize(gets);
        raw[`${t.name} ${mp}MP`] = { put, get };
        rows.push([`${mp} MP (${size.toFixed(0)} MiB)`, t.name, ms(put.p50), fixed(size / (put.p50 / 1000), 0), ms(get.p50), fixed(size / (get.p50 / 1000), 0), ms(put.p50 + get.p50)]);
      }
    }
    const markdown = [
      'One raw RGB frame (photo content) written then read back in this process; p50 of the repetitions after one warm-up (1 MP: 8, 12 MP: 4, 48 MP: 2). MiB/s = frame size / p50 time.',
      'The Object Store is the @nats-io/obj client (128 KiB chunks); the frames stream is PHOTOLAB_FRAMES (memory storage, up to 8 MB messages, chunks published and read in parallel with direct get); tmpfs is a file per frame in /dev/shm (write + rename, read); zlib level 1 is skipped at 48 MP.',
      '',
      table(['frame', 'transport', 'put ms', 'put MiB/s', 'get ms', 'get MiB/s', 'put+get ms'], rows),
    ].join('\n');
    return { title: 'Blobs and frame transports', markdown, data: raw };
  } finally {
    await bus.close().catch(() => undefined);
    await nats.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
