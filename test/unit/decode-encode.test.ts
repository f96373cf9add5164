/** The decode and encode stage functions on real and generated images (sharp, no bus). */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import sharp from 'sharp';
import { pino } from 'pino';
import { stage as decodeStage } from '../../services/lib/steps/decode.js';
import { stage as encodeStage, outputFormatFor } from '../../services/lib/steps/encode.js';
import type { Frame } from '../../services/lib/pipeline/frame.js';
import { AppError } from '../../services/lib/shared/errors.js';
import { fixture } from '../helpers/paths.js';
import { stepContext } from '../helpers/steps.js';

const log = pino({ level: 'silent' });
const ctx = (findings = {}) => stepContext(findings, { log });
const decoder = decodeStage.prepare({ log, modelsDir: '' });
const encoder = encodeStage.prepare({ log, modelsDir: '' });

async function decode(bytes: Buffer, params = {}) {
  return (await decoder).run({ encoded: { bytes, format: '', contentType: '' } }, params, ctx());
}

async function refusal(bytes: Buffer, params = {}): Promise<AppError> {
  try {
    await decode(bytes, params);
  } catch (error) {
    assert.ok(error instanceof AppError);
    return error;
  }
  throw new Error('decode accepted the input');
}

const gradient = (w: number, h: number, channels: number) =>
  Buffer.from(Array.from({ length: w * h * channels }, (_, i) => (i * 7) % 256));

test('JPEG, PNG, WebP, AVIF, TIFF and GIF decode to frames of the right size', async () => {
  const rgb = sharp(gradient(40, 30, 3), { raw: { width: 40, height: 30, channels: 3 } });
  for (const format of ['jpeg', 'png', 'webp', 'avif', 'tiff', 'gif'] as const) {
    const bytes = await rgb.clone().toFormat(format).toBuffer();
    const { frame, findings } = await decode(bytes);
    assert.deepEqual([frame!.width, frame!.height], [40, 30], format);
    assert.equal(findings!.image!.format, format === 'avif' ? 'heif' : format);
    assert.equal(frame!.data.length, 40 * 30 * frame!.channels);
  }
});

test('EXIF orientation is applied: the frame is as the user sees it', async () => {
  const upright = await sharp(gradient(60, 20, 3), { raw: { width: 60, height: 20, channels: 3 } }).jpeg().toBuffer();
  // Stored 20x60 with orientation 6 (rotate 90 clockwise to view) = 60x20 when viewed.
  const stored = await sharp(upright).rotate(-90).withMetadata({ orientation: 6 }).jpeg().toBuffer();
  const { frame, findings } = await decode(stored);
  assert.deepEqual([frame!.width, frame!.height], [60, 20]);
  assert.equal(findings!.image!.orientation, 6);
});

test('alpha is kept; grey stays grey (with or without alpha)', async () => {
  const rgba = await sharp(gradient(16, 16, 4), { raw: { width: 16, height: 16, channels: 4 } }).png().toBuffer();
  assert.equal((await decode(rgba)).frame!.channels, 4);
  const grey = await sharp(gradient(16, 16, 1), { raw: { width: 16, height: 16, channels: 1 } }).toColourspace('b-w').png().toBuffer();
  const greyFrame = (await decode(grey)).frame!;
  assert.equal(greyFrame.channels, 1);
  assert.ok(greyFrame.data.equals(gradient(16, 16, 1)));
  const ga = Buffer.alloc(16 * 16 * 2);
  for (let i = 0; i < 256; i++) {
    ga[i * 2] = i;
    ga[i * 2 + 1] = 255 - i;
  }
  const greyAlpha = await sharp(ga, { raw: { width: 16, height: 16, channels: 2 } }).toColourspace('b-w').png().toBuffer();
  const meta = await sharp(greyAlpha).metadata();
  const frame = (await decode(greyAlpha)).frame!;
  if (meta.space === 'b-w' && meta.hasAlpha) {
    assert.equal(frame.channels, 2);
    assert.ok(frame.data.equals(ga), 'grey and alpha values survive');
  } else {
    assert.equal(frame.channels, 4, 'sharp wrote RGBA: alpha is kept');
  }
});

test('too many pixels are refused from the header; undecodable and unsupported input get clear codes', async () => {
  const big = await sharp({ create: { width: 3000, height: 2000, channels: 3, background: '#808080' } }).jpeg().toBuffer();
  const tooLarge = await refusal(big, { maxPixels: 1_000_000 });
  assert.equal(tooLarge.code, 'image_too_large');
  assert.equal(tooLarge.retryable, false);
  assert.match(tooLarge.message, /3000x2000/);
  assert.equal((await refusal(Buffer.from('definitely not an image'))).code, 'undecodable_image');
  const jpeg = readFileSync(fixture('dog.jpg'));
  assert.equal((await refusal(jpeg.subarray(0, 3000))).code, 'undecodable_image');
  const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>');
  assert.equal((await refusal(svg)).code, 'unsupported_format');
});

test('encode writes each format with its content type; the default is the input format', async () => {
  const frame: Frame = { width: 32, height: 24, channels: 4, data: gradient(32, 24, 4) };
  for (const format of ['jpeg', 'png', 'webp', 'avif'] as const) {
    const { encoded } = await (await encoder).run({ frame }, { format, quality: 80 }, ctx());
    assert.equal(encoded!.contentType, `image/${format}`);
    const meta = await sharp(encoded!.bytes).metadata();
    assert.deepEqual([meta.width, meta.height], [32, 24]);
    assert.equal(meta.format, format === 'avif' ? 'heif' : format);
    if (format === 'jpeg') assert.equal(meta.hasAlpha, false, 'JPEG is flattened');
    if (format === 'png') assert.equal(meta.hasAlpha, true, 'PNG keeps alpha');
  }
  assert.equal(outputFormatFor('input', 'webp'), 'webp');
  assert.equal(outputFormatFor(undefined, 'gif'), 'png');
  assert.equal(outputFormatFor('input', 'heif'), 'avif');
  const { encoded } = await (await encoder).run({ frame }, { format: 'input' }, ctx({ image: { format: 'jpeg' } }));
  assert.equal(encoded!.contentType, 'image/jpeg');
});
