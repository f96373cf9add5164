/**
 * Pre- and post-processing shared by every model step: frame -> RGB, resize / letterbox,
 * HWC uint8 -> NCHW (or NHWC) float32 with the model's colour order, scale, mean and std,
 * and back from NCHW float to HWC uint8.
 *
 * The normalisation convention follows the manifest's contract: a pixel p in 0..255 is fed as
 * (p * scale - mean[c]) / std[c], c counted in the model's colour order. So:
 *   [0,1] RGB (super-resolution): scale 1/255, mean 0, std 1
 *   [-1,1] RGB (GFPGAN, BlazeFace): scale 1/127.5, mean 1, std 1
 *   BGR 0..255 (YOLOX, YuNet): scale 1, mean 0, std 1, colourOrder BGR
 */
import { ort, type Ort } from './onnx.js';
import sharp, { type KernelEnum } from 'sharp';
import type { Frame } from '../pipeline/frame.js';
import type { Box } from '../shared/schema-types.js';
import { appError } from '../shared/errors.js';
import type { LoadedModel } from './runtime.js';

/** A packed 3-channel RGB image, 8-bit, rows top to bottom. */
export interface RgbImage {
  width: number;
  height: number;
  data: Buffer;
}

export interface Background {
  r: number;
  g: number;
  b: number;
}

const WHITE: Background = { r: 255, g: 255, b: 255 };

/**
 * Any frame (grey, grey+alpha, RGB, RGBA) as packed RGB. Grey is replicated to three channels;
 * alpha is composited over `background` (white by default) so that transparent pixels, whose
 * colour values are often garbage, do not show up to the model as black shapes.
 */
export function frameToRgb(frame: Frame, background: Background = WHITE): RgbImage {
  const { width, height, channels, data } = frame;
  const pixels = width * height;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1 || data.length !== pixels * channels) {
    throw appError('frame_size_mismatch', `frame is ${data.length} bytes, expected ${width}x${height}x${channels}`);
  }
  if (channels === 3) return { width, height, data };
  const out = Buffer.allocUnsafe(pixels * 3);
  for (let i = 0; i < pixels; i++) {
    let r: number, g: number, b: number, a = 255;
    if (channels === 1 || channels === 2) {
      r = g = b = data[i * channels];
      if (channels === 2) a = data[i * 2 + 1];
    } else {
      r = data[i * 4];
      g = data[i * 4 + 1];
      b = data[i * 4 + 2];
      a = data[i * 4 + 3];
    }
    if (a !== 255) {
      const t = a / 255;
      r = r * t + background.r * (1 - t);
      g = g * t + background.g * (1 - t);
      b = b * t + background.b * (1 - t);
    }
    out[i * 3] = r;
    out[i * 3 + 1] = g;
    out[i * 3 + 2] = b;
  }
  return { width, height, data: out };
}

/** Resizes an RGB image to exactly width x height (no aspect kept) with sharp. */
export async function resizeRgb(image: RgbImage, width: number, height: number, kernel: keyof KernelEnum = 'linear'): Promise<RgbImage> {
  if (image.width === width && image.height === height) return image;
  const { data, info } = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .resize(width, height, { fit: 'fill', kernel })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data };
}

/**
 * Where an image of srcWidth x srcHeight lands inside a dstWidth x dstHeight model input when
 * resized with its aspect ratio kept and the rest padded.
 * `align: 'topLeft'` pads right and bottom (YOLOX's convention); 'center' pads evenly.
 */
export interface LetterboxGeometry {
  /** model pixels per source pixel */
  scale: number;
  padX: number;
  padY: number;
  /** size of the resized image inside the input */
  resizedWidth: number;
  resizedHeight: number;
  targetWidth: number;
  targetHeight: number;
  sourceWidth: number;
  sourceHeight: number;
}

