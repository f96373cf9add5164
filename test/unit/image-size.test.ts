/**
 * The edge's header reader agrees with sharp on real photos in every format it reads, and
 * gives null (so the edge asks sharp) for other formats and for broken or truncated headers.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import sharp from 'sharp';
import { imageSize } from '../../services/lib/imaging/image-size.js';
import { fixture } from '../helpers/paths.js';

const PHOTOS = ['dog.jpg', 'messi5.jpg', 'basketball1.png', 'baboon.jpg'];

test('JPEG (baseline, progressive, with EXIF), PNG, GIF and WebP (lossy, lossless, with alpha) give sharp\'s size', async () => {
  for (const name of PHOTOS) {
    const source = sharp(readFileSync(fixture(name))).resize({ width: 333 });
    const variants: [string, Buffer][] = [
      ['jpeg', await source.clone().jpeg().toBuffer()],
      ['jpeg progressive', await source.clone().jpeg({ progressive: true }).toBuffer()],
      ['jpeg with EXIF orientation', await source.clone().jpeg().withMetadata({ orientation: 6 }).toBuffer()],
      ['png', await source.clone().png().toBuffer()],
      ['gif', await source.clone().gif().toBuffer()],
      ['webp lossy', await source.clone().webp().toBuffer()],
      ['webp lossless', await source.clone().webp({ lossless: true }).toBuffer()],
      ['webp with alpha', await source.clone().ensureAlpha(0.5).webp().toBuffer()],
    ];
    for (const [what, bytes] of variants) {
      const meta = await sharp(bytes).metadata();
      const size = imageSize(bytes);
      assert.ok(size, `${name} ${what}: read`);
      assert.deepEqual([size.width, size.height], [meta.width, meta.height], `${name} ${what}`);
      assert.equal(size.format, what.split(' ')[0]);
    }
  }
  const original = readFileSync(fixture('dog.jpg'));
  const meta = await sharp(original).metadata();
  assert.deepEqual({ ...imageSize(original) }, { format: 'jpeg', width: meta.width, height: meta.height });
});

test('other formats, garbage and truncated headers give null', async () => {
  const dog = sharp(readFileSync(fixture('dog.jpg'))).resize({ width: 64 });
  assert.equal(imageSize(await dog.clone().tiff().toBuffer()), null);
  assert.equal(imageSize(await dog.clone().avif().toBuffer()), null);
  assert.equal(imageSize(Buffer.from('not an image at all')), null);
  assert.equal(imageSize(Buffer.from('GIF89a but not really')), null);
  assert.equal(imageSize(Buffer.from('\x89PNG\r\n\x1a\n\0\0\0\x0dIHDX\0\0\0\x10\0\0\0\x10', 'latin1')), null);
  assert.equal(imageSize(Buffer.alloc(0)), null);
  for (const format of ['jpeg', 'png', 'webp'] as const) {
    const bytes = await dog.clone().toFormat(format).toBuffer();
    for (const cut of [2, 5, 12, 20]) assert.equal(imageSize(bytes.subarray(0, cut)), null, `${format} cut at ${cut}`);
  }
  // A JPEG whose segments run past the end before any frame header.
  assert.equal(imageSize(Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x40, 0x00, 0x00])), null);
});
