import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  FFHQ_TEMPLATE_512, alignmentError, applySimilarity, estimateSimilarity, featherMask, invertSimilarity, pasteBack,
  similarityScale, templateFor, warpToAligned, type Point, type Similarity,
} from '../../services/lib/imaging/face-align.js';

/** A face pose: rotation θ, scale s, translation, as a similarity. */
function pose(theta: number, s: number, tx: number, ty: number): Similarity {
  return { a: s * Math.cos(theta), b: s * Math.sin(theta), tx, ty };
}

const close = (actual: number, expected: number, tolerance: number, what = '') =>
  assert.ok(Math.abs(actual - expected) <= tolerance, `${what} ${actual} is not within ${tolerance} of ${expected}`);

/** Landmarks of a face whose aligned image is the template mapped by `alignedToImage`. */
function landmarksFor(alignedToImage: Similarity, size = 512): Point[] {
  return templateFor(size).map((p) => applySimilarity(alignedToImage, p));
}

describe('similarity estimate', () => {
  it('recovers a known transform exactly from 5 landmarks', () => {
    const truth = pose(0.3, 0.27, 140.5, 60.25);
    const landmarks = landmarksFor(truth);
    const toAligned = estimateSimilarity(landmarks, FFHQ_TEMPLATE_512);
    const expected = invertSimilarity(truth);
    for (const key of ['a', 'b', 'tx', 'ty'] as const) close(toAligned[key], expected[key], 1e-9, key);
    assert.ok(alignmentError(toAligned, landmarks, FFHQ_TEMPLATE_512) < 1e-9);
  });

  it('is the least-squares optimum for noisy landmarks', () => {
    const landmarks = landmarksFor(pose(-0.5, 0.4, 200, 100)).map(([x, y], i) => [x + [0.8, -1.1, 0.4, -0.3, 1.2][i], y + [-0.6, 0.9, 1.3, -1.0, 0.2][i]] as const);
    const m = estimateSimilarity(landmarks, FFHQ_TEMPLATE_512);
    const best = alignmentError(m, landmarks, FFHQ_TEMPLATE_512);
    for (const key of ['a', 'b', 'tx', 'ty'] as const) {
      for (const delta of [1e-3, -1e-3]) {
        const nudged = { ...m, [key]: m[key] + delta * (key.startsWith('t') ? 100 : 1) };
        assert.ok(alignmentError(nudged, landmarks, FFHQ_TEMPLATE_512) > best, `nudging ${key} improved the fit`);
      }
    }
  });

  it('inverse round-trips points', () => {
    const m = pose(1.1, 2.5, -30, 12);
    const inv = invertSimilarity(m);
    for (const p of [[0, 0], [511, 3], [-20.5, 700.25]] as Point[]) {
      const [x, y] = applySimilarity(inv, applySimilarity(m, p));
      close(x, p[0], 1e-9);
      close(y, p[1], 1e-9);
    }
    close(similarityScale(inv), 1 / 2.5, 1e-12);
  });

  it('refuses degenerate landmarks', () => {
    assert.throws(() => estimateSimilarity([[5, 5], [5, 5], [5, 5]], templateFor(512).slice(0, 3)), /coincide/);
    assert.throws(() => estimateSimilarity([[1, 2]], [[3, 4]]), /need/);
    assert.throws(() => estimateSimilarity([[Number.NaN, 2], [1, 1]], [[3, 4], [5, 6]]), /finite/);
  });

  it('scales the template for 256-pixel models', () => {
    assert.deepEqual(templateFor(256)[0], [FFHQ_TEMPLATE_512[0][0] / 2, FFHQ_TEMPLATE_512[0][1] / 2]);
  });
});

/** An RGB image with a Gaussian blob (σ = 2 px) at each point, black elsewhere. */
function blobImage(width: number, height: number, points: readonly Point[]): Uint8Array {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let v = 0;
      for (const [px, py] of points) v += 250 * Math.exp(-((x - px) ** 2 + (y - py) ** 2) / (2 * 2 * 2));
      const b = Math.min(255, Math.round(v));
      data.set([b, b, b], (y * width + x) * 3);
    }
  }
  return data;
}

function centroid(square: Float32Array, size: number, channels: number, [cx, cy]: Point, radius: number): [number, number] {
  let sum = 0, sx = 0, sy = 0;
  for (let v = Math.floor(cy - radius); v <= Math.ceil(cy + radius); v++) {
    for (let u = Math.floor(cx - radius); u <= Math.ceil(cx + radius); u++) {
      const w = square[(v * size + u) * channels];
      sum += w; sx += w * u; sy += w * v;
    }
  }
  return [sx / sum, sy / sum];
}

describe('warp to the aligned square', () => {
  for (const size of [512, 256]) {
    it(`puts the landmarks on the template within 0.5 px (${size})`, () => {
      const width = 360;
      const height = 280;
      // A face ~140 px wide, turned 20°, on the image.
      const alignedToImage = pose(0.35, 140 / size * (512 / 512), 100, 40);
      const landmarks = landmarksFor(alignedToImage, size);
      const image = { width, height, channels: 3, data: blobImage(width, height, landmarks) };
      const toAligned = estimateSimilarity(landmarks, templateFor(size));
      const square = warpToAligned(image, 3, toAligned, size);
      assert.equal(square.length, size * size * 3);
      const radius = 6 * 2 * similarityScale(toAligned);
      for (const [i, point] of templateFor(size).entries()) {
        const [u, v] = centroid(square, size, 3, point, radius);
        close(u, point[0], 0.5, `landmark ${i} u`);
        close(v, point[1], 0.5, `landmark ${i} v`);
      }
    });
  }
});