export function letterboxGeometry(sourceWidth: number, sourceHeight: number, targetWidth: number, targetHeight: number,
  align: 'topLeft' | 'center' = 'topLeft'): LetterboxGeometry {
  const scale = Math.min(targetWidth / sourceWidth, targetHeight / sourceHeight);
  const resizedWidth = Math.max(1, Math.min(targetWidth, Math.round(sourceWidth * scale)));
  const resizedHeight = Math.max(1, Math.min(targetHeight, Math.round(sourceHeight * scale)));
  const padX = align === 'center' ? Math.floor((targetWidth - resizedWidth) / 2) : 0;
  const padY = align === 'center' ? Math.floor((targetHeight - resizedHeight) / 2) : 0;
  return { scale, padX, padY, resizedWidth, resizedHeight, targetWidth, targetHeight, sourceWidth, sourceHeight };
}

/** A geometry for a plain (aspect-changing) resize, so stretch and letterbox share the mapping code. */
export function stretchGeometry(sourceWidth: number, sourceHeight: number, targetWidth: number, targetHeight: number): LetterboxGeometry & { scaleY: number } {
  return { scale: targetWidth / sourceWidth, scaleY: targetHeight / sourceHeight, padX: 0, padY: 0, resizedWidth: targetWidth,
    resizedHeight: targetHeight, targetWidth, targetHeight, sourceWidth, sourceHeight };
}

/** Maps a point from model-input pixels back to source pixels (not clamped). */
export function toSourcePoint(x: number, y: number, g: LetterboxGeometry & { scaleY?: number }): [number, number] {
  return [(x - g.padX) / g.scale, (y - g.padY) / (g.scaleY ?? g.scale)];
}

/** Maps a model-input box (corners) to a source-pixel Box, clamped to the image. */
export function toSourceBox(x1: number, y1: number, x2: number, y2: number, g: LetterboxGeometry & { scaleY?: number }): Box {
  const [ax, ay] = toSourcePoint(x1, y1, g);
  const [bx, by] = toSourcePoint(x2, y2, g);
  const left = clamp(Math.min(ax, bx), 0, g.sourceWidth);
  const top = clamp(Math.min(ay, by), 0, g.sourceHeight);
  const right = clamp(Math.max(ax, bx), 0, g.sourceWidth);
  const bottom = clamp(Math.max(ay, by), 0, g.sourceHeight);
  return { x: round2(left), y: round2(top), width: round2(right - left), height: round2(bottom - top) };
}

/**
 * Resizes with the aspect ratio kept and pads to targetWidth x targetHeight with `padValue`
 * (one grey level or an RGB triple). Returns the padded image and the geometry to map results back.
 */
export async function letterbox(image: RgbImage, targetWidth: number, targetHeight: number,
  options: { padValue?: number | [number, number, number]; align?: 'topLeft' | 'center' } = {}): Promise<{ image: RgbImage; geometry: LetterboxGeometry }> {
  const geometry = letterboxGeometry(image.width, image.height, targetWidth, targetHeight, options.align);
  const resized = await resizeRgb(image, geometry.resizedWidth, geometry.resizedHeight);
  const padded = padRgb(resized, targetWidth, targetHeight, { left: geometry.padX, top: geometry.padY, padValue: options.padValue ?? 0 });
  return { image: padded, geometry };
}

/**
 * Places an image into a larger canvas at (left, top). The rest is `padValue` or, with
 * `mode: 'edge'`, a copy of the nearest border pixel (better for image-to-image models,
 * which would otherwise bleed a black frame into the border of their output).
 */
