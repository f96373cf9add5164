import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, utimesSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { existsSync } from 'node:fs';
import { isInMemory, LocalFrames, SYNC_IO_MAX_BYTES } from '../../services/lib/bus/frames/local-frames.js';
import type { FrameRef } from '../../services/lib/shared/schema-types.js';

// A folder in memory (/dev/shm, the default) is written and read in the calling thread, a disk
// folder through fs.promises: both behave the same.
const folders = [{ kind: 'disk', parent: os.tmpdir() }, { kind: 'memory', parent: '/dev/shm' }].filter((f) => existsSync(f.parent) && isInMemory(f.parent) === (f.kind === 'memory'));

for (const { kind, parent } of folders) test(`the host-local frame cache (${kind} folder) round-trips frames and inputs, only for its own host, and sweeps old jobs`, async () => {
  const dir = mkdtempSync(path.join(parent, 'frames-'));
  try {
    assert.equal(isInMemory(path.join(dir, 'not', 'made', 'yet')), kind === 'memory', 'a folder not made yet is judged by its parent');
    const cache = new LocalFrames(dir, 'host-a');
    const data = Buffer.from(Array.from({ length: 4 * 3 * 3 }, (_, i) => i));
    await cache.put('JOB1.0', { width: 4, height: 3, channels: 3, data });
    const ref: FrameRef = { kind: 'frame', id: 'JOB1.0', width: 4, height: 3, channels: 3, bytes: data.length, chunks: 0, host: 'host-a', stored: ['local'] };
    const frame = await cache.get(ref);
    assert.ok(frame && frame.data.equals(data));
    assert.equal(await cache.get({ ...ref, host: 'host-b' }), null, 'another host\'s frame is not read from this cache');
    assert.equal(await cache.get({ ...ref, bytes: 5 }), null, 'a size mismatch is treated as missing');
    assert.equal(await cache.get({ ...ref, id: 'JOB9.0' }), null, 'a frame never written is missing');
    const upload = Buffer.from('not really a jpeg');
    await cache.putInput('JOB2', upload);
    const input = { kind: 'blob' as const, stream: 'PHOTOLAB_BLOBS', name: 'uploads/JOB2', bytes: upload.length, chunks: 1, sha256: createHash('sha256').update(upload).digest('hex') };
    assert.ok((await cache.getInput('JOB2', input))?.equals(upload));
    assert.equal(await cache.getInput('JOB2', { ...input, sha256: '0'.repeat(64) }), null, 'another digest is not this input');
    await cache.deleteJob('JOB2');
    assert.equal(existsSync(path.join(dir, 'JOB2')), false, 'deleteJob removes the job folder');
    await cache.deleteJob('JOB2'); // twice: no error
    // A frame larger than what is copied in the calling thread goes through the thread pool.
    const height = Math.ceil(SYNC_IO_MAX_BYTES / (3 * 1024)) + 1;
    const large = Buffer.alloc(3 * 1024 * height, 9);
    await cache.put('JOB3.1', { width: 1024, height, channels: 3, data: large });
    const largeRef: FrameRef = { kind: 'frame', id: 'JOB3.1', width: 1024, height, channels: 3, bytes: large.length, chunks: 0, host: 'host-a', stored: ['local'] };
    assert.ok((await cache.get(largeRef))?.data.equals(large));
    const old = new Date(Date.now() - 3_600_000);
    utimesSync(path.join(dir, 'JOB1'), old, old);
    assert.equal(await cache.sweep(60_000), 1);
    assert.equal(await cache.get(ref), null);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
