/**
 * Small pixel operations the restore stages share: resampling with sharp, splitting colour from
 * alpha, grey <-> RGB. All on 8-bit interleaved frames (see runner/frame.ts).
 */
import sharp from 'sharp';
import type { Frame } from '../pipeline/frame.js';

export type ResizeKernel = 'lanczos3' | 'cubic' | 'mitchell' | 'linear' | 'nearest';

/** Resamples 8-bit interleaved pixels to exactly width × height (no cropping, no colour conversion). */
export async function resizePixels(data: Buffer, width: number, height: number, channels: 1 | 2 | 3 | 4,
  toWidth: number, toHeight: number, kernel: ResizeKernel): Promise<Buffer> {
  if (toWidth === width && toHeight === height) return Buffer.from(data);
  let pipeline = sharp(data, { raw: { width, height, channels }, limitInputPixels: false }).resize(toWidth, toHeight, { fit: 'fill', kernel });
  // Without this sharp writes one-channel input back out as sRGB (3 channels).
  if (channels <= 2) pipeline = pipeline.toColourspace('b-w');
  const { data: out, info } = await pipeline
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.width !== toWidth || info.height !== toHeight || info.channels !== channels) {
    throw new Error(`resize gave ${info.width}x${info.height}x${info.channels}, expected ${toWidth}x${toHeight}x${channels}`);
  }
  return out;
}

/** The colour channels (1 grey or 3 RGB) and, when present, the alpha channel of a frame. */
export function splitAlpha(frame: Frame): { colour: Buffer; colourChannels: 1 | 3; alpha?: Buffer } {
  const { channels, data } = frame;
  if (channels === 1 || channels === 3) return { colour: data, colourChannels: channels };
  const colourChannels = channels === 2 ? 1 : 3;
  const n = frame.width * frame.height;
  const colour = Buffer.alloc(n * colourChannels);
  const alpha = Buffer.alloc(n);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < colourChannels; c++) colour[i * colourChannels + c] = data[i * channels + c];
    alpha[i] = data[i * channels + colourChannels];
  }
  return { colour, colourChannels, alpha };
}

/** Inverse of splitAlpha. */
export function joinAlpha(colour: Buffer, colourChannels: 1 | 3, alpha: Buffer | undefined, width: number, height: number): Frame {
  if (!alpha) return { width, height, channels: colourChannels, data: colour };
  const channels = (colourChannels + 1) as 2 | 4;
  const n = width * height;
  const data = Buffer.alloc(n * channels);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < colourChannels; c++) data[i * channels + c] = colour[i * colourChannels + c];
    data[i * channels + colourChannels] = alpha[i];
  }
  return { width, height, channels, data };
}

/** RGB -> grey by averaging (for grey images run through RGB models: R = G = B going in). */
export function rgbToGreyMean(rgb: Buffer): Buffer {
  const n = rgb.length / 3;
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) out[i] = Math.round((rgb[3 * i] + rgb[3 * i + 1] + rgb[3 * i + 2]) / 3);
  return out;
}