describe('bilinear sampling', () => {
  it('reproduces a linear image exactly at sub-pixel positions', () => {
    const width = 120;
    const height = 100;
    const f = (x: number, y: number) => 10 + 1.5 * x + 0.75 * y;
    const data = new Uint8Array(width * height);
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data[y * width + x] = Math.round(f(x, y));
    const toAligned = pose(0.4, 2.2, -50, 30);
    const back = invertSimilarity(toAligned);
    const square = warpToAligned({ width, height, channels: 1, data }, 1, toAligned, 128);
    let checked = 0;
    for (let v = 0; v < 128; v += 7) {
      for (let u = 0; u < 128; u += 5) {
        const [x, y] = applySimilarity(back, [u, v]);
        if (x < 1 || y < 1 || x > width - 2 || y > height - 2) continue;
        // Rounding the grid values costs at most 0.5; bilinear weights keep that bound.
        close(square[v * 128 + u], f(x, y), 0.5 + 1e-6, `(${u},${v})`);
        checked++;
      }
    }
    assert.ok(checked > 100);
  });
});

describe('feather mask', () => {
  it('is 0 at the border, 1 in the middle, and rises monotonically', () => {
    const mask = featherMask(512);
    assert.equal(mask[0], 0);
    assert.equal(mask[256 * 512 + 5], 0);
    assert.equal(mask[256 * 512 + 256], 1);
    for (let u = 1; u < 256; u++) assert.ok(mask[256 * 512 + u] >= mask[256 * 512 + u - 1]);
  });
});

describe('paste back', () => {
  /** A smooth (linear) image: bilinear resampling reproduces it exactly, so predictions are exact. */
  function gradient(width: number, height: number, channels: number): Uint8Array {
    const data = new Uint8Array(width * height * channels);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const p = (y * width + x) * channels;
        data[p] = 20 + x % 200;
        data[p + 1] = 30 + (y % 180);
        data[p + 2] = 100;
        if (channels === 4) data[p + 3] = 77;
      }
    }
    return data;
  }

  it('an inverting "model" inverts the face region, leaves the rest and alpha untouched, round-trips geometry', () => {
    const width = 300;
    const height = 240;
    const size = 512;
    const original = gradient(width, height, 4);
    const image = { width, height, channels: 4, data: Uint8Array.from(original) };
    const landmarks = landmarksFor(pose(-0.2, 0.25, 90, 50), size);
    const toAligned = estimateSimilarity(landmarks, templateFor(size));
    const aligned = warpToAligned(image, 3, toAligned, size);
    const restored = aligned.map((v) => 255 - v);
    const mask = featherMask(size);
    const box = pasteBack(image, 3, restored, size, toAligned, mask, 1);

    let inside = 0;
    let outside = 0;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const [u, v] = applySimilarity(toAligned, [x, y]);
        const p = (y * width + x) * 4;
        assert.equal(image.data[p + 3], 77, 'alpha changed');
        const inSquare = u >= 0 && v >= 0 && u <= size - 1 && v <= size - 1;
        if (!inSquare) {
          // Outside the aligned square nothing may change.
          for (let c = 0; c < 3; c++) assert.equal(image.data[p + c], original[p + c], `pixel ${x},${y} outside the face changed`);
          outside++;
        } else if (u > 150 && u < 362 && v > 150 && v < 362) {
          // Well inside (mask 1; only x%200 wraps break linearity, avoid those columns).
          if (x % 200 < 2 || x % 200 > 197 || y % 180 < 2 || y % 180 > 177) continue;
          for (let c = 0; c < 3; c++) close(image.data[p + c], 255 - original[p + c], 1, `pixel ${x},${y} channel ${c}`);
          inside++;
        }
      }
    }
    assert.ok(inside > 1000, `only ${inside} pixels checked inside`);
    assert.ok(outside > 1000);
    assert.ok(box.x0 >= 0 && box.x1 < width && box.y0 >= 0 && box.y1 < height);
  });

  it('weight 0 changes nothing; weight 0.5 moves half way', () => {
    const width = 200;
    const height = 200;
    const size = 256;
    const original = gradient(width, height, 3);
    const landmarks = landmarksFor(pose(0, 0.5, 40, 30), size);
    const toAligned = estimateSimilarity(landmarks, templateFor(size));
    const none = { width, height, channels: 3, data: Uint8Array.from(original) };
    const aligned = warpToAligned(none, 3, toAligned, size);
    const white = new Float32Array(aligned.length).fill(255);
    pasteBack(none, 3, white, size, toAligned, featherMask(size), 0);
    assert.deepEqual(none.data, original);
    const half = { width, height, channels: 3, data: Uint8Array.from(original) };
    pasteBack(half, 3, white, size, toAligned, featherMask(size), 0.5);
    const [x, y] = applySimilarity(invertSimilarity(toAligned), [128, 128]).map(Math.round);
    const p = (y * width + x) * 3;
    close(half.data[p], (original[p] + 255) / 2, 1);
  });
});
