import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AppError } from '../../services/lib/shared/errors.js';
import {
  axisWeights, byteSource, bytesToPlanar, runTiled, runTiledToBytes, runTiledToPlanar, tileStarts,
  type PlanarImage, type TileModel,
} from '../../services/lib/imaging/tiling.js';

/** Deterministic pseudo-random bytes (so failures reproduce). */
function randomBytes(n: number, seed = 1): Buffer {
  const out = Buffer.alloc(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

function recordingModel(inner: TileModel, seen: Array<[number, number]>): TileModel {
  return async (tile) => {
    seen.push([tile.width, tile.height]);
    return inner(tile);
  };
}

const identity: TileModel = async (tile) => ({ ...tile, data: Float32Array.from(tile.data) });

/** Nearest-neighbour ×s upscale: a purely local "model", so tiling must not change its result at all. */
const nearest = (s: number): TileModel => async (tile) => {
  const w = tile.width * s;
  const h = tile.height * s;
  const data = new Float32Array(tile.channels * w * h);
  for (let c = 0; c < tile.channels; c++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        data[c * w * h + y * w + x] = tile.data[c * tile.width * tile.height + Math.floor(y / s) * tile.width + Math.floor(x / s)];
      }
    }
  }
  return { width: w, height: h, channels: tile.channels, data };
};

/** 3×3 mean with zero padding: not local, so tile edges differ from the whole-image result. */
const boxBlur: TileModel = async (tile) => {
  const { width: w, height: h, channels } = tile;
  const data = new Float32Array(tile.data.length);
  for (let c = 0; c < channels; c++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let sum = 0;
        for (let dy = -1; dy <= 1; dy++) {
          for (let dx = -1; dx <= 1; dx++) {
            const yy = y + dy;
            const xx = x + dx;
            if (yy >= 0 && yy < h && xx >= 0 && xx < w) sum += tile.data[c * w * h + yy * w + xx];
          }
        }
        data[c * w * h + y * w + x] = sum / 9;
      }
    }
  }
  return { width: w, height: h, channels, data };
};

describe('tileStarts', () => {
  it('covers the axis with the asked overlap, first at 0 and last ending at the length', () => {
    for (const [length, tile, overlap] of [[1000, 256, 32], [257, 256, 16], [512, 256, 0], [700, 100, 49], [300, 128, 40]]) {
      const starts = tileStarts(length, tile, overlap);
      assert.equal(starts[0], 0);
      assert.equal(starts[starts.length - 1] + tile, length);
      for (let i = 1; i < starts.length; i++) {
        assert.ok(starts[i] > starts[i - 1]);
        assert.ok(starts[i - 1] + tile - starts[i] >= overlap, `overlap at ${i} for ${length}/${tile}/${overlap}`);
      }
    }
  });
  it('gives one tile when the image fits', () => {
    assert.deepEqual(tileStarts(100, 256, 16), [0]);
    assert.deepEqual(tileStarts(256, 256, 16), [0]);
  });
});

describe('axisWeights', () => {
  it('ramps of two neighbours add up to 1 across their overlap', () => {
    const a = axisWeights(64, 0, 16);
    const b = axisWeights(64, 16, 0);
    for (let i = 0; i < 16; i++) assert.ok(Math.abs(a[48 + i] + b[i] - 1) < 1e-6);
    assert.equal(a[0], 1);
    assert.ok(a[63] > 0);
  });
});

