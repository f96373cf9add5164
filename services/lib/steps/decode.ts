/**
 * decode: the uploaded bytes -> a raw frame the other steps work on.
 * EXIF orientation is applied (boxes and pixels are then in the orientation the user sees),
 * colour is converted to sRGB (grey stays grey), alpha is kept, animations give their first frame.
 */
import type { Metadata, Sharp, SharpOptions } from 'sharp';
import { loadConfig } from '../shared/config.js';
import { appError } from '../shared/errors.js';
import type { DecodeParamsResolved } from '../shared/schema-types.js';
import type { Frame } from '../pipeline/frame.js';
import type { StageDefinition } from '../pipeline/stage.js';

const DECODABLE = new Set(['jpeg', 'png', 'webp', 'avif', 'heif', 'tiff', 'gif']);

export const stage: StageDefinition<DecodeParamsResolved, 'encoded'> = {
  step: 'decode',
  version: '1.0.0',
  input: 'encoded',
  output: 'frame',
  produces: { image: {} },
  async prepare({ config = loadConfig() }) {
    const sharp = (await import('sharp')).default;
    return {
      async run({ encoded }, params) {
        const maxPixels = Math.min(params.maxPixels ?? config.maxInputPixels, config.maxInputPixels);
        const header = await readHeader(sharp, encoded.bytes);
        if (!header.format || !DECODABLE.has(header.format)) {
          throw appError('unsupported_format', `images of format "${header.format}" are not supported; send JPEG, PNG, WebP, AVIF, TIFF or GIF`);
        }
        const pixels = (header.width ?? 0) * (header.height ?? 0);
        if (pixels > maxPixels) {
          throw appError('image_too_large', `image is ${header.width}x${header.height} (${pixels} pixels); the limit is ${maxPixels} pixels`,
            { details: { width: header.width, height: header.height, maxPixels } });
        }
        const grey = header.space === 'b-w' || header.space === 'grey16';
        try {
          // Grey stays grey. sharp's b-w conversion drops alpha, so grey+alpha is decoded as
          // RGBA and its (equal) colour channels folded back into one.
          const greyAlpha = grey && header.hasAlpha === true;
          const { data, info } = await sharp(encoded.bytes, { pages: 1, limitInputPixels: maxPixels, failOn: 'error' })
            .rotate()
            .toColourspace(grey && !greyAlpha ? 'b-w' : 'srgb')
            .raw({ depth: 'uchar' })
            .toBuffer({ resolveWithObject: true });
          const frame: Frame = greyAlpha && info.channels === 4
            ? { width: info.width, height: info.height, channels: 2, data: foldGreyAlpha(data) }
            : { width: info.width, height: info.height, channels: info.channels as Frame['channels'], data };
          return {
            frame,
            findings: {
              image: {
                format: header.format,
                width: info.width,
                height: info.height,
                channels: frame.channels,
                orientation: header.orientation ?? 1,
                hasAlpha: frame.channels === 2 || frame.channels === 4,
              },
            },
          };
        } catch (error) {
          throw appError('undecodable_image', `the image could not be decoded: ${(error as Error).message}`);
        }
      },
    };
  },
};

function foldGreyAlpha(rgba: Buffer): Buffer {
  const out = Buffer.allocUnsafe(rgba.length / 2);
  for (let i = 0, o = 0; i < rgba.length; i += 4, o += 2) {
    out[o] = rgba[i]!;
    out[o + 1] = rgba[i + 3]!;
  }
  return out;
}

type SharpFactory = (input: Buffer, options?: SharpOptions) => Sharp;

async function readHeader(sharp: SharpFactory, bytes: Buffer): Promise<Metadata> {
  try {
    // metadata() reads the header only: the pixel limit is checked before any full decode.
    return await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (error) {
    throw appError('undecodable_image', `the upload is not a readable image: ${(error as Error).message}`);
  }
}
