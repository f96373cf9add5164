import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, utimesSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { LocalFrames } from '../../services/lib/bus/frames/local-frames.js';
import type { FrameRef } from '../../services/lib/shared/schema-types.js';

test('the host-local frame cache round-trips frames, only for its own host, and sweeps old jobs', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'frames-'));
  try {
    const cache = new LocalFrames(dir, 'host-a');
    const data = Buffer.from(Array.from({ length: 4 * 3 * 3 }, (_, i) => i));
    await cache.put('JOB1.0', { width: 4, height: 3, channels: 3, data });
    const ref: FrameRef = { kind: 'frame', id: 'JOB1.0', width: 4, height: 3, channels: 3, bytes: data.length, chunks: 0, host: 'host-a', stored: ['local'] };
    const frame = await cache.get(ref);
    assert.ok(frame && frame.data.equals(data));
    assert.equal(await cache.get({ ...ref, host: 'host-b' }), null, 'another host\'s frame is not read from this cache');
    assert.equal(await cache.get({ ...ref, bytes: 5 }), null, 'a size mismatch is treated as missing');
    const old = new Date(Date.now() - 3_600_000);
    utimesSync(path.join(dir, 'JOB1'), old, old);
    assert.equal(await cache.sweep(60_000), 1);
    assert.equal(await cache.get(ref), null);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
