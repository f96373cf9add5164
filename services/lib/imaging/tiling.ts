/**
 * Tiled model inference with seamless blending.
 *
 * Image models (super-resolution, denoising) are fully convolutional: their memory grows with
 * the pixels they see at once. To run any image size within a fixed memory bound the image is
 * cut into overlapping tiles, each tile goes through the model on its own, and the outputs are
 * blended back with feathered weights: inside a tile the weight is 1, across an overlap it
 * ramps smoothly (smoothstep) from one tile to the next, so the pixels a model sees near a tile edge (where
 * its receptive field hits the tile's zero padding) count least, and no seam is visible.
 * Weights are normalised by their sum, so an identity model gives back the input exactly.
 *
 * Output is produced in horizontal bands: only one band of tile rows (tileSize × scale output
 * rows across the full width) is accumulated at a time, and finished rows are handed to a sink.
 * Input can be read straight from 8-bit pixels (ByteSource), so besides the input and output
 * frames the memory is one band plus one tile in and out of the model.
 */
import { appError } from '../shared/errors.js';

/** A float image, planar (CHW): channel 0 plane, then channel 1... Values usually in [0,1]. */
export interface PlanarImage {
  width: number;
  height: number;
  channels: number;
  data: Float32Array;
}

/** One tile through the model: output must be (width × scale) × (height × scale), same channels. */
export type TileModel = (tile: PlanarImage) => Promise<PlanarImage>;

export interface TileOptions {
  /** Integer output/input size ratio of the model (1 for denoisers). */
  scale: number;
  /** Tile side in input pixels. */
  tileSize: number;
  /** Overlap between neighbouring tiles in input pixels (blended). Must be < tileSize / 2. */
  overlap: number;
  /** The model takes exactly tileSize × tileSize (fixed input shape): smaller images are padded (edge replicated), outputs cropped. */
  fixedTileSize?: boolean;
  /**
   * Pixels of edge-replicated context added around the image before tiling (output cropped
   * after). Conv models zero-pad at their input's border, which darkens the outermost output
   * pixels; with real-looking context there the image border looks like any other region.
   */
  borderPad?: number;
  /** Checked between tiles. */
  signal?: AbortSignal;
  /** Called after each tile (keeps a long job's message alive). */
  onTile?: (done: number, total: number) => void;
}

/**
 * Receives finished output rows [firstRow, firstRow + rowCount) as a planar block
 * (channels × rowCount × outWidth floats). The block is reused: copy what you keep.
 */
export type RowSink = (firstRow: number, rowCount: number, block: Float32Array) => void;

/**
 * Start offsets of tiles of `tile` pixels along an axis of `length`, neighbours overlapping by at
 * least `overlap`, spread evenly so the first starts at 0 and the last ends at `length`.
 */
export function tileStarts(length: number, tile: number, overlap: number): number[] {
  if (length <= tile) return [0];
  const stride = tile - overlap;
  const count = Math.ceil((length - overlap) / stride);
  const span = length - tile;
  const starts: number[] = [];
  for (let i = 0; i < count; i++) starts.push(Math.round((i * span) / (count - 1)));
  return starts;
}

/**
 * Blend weight along one axis of a tile of output length `size`: 1 in the middle, a linear ramp
 * over the `rampBefore` first and `rampAfter` last pixels (the overlaps with the neighbours), never 0.
 */
export function axisWeights(size: number, rampBefore: number, rampAfter: number): Float32Array {
  const w = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    let v = 1;
    if (rampBefore > 0) v = Math.min(v, smoothstep((i + 0.5) / rampBefore));
    if (rampAfter > 0) v = Math.min(v, smoothstep((size - i - 0.5) / rampAfter));
    w[i] = v;
  }
  return w;
}

/**
 * 3t² − 2t³: like a linear ramp, s(t) + s(1 − t) = 1, so two neighbours' weights still add up to
 * 1, but it starts flat: the few pixels at a tile's edge, where the model saw padding instead of
 * the real neighbourhood, weigh almost nothing (0.003 for the first of 16 instead of 0.03).
 */
function smoothstep(t: number): number {
  if (t >= 1) return 1;
  return t * t * (3 - 2 * t);
}

export function checkTileOptions(options: TileOptions): void {
  const { scale, tileSize, overlap } = options;
  if (!Number.isInteger(scale) || scale < 1) throw appError('invalid_tiling', `model scale must be a positive integer, got ${scale}`);
  if (!Number.isInteger(tileSize) || tileSize < 16) throw appError('invalid_tiling', `tileSize must be an integer >= 16, got ${tileSize}`);
  if (!Number.isInteger(overlap) || overlap < 0 || overlap * 2 >= tileSize) {
    throw appError('invalid_tiling', `tileOverlap must be an integer >= 0 and less than half of tileSize (${tileSize}), got ${overlap}`);
  }
}

/**
 * 8-bit interleaved pixels read tile by tile as planar floats in [0,1], so a large frame never
 * needs a full float copy (4 bytes per value). `pick` selects the interleaved channels that make
 * the model's channels (e.g. [0,1,2] for the RGB of RGBA, [0,0,0] to feed grey as RGB).
 */
