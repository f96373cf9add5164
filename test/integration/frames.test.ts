/**
 * The frame transport against a real nats-server: chunked frames on the memory stream,
 * read back by a process on "another host" (a different host id), the host-local fast path,
 * and a clear error when a frame is gone.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { BusFrames } from '../../services/lib/bus/frames/bus-frames.js';
import { LocalFrames } from '../../services/lib/bus/frames/local-frames.js';
import { TieredFrames } from '../../services/lib/bus/frames/tiered-frames.js';
import { ensureTopology } from '../../services/lib/bus/topology.js';
import { loadConfig } from '../../services/lib/shared/config.js';
import { AppError } from '../../services/lib/shared/errors.js';
import { sha256 } from '../../services/lib/bus/blob-store.js';
import { startNatsServer, type TestNatsServer } from '../helpers/nats-server.js';

let nats: TestNatsServer;
let nc: NatsConnection;
let dir: string;

before(async () => {
  nats = await startNatsServer();
  nc = await connect({ servers: nats.url });
  await ensureTopology(nc, await jetstreamManager(nc), loadConfig({ NATS_URL: nats.url }));
  dir = mkdtempSync(path.join(os.tmpdir(), 'frames-it-'));
});
after(async () => {
  await nc?.close();
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function pattern(bytes: number): Buffer {
  const data = Buffer.allocUnsafe(bytes);
  for (let i = 0; i < bytes; i++) data[i] = (i * 31 + (i >> 10)) & 0xff;
  return data;
}

async function stores(hostId: string, mode: 'auto' | 'bus' | 'local', waitMs = 10_000) {
  const jsm = await jetstreamManager(nc);
  const bus = new BusFrames(jetstream(nc), jsm, nc.info!.max_payload, waitMs);
  return { bus, frames: new TieredFrames(mode, new LocalFrames(path.join(dir, hostId), hostId), bus) };
}

test('a 12 MP frame crosses hosts through the bus in several chunks, byte for byte', async () => {
  const writer = await stores('host-a', 'auto');
  const reader = await stores('host-b', 'auto');
  const frame = { width: 4000, height: 3000, channels: 3 as const, data: pattern(4000 * 3000 * 3) };
  const stored = await writer.frames.put('01JOBAAAAAAAAAAAAAAAAAAAAA.0', frame);
  assert.ok(stored.ref.chunks > 1, `a 36 MB frame is chunked (chunks: ${stored.ref.chunks})`);
  assert.deepEqual(stored.ref.stored, ['local', 'bus']);
  // The reader may ask before the writer's bus copy is complete: it waits for the chunks.
  const [read] = await Promise.all([reader.frames.get(stored.ref), stored.durable]);
  assert.ok(read.data.equals(frame.data));
  assert.deepEqual([read.width, read.height, read.channels], [4000, 3000, 3]);
});

test('on the same host the frame comes from the local cache; FRAME_TRANSPORT=local never touches the bus', async () => {
  const local = await stores('host-c', 'local');
  const frame = { width: 64, height: 32, channels: 4 as const, data: pattern(64 * 32 * 4) };
  const stored = await local.frames.put('01JOBBBBBBBBBBBBBBBBBBBBBB.1', frame);
  assert.deepEqual(stored.ref.stored, ['local']);
  assert.equal(stored.ref.chunks, 0);
  assert.ok((await local.frames.get(stored.ref)).data.equals(frame.data));
  const elsewhere = await stores('host-d', 'auto');
  await assert.rejects(elsewhere.frames.get(stored.ref), (error: AppError) => error.code === 'frame_missing' && /host-c/.test(error.message));
});

test('a frame that is gone gives frame_missing (retryable), and a finished job\'s frames are dropped', async () => {
  const store = await stores('host-e', 'bus', 300);
  const stored = await store.frames.put('01JOBCCCCCCCCCCCCCCCCCCCCC.0', { width: 8, height: 8, channels: 1, data: pattern(64) });
  assert.ok((await store.frames.get(stored.ref)).data.equals(pattern(64)));
  await store.frames.deleteJob('01JOBCCCCCCCCCCCCCCCCCCCCC');
  await assert.rejects(store.frames.get(stored.ref), (error: AppError) => error.code === 'frame_missing' && error.retryable);
});

test('the input left by an edge on this host is read only when its length and sha256 are the reference\'s', async () => {
  const cache = new LocalFrames(path.join(dir, 'host-f'), 'host-f');
  const jobId = '01JOBDDDDDDDDDDDDDDDDDDDDD';
  const bytes = pattern(5000);
  const ref = { kind: 'blob' as const, stream: 'PHOTOLAB_BLOBS', name: `uploads/${jobId}`, bytes: bytes.length, chunks: 1, sha256: sha256(bytes) };
  assert.equal(await cache.getInput(jobId, ref), null, 'no copy: the step reads the stored blob');
  await cache.putInput(jobId, bytes);
  assert.ok((await cache.getInput(jobId, ref))?.equals(bytes));
  const other = pattern(5000).fill(7, 100, 200); // same length, other bytes
  await cache.putInput(jobId, other);
  assert.equal(await cache.getInput(jobId, ref), null, 'a copy with another digest is never taken for the input');
  await cache.putInput(jobId, bytes.subarray(0, 4000));
  assert.equal(await cache.getInput(jobId, ref), null, 'nor a shorter one');
  await cache.putInput(jobId, bytes);
  await cache.deleteJob(jobId);
  assert.equal(await cache.getInput(jobId, ref), null, 'the copy goes with the job\'s frames');
});