describe('runTiled', () => {
  it('an identity model gives back the image exactly (RGB, many tiles, uneven size)', async () => {
    const width = 301;
    const height = 207;
    const bytes = randomBytes(width * height * 3);
    const input = bytesToPlanar(bytes, width, height, 3, [0, 1, 2]);
    const seen: Array<[number, number]> = [];
    const out = await runTiledToBytes(input, recordingModel(identity, seen), { scale: 1, tileSize: 64, overlap: 12 });
    assert.equal(out.length, bytes.length);
    assert.ok(out.equals(bytes), 'identity through tiles changed pixels');
    assert.ok(seen.length > 1);
    for (const [w, h] of seen) assert.ok(w <= 64 && h <= 64, `tile ${w}x${h} larger than tileSize`);
  });

  it('a local ×2 and ×4 model gives exactly the untiled result, output size exact', async () => {
    for (const scale of [2, 4]) {
      const width = 97;
      const height = 61;
      const bytes = randomBytes(width * height * 3, scale);
      const input = bytesToPlanar(bytes, width, height, 3, [0, 1, 2]);
      const whole = await runTiledToBytes(input, nearest(scale), { scale, tileSize: 512, overlap: 0 });
      const tiled = await runTiledToBytes(input, nearest(scale), { scale, tileSize: 32, overlap: 8 });
      assert.equal(tiled.length, width * scale * height * scale * 3);
      assert.ok(tiled.equals(whole), `tiled x${scale} differs from the whole-image result`);
    }
  });

  it('grey (one channel) and tiles overlapping three deep blend exactly', async () => {
    const width = 300;
    const height = 130;
    const bytes = randomBytes(width * height, 7);
    const input = bytesToPlanar(bytes, width, height, 1, [0]);
    // 300 / 128 / 40: three tiles whose overlaps leave pixels covered by three of them.
    const out = await runTiledToBytes(input, identity, { scale: 1, tileSize: 128, overlap: 40 });
    assert.ok(out.equals(bytes));
  });

  it('blending hides tile seams of a non-local model', async () => {
    // 256 = 4 × 64: without overlap the tiles meet edge to edge.
    const width = 256;
    const height = 256;
    // A smooth gradient: the whole-image blur is nearly the image, a naive tiling would leave dark lines.
    const bytes = Buffer.alloc(width * height);
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) bytes[y * width + x] = Math.round(40 + 0.5 * x + 0.3 * y);
    const input = bytesToPlanar(bytes, width, height, 1, [0]);
    const whole = await runTiledToPlanar(input, boxBlur, { scale: 1, tileSize: 256, overlap: 0 });
    const blended = await runTiledToPlanar(input, boxBlur, { scale: 1, tileSize: 64, overlap: 16 });
    const hard = await runTiledToPlanar(input, boxBlur, { scale: 1, tileSize: 64, overlap: 0 });
    const maxDiff = (a: PlanarImage, b: PlanarImage) => a.data.reduce((m, v, i) => Math.max(m, Math.abs(v - b.data[i])), 0);
    // Hard tile edges lose a third of a pixel's neighbourhood: ~0.1 of full scale.
    assert.ok(maxDiff(hard, whole) > 0.05, 'the test model should show seams without blending');
    // Blended: an edge pixel's weight is ~0.003, so the error stays under one 8-bit level.
    assert.ok(maxDiff(blended, whole) < 1 / 255, `seam error ${maxDiff(blended, whole)}`);
  });

  it('a fixed-size model gets exactly tileSize tiles, edge-padded when the image is smaller', async () => {
    const width = 50;
    const height = 90;
    const bytes = randomBytes(width * height, 3);
    const input = bytesToPlanar(bytes, width, height, 1, [0]);
    const seen: Array<[number, number]> = [];
    const out = await runTiledToBytes(input, recordingModel(nearest(3), seen), { scale: 3, tileSize: 64, overlap: 8, fixedTileSize: true });
    for (const [w, h] of seen) assert.deepEqual([w, h], [64, 64]);
    const whole = await runTiledToBytes(input, nearest(3), { scale: 3, tileSize: 128, overlap: 0 });
    assert.ok(out.equals(whole));
  });

  it('streams rows in order and keeps only one band in memory', async () => {
    const width = 40;
    const height = 300;
    const input = bytesToPlanar(randomBytes(width * height), width, height, 1, [0]);
    const bands: Array<[number, number]> = [];
    await runTiled(input, nearest(2), { scale: 2, tileSize: 32, overlap: 4 }, (first, rows, block) => {
      bands.push([first, rows]);
      assert.ok(rows <= 64, 'a band is at most tileSize × scale rows');
      assert.equal(block.length, rows * width * 2);
    });
    let next = 0;
    for (const [first, rows] of bands) {
      assert.equal(first, next);
      next += rows;
    }
    assert.equal(next, height * 2);
  });

  it('reads tiles straight from interleaved bytes (RGBA picked as RGB, grey as RGB) like from a planar copy', async () => {
    const width = 150;
    const height = 90;
    const rgba = randomBytes(width * height * 4, 11);
    for (const [stride, pick] of [[4, [0, 1, 2]], [1, [0, 0, 0]]] as Array<[number, number[]]>) {
      const data = stride === 4 ? rgba : rgba.subarray(0, width * height);
      const fromBytes = await runTiledToBytes(byteSource(data, width, height, stride, pick), nearest(2), { scale: 2, tileSize: 40, overlap: 8 });
      const fromPlanar = await runTiledToBytes(bytesToPlanar(data, width, height, stride, pick), nearest(2), { scale: 2, tileSize: 40, overlap: 8 });
      assert.ok(fromBytes.equals(fromPlanar));
      assert.equal(fromBytes.length, width * 2 * height * 2 * 3);
    }
  });

  it('borderPad gives zero-padding models real context at the image border, output cropped exactly', async () => {
    const width = 70;
    const height = 45;
    const flat = Buffer.alloc(width * height, 200);
    const input = bytesToPlanar(flat, width, height, 1, [0]);
    // One tile, so only the image border (not tile seams) is in question.
    const darkened = await runTiledToBytes(input, boxBlur, { scale: 1, tileSize: 128, overlap: 8 });
    assert.ok(darkened[0] < 150, 'the zero-padding model should darken the corner without context');
    const padded = await runTiledToBytes(input, boxBlur, { scale: 1, tileSize: 128, overlap: 8, borderPad: 4 });
    assert.equal(padded.length, width * height);
    assert.ok(padded.equals(flat), 'with border context a flat image stays flat');
    // Local models are unaffected by padding; rows arrive in order and complete.
    const bytes = randomBytes(width * height * 3, 5);
    const rgb = bytesToPlanar(bytes, width, height, 3, [0, 1, 2]);
    const plain = await runTiledToBytes(rgb, nearest(3), { scale: 3, tileSize: 32, overlap: 8 });
    const withPad = await runTiledToBytes(rgb, nearest(3), { scale: 3, tileSize: 32, overlap: 8, borderPad: 5 });
    assert.ok(withPad.equals(plain));
    const fixed = await runTiledToBytes(rgb, nearest(3), { scale: 3, tileSize: 128, overlap: 8, borderPad: 5, fixedTileSize: true });
    assert.ok(fixed.equals(plain));
  });

  it('refuses bad tiling options with a 400 AppError', async () => {
    const input = bytesToPlanar(randomBytes(100), 10, 10, 1, [0]);
    for (const options of [{ scale: 1, tileSize: 64, overlap: 32 }, { scale: 1, tileSize: 8, overlap: 0 }, { scale: 1.5, tileSize: 64, overlap: 0 }]) {
      await assert.rejects(runTiledToBytes(input, identity, options), (e: unknown) => e instanceof AppError && e.status === 400);
    }
  });

  it('stops between tiles when the signal aborts', async () => {
    const input = bytesToPlanar(randomBytes(200 * 200), 200, 200, 1, [0]);
    const controller = new AbortController();
    let calls = 0;
    const model: TileModel = async (tile) => {
      if (++calls === 2) controller.abort(new Error('canceled'));
      return identity(tile);
    };
    await assert.rejects(runTiledToBytes(input, model, { scale: 1, tileSize: 32, overlap: 0, signal: controller.signal }), /canceled/);
    assert.equal(calls, 2);
  });
});