export function padRgb(image: RgbImage, width: number, height: number,
  options: { left?: number; top?: number; padValue?: number | [number, number, number]; mode?: 'constant' | 'edge' } = {}): RgbImage {
  const left = options.left ?? 0;
  const top = options.top ?? 0;
  if (width === image.width && height === image.height && left === 0 && top === 0) return image;
  if (left < 0 || top < 0 || left + image.width > width || top + image.height > height) {
    throw new RangeError(`cannot pad ${image.width}x${image.height} at ${left},${top} into ${width}x${height}`);
  }
  const out = Buffer.allocUnsafe(width * height * 3);
  const srcRow = image.width * 3;
  if ((options.mode ?? 'constant') === 'constant') {
    const pad = options.padValue ?? 0;
    const [r, g, b] = typeof pad === 'number' ? [pad, pad, pad] : pad;
    if (r === g && g === b) out.fill(r);
    else for (let i = 0; i < width * height; i++) { out[i * 3] = r; out[i * 3 + 1] = g; out[i * 3 + 2] = b; }
    for (let y = 0; y < image.height; y++) image.data.copy(out, ((top + y) * width + left) * 3, y * srcRow, (y + 1) * srcRow);
    return { width, height, data: out };
  }
  for (let y = 0; y < height; y++) {
    const sy = clamp(y - top, 0, image.height - 1);
    for (let x = 0; x < width; x++) {
      const sx = clamp(x - left, 0, image.width - 1);
      const s = (sy * image.width + sx) * 3;
      const d = (y * width + x) * 3;
      out[d] = image.data[s];
      out[d + 1] = image.data[s + 1];
      out[d + 2] = image.data[s + 2];
    }
  }
  return { width, height, data: out };
}


export interface NormalizeOptions {
  /** Channel order the model expects. GRAY and Y feed one channel (BT.601 luma). */
  colourOrder: 'RGB' | 'BGR' | 'GRAY' | 'Y';
  /** Multiplier on 0..255 pixels before mean/std. Default 1. */
  scale?: number;
  /** Per channel (in colourOrder) or one value for all; subtracted after scale. Default 0. */
  mean?: readonly number[];
  /** Per channel or one value; divides after mean. Default 1. */
  std?: readonly number[];
  /** Tensor layout. Default NCHW. */
  layout?: 'NCHW' | 'NHWC';
}

const isGrey = (options: NormalizeOptions) => options.colourOrder === 'GRAY' || options.colourOrder === 'Y';

/** How many values the image's tensor holds under these options. */
function tensorLength(image: RgbImage, options: NormalizeOptions): number {
  return image.width * image.height * (isGrey(options) ? 1 : 3);
}

/**
 * Packed RGB uint8 -> float32 tensor data of shape [1, C, H, W] (or [1, H, W, C]), with the
 * model's colour order and normalisation. One pass, precomputed per-channel affine factors.
 */
export function rgbToTensorData(image: RgbImage, options: NormalizeOptions, out?: Float32Array): Float32Array {
  const { width, height, data } = image;
  const pixels = width * height;
  const grey = isGrey(options);
  const length = tensorLength(image, options);
  const result = out ?? new Float32Array(length);
  if (result.length !== length) throw new RangeError(`tensor buffer holds ${result.length} values, need ${length}`);
  const scale = options.scale ?? 1;
  const mean = options.mean ?? [0];
  const std = options.std ?? [1];
  // value = p * a[c] + b[c]
  const a = [0, 1, 2].map((c) => scale / (std[c] ?? std[0]));
  const b = [0, 1, 2].map((c) => -(mean[c] ?? mean[0]) / (std[c] ?? std[0]));
  const nhwc = options.layout === 'NHWC';
  if (grey) {
    for (let i = 0; i < pixels; i++) {
      const y = 0.299 * data[i * 3] + 0.587 * data[i * 3 + 1] + 0.114 * data[i * 3 + 2];
      result[i] = y * a[0] + b[0];
    }
    return result;
  }
  // source channel for each model channel
  const order = options.colourOrder === 'BGR' ? [2, 1, 0] : [0, 1, 2];
  if (nhwc) {
    for (let i = 0; i < pixels; i++) {
      for (let c = 0; c < 3; c++) result[i * 3 + c] = data[i * 3 + order[c]] * a[c] + b[c];
    }
  } else {
    // One pass over the packed pixels writing the three planes: reading the source three times
    // with a stride of 3 took 1.6-2.7x as long here (5.2 against 1.9-3.2 ms for 640x640).
    const [s0, s1, s2] = order as [number, number, number];
    const [a0, a1, a2] = a as [number, number, number];
    const [b0, b1, b2] = b as [number, number, number];
    const p1 = pixels;
    const p2 = 2 * pixels;
    for (let i = 0, s = 0; i < pixels; i++, s += 3) {
      result[i] = data[s + s0]! * a0 + b0;
      result[p1 + i] = data[s + s1]! * a1 + b1;
      result[p2 + i] = data[s + s2]! * a2 + b2;
    }
  }
  return result;
}