export interface ByteSource {
  kind: 'bytes';
  width: number;
  height: number;
  /** Interleaved channels per pixel in data. */
  stride: number;
  data: Uint8Array;
  pick: readonly number[];
}

export type TileSource = PlanarImage | ByteSource;

export function byteSource(data: Uint8Array, width: number, height: number, stride: number, pick: readonly number[]): ByteSource {
  if (data.length !== width * height * stride) throw new Error(`pixel buffer is ${data.length} bytes, expected ${width}x${height}x${stride}`);
  return { kind: 'bytes', width, height, stride, data, pick };
}

/** i clamped to [0, length − 1]: reads outside the image repeat its edge pixels. */
function clampIndex(i: number, length: number): number {
  return i < 0 ? 0 : i >= length ? length - 1 : i;
}

function sourceChannels(source: TileSource): number {
  return 'kind' in source ? source.pick.length : source.channels;
}

/** Copies the region (x0, y0, w, h) of `source` into a planar tile of tw × th, replicating edges where the tile is larger. */
export function extractTile(source: TileSource, x0: number, y0: number, w: number, h: number, tw = w, th = h): PlanarImage {
  const { width, height } = source;
  const channels = sourceChannels(source);
  const out = new Float32Array(channels * tw * th);
  for (let c = 0; c < channels; c++) {
    const outPlane = c * tw * th;
    for (let y = 0; y < th; y++) {
      const sy = clampIndex(y0 + Math.min(y, h - 1), height);
      const outRow = outPlane + y * tw;
      if ('kind' in source) {
        const { data, stride } = source;
        const base = sy * width * stride + source.pick[c];
        for (let x = 0; x < tw; x++) out[outRow + x] = data[base + clampIndex(x0 + Math.min(x, w - 1), width) * stride] / 255;
      } else {
        const row = c * width * height + sy * width;
        if (tw === w && x0 >= 0 && x0 + w <= width) {
          out.set(source.data.subarray(row + x0, row + x0 + w), outRow);
        } else {
          for (let x = 0; x < tw; x++) out[outRow + x] = source.data[row + clampIndex(x0 + Math.min(x, w - 1), width)];
        }
      }
    }
  }
  return { width: tw, height: th, channels, data: out };
}

/**
 * Runs `model` over `input` tile by tile and streams the blended output rows to `sink`.
 * Memory besides input and output: one band of (tileSize × scale) output rows, one tile in and out.
 */
export async function runTiled(input: TileSource, model: TileModel, options: TileOptions, sink: RowSink): Promise<void> {
  checkTileOptions(options);
  const pad = options.borderPad ?? 0;
  if (!Number.isInteger(pad) || pad < 0) throw appError('invalid_tiling', `borderPad must be an integer >= 0, got ${pad}`);
  if (pad === 0) return runTiledPadded(input, model, options, 0, sink);
  // Run over the padded image, hand on only the rows and columns of the real one.
  const { scale } = options;
  const outW = input.width * scale;
  const paddedW = (input.width + 2 * pad) * scale;
  const first = pad * scale;
  const last = (pad + input.height) * scale;
  const channels = sourceChannels(input);
  return runTiledPadded(input, model, options, pad, (firstRow, rows, block) => {
    const from = Math.max(firstRow, first);
    const to = Math.min(firstRow + rows, last);
    if (to <= from) return;
    const n = to - from;
    const cropped = new Float32Array(channels * n * outW);
    for (let c = 0; c < channels; c++) {
      for (let r = 0; r < n; r++) {
        const src = c * rows * paddedW + (from - firstRow + r) * paddedW + first;
        cropped.set(block.subarray(src, src + outW), c * n * outW + r * outW);
      }
    }
    sink(from - first, n, cropped);
  });
}