/** rgbToTensorData wrapped in an ort Tensor with the right dims (over `out` when given). */
export function rgbToTensor(image: RgbImage, options: NormalizeOptions, out?: Float32Array): Ort.Tensor {
  const data = rgbToTensorData(image, options, out);
  const channels = isGrey(options) ? 1 : 3;
  const dims = options.layout === 'NHWC' ? [1, image.height, image.width, channels] : [1, channels, image.height, image.width];
  return new (ort().Tensor)('float32', data, dims);
}

/**
 * Runs the model on one image as its contract says (colour order, normalisation; `layout` for
 * the models that take NHWC), on its first input. The input tensor's buffer is reused from run
 * to run: a new 2-5 MB Float32Array per run costs its zero fill and, as memory outside V8's heap
 * that only a full collection frees, adds to the external-memory growth that makes V8 run one
 * every few jobs (BENCHMARKS.md). A buffer serves one run at a time, so concurrent runs never
 * share one.
 */
export async function runOnImage(model: LoadedModel, image: RgbImage, layout?: NormalizeOptions['layout']): Promise<Record<string, Ort.Tensor>> {
  const { contract } = model.entry;
  const options: NormalizeOptions = { colourOrder: contract.colourOrder, scale: contract.scale, mean: contract.mean, std: contract.std, ...(layout ? { layout } : {}) };
  let buffers = inputBuffers.get(model);
  if (!buffers) inputBuffers.set(model, (buffers = new TensorBuffers()));
  const data = buffers.take(tensorLength(image, options));
  try {
    return await model.run({ [model.inputNames[0]!]: rgbToTensor(image, options, data) });
  } finally {
    buffers.give(data); // the run has read it; the outputs are ONNX Runtime's own
  }
}

/** Free input buffers of one model, by length (dynamic-size models bucket their inputs). */
class TensorBuffers {
  private readonly free: Float32Array[] = [];

  take(length: number): Float32Array {
    const i = this.free.findIndex((buffer) => buffer.length === length);
    return i >= 0 ? this.free.splice(i, 1)[0]! : new Float32Array(length);
  }

  give(buffer: Float32Array): void {
    if (this.free.length < 2) this.free.push(buffer);
  }
}

const inputBuffers = new WeakMap<LoadedModel, TensorBuffers>();

/**
 * NCHW float data (one image, `channels` planes of width x height) -> packed HWC uint8, inverting
 * the same (p * scale - mean) / std convention, rounding and clamping to 0..255. `colourOrder`
 * is the model's order; the output is always RGB (or one grey channel for GRAY / Y).
 */
export function tensorDataToHwc(data: Float32Array, width: number, height: number, options: NormalizeOptions): Buffer {
  const grey = isGrey(options);
  const channels = grey ? 1 : 3;
  const pixels = width * height;
  if (data.length < pixels * channels) throw new RangeError(`tensor holds ${data.length} values, need ${pixels * channels}`);
  const scale = options.scale ?? 1;
  const mean = options.mean ?? [0];
  const std = options.std ?? [1];
  const out = Buffer.allocUnsafe(pixels * channels);
  const order = options.colourOrder === 'BGR' ? [2, 1, 0] : [0, 1, 2];
  for (let c = 0; c < channels; c++) {
    // p = (v * std + mean) / scale
    const s = (std[c] ?? std[0]) / scale;
    const m = (mean[c] ?? mean[0]) / scale;
    const dst = order[c];
    const plane = c * pixels;
    for (let i = 0; i < pixels; i++) {
      const v = data[plane + i] * s + m;
      out[i * channels + (grey ? 0 : dst)] = v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
    }
  }
  return out;
}

export function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}

function round2(v: number): number {
  return Math.round(v * 100) / 100;
}

export function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}