async function runTiledPadded(input: TileSource, model: TileModel, options: TileOptions, pad: number, sink: RowSink): Promise<void> {
  const { scale, tileSize, overlap, fixedTileSize = false, signal, onTile } = options;
  const width = input.width + 2 * pad;
  const height = input.height + 2 * pad;
  const channels = sourceChannels(input);
  const outW = width * scale;
  const xs = tileStarts(width, tileSize, overlap);
  const ys = tileStarts(height, tileSize, overlap);
  const tileW = Math.min(tileSize, width);
  const tileH = Math.min(tileSize, height);
  const outTileW = tileW * scale;
  const outTileH = tileH * scale;
  const bandRows = outTileH;
  const plane = bandRows * outW;
  const acc = new Float32Array(channels * plane);
  const weightSum = new Float32Array(plane);
  const total = xs.length * ys.length;
  let done = 0;

  // Column weights depend only on the tile's column; precompute them.
  const colWeights = xs.map((x, i) => axisWeights(outTileW,
    i > 0 ? (xs[i - 1] + tileW - x) * scale : 0,
    i < xs.length - 1 ? (x + tileW - xs[i + 1]) * scale : 0));

  /** Hands rows [0, rows) of the band to the sink (normalised), then moves the rest up. */
  const flush = (bandTop: number, rows: number): void => {
    const block = new Float32Array(channels * rows * outW);
    for (let c = 0; c < channels; c++) {
      for (let i = 0; i < rows * outW; i++) block[c * rows * outW + i] = acc[c * plane + i] / weightSum[i];
    }
    sink(bandTop, rows, block);
    for (let c = 0; c < channels; c++) {
      const base = c * plane;
      acc.copyWithin(base, base + rows * outW, base + plane);
      acc.fill(0, base + plane - rows * outW, base + plane);
    }
    weightSum.copyWithin(0, rows * outW, plane);
    weightSum.fill(0, plane - rows * outW, plane);
  };

  for (let r = 0; r < ys.length; r++) {
    const y = ys[r];
    if (r > 0) flush(ys[r - 1] * scale, (y - ys[r - 1]) * scale);
    const rowWeights = axisWeights(outTileH,
      r > 0 ? (ys[r - 1] + tileH - y) * scale : 0,
      r < ys.length - 1 ? (y + tileH - ys[r + 1]) * scale : 0);
    for (let i = 0; i < xs.length; i++) {
      signal?.throwIfAborted();
      const x = xs[i];
      const modelW = fixedTileSize ? tileSize : tileW;
      const modelH = fixedTileSize ? tileSize : tileH;
      const tile = extractTile(input, x - pad, y - pad, tileW, tileH, modelW, modelH);
      const out = await model(tile);
      if (out.width !== modelW * scale || out.height !== modelH * scale || out.channels !== channels) {
        throw new Error(`model gave ${out.channels}x${out.height}x${out.width} for a ${channels}x${modelH}x${modelW} tile at scale ${scale}`);
      }
      const cw = colWeights[i];
      const ox = x * scale;
      for (let ty = 0; ty < outTileH; ty++) {
        const wy = rowWeights[ty];
        const accRow = ty * outW + ox;
        for (let tx = 0; tx < outTileW; tx++) weightSum[accRow + tx] += wy * cw[tx];
        for (let c = 0; c < channels; c++) {
          const src = c * out.width * out.height + ty * out.width;
          const dst = c * plane + accRow;
          for (let tx = 0; tx < outTileW; tx++) acc[dst + tx] += wy * cw[tx] * out.data[src + tx];
        }
      }
      done++;
      onTile?.(done, total);
    }
  }
  flush(ys[ys.length - 1] * scale, bandRows);
}

/** runTiled into one planar float image (for images whose float output fits in memory, e.g. a face crop). */
export async function runTiledToPlanar(input: TileSource, model: TileModel, options: TileOptions): Promise<PlanarImage> {
  const outW = input.width * options.scale;
  const outH = input.height * options.scale;
  const channels = sourceChannels(input);
  const data = new Float32Array(channels * outW * outH);
  await runTiled(input, model, options, (firstRow, rows, block) => {
    for (let c = 0; c < channels; c++) {
      data.set(block.subarray(c * rows * outW, (c + 1) * rows * outW), c * outW * outH + firstRow * outW);
    }
  });
  return { width: outW, height: outH, channels, data };
}

/**
 * runTiled into interleaved 8-bit pixels (values clamped to [0,1], × 255, rounded). `target` has
 * `targetChannels` interleaved channels; the output's channels go to offsets 0..channels-1
 * (so an RGB result can be written into an RGBA frame whose alpha is filled separately).
 */
export async function runTiledToBytes(input: TileSource, model: TileModel, options: TileOptions,
  target?: { data: Buffer; channels: number }): Promise<Buffer> {
  const outW = input.width * options.scale;
  const outH = input.height * options.scale;
  const channels = sourceChannels(input);
  const stride = target?.channels ?? channels;
  const data = target?.data ?? Buffer.alloc(outW * outH * stride);
  await runTiled(input, model, options, (firstRow, rows, block) => {
    const n = rows * outW;
    for (let c = 0; c < channels; c++) {
      const src = c * n;
      let dst = firstRow * outW * stride + c;
      for (let i = 0; i < n; i++, dst += stride) data[dst] = toByte(block[src + i]);
    }
  });
  return data;
}

/** [0,1] float -> 0..255, clamped and rounded (NaN -> 0). */
export function toByte(v: number): number {
  const b = Math.round(v * 255);
  return b > 255 ? 255 : b >= 0 ? b : 0;
}

/**
 * Interleaved 8-bit pixels -> planar float [0,1], taking channels `pick` (indices into the
 * interleaved pixel, e.g. [0,1,2] for the RGB of RGBA, [0,0,0] to repeat grey as RGB).
 */
export function bytesToPlanar(data: Uint8Array, width: number, height: number, channels: number, pick: readonly number[]): PlanarImage {
  const n = width * height;
  const out = new Float32Array(pick.length * n);
  for (let c = 0; c < pick.length; c++) {
    const base = c * n;
    const off = pick[c];
    for (let i = 0, s = off; i < n; i++, s += channels) out[base + i] = data[s] / 255;
  }
  return { width, height, channels: pick.length, data: out };
}
