import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  frameToRgb, letterbox, letterboxGeometry, padRgb, rgbToTensor, rgbToTensorData, stretchGeometry, tensorDataToHwc, toSourceBox, toSourcePoint,
} from '../../services/lib/models/tensor.js';
import { bucketSize, padToBucket } from '../../services/lib/models/runtime.js';

test('letterbox geometry: landscape into a square pads the bottom, scale from the long side', () => {
  const g = letterboxGeometry(768, 576, 416, 416);
  assert.equal(g.scale, 416 / 768);
  assert.equal(g.resizedWidth, 416);
  assert.equal(g.resizedHeight, 312);
  assert.equal(g.padX, 0);
  assert.equal(g.padY, 0);
  const centred = letterboxGeometry(768, 576, 416, 416, 'center');
  assert.equal(centred.padY, 52);
  assert.equal(centred.padX, 0);
});

test('letterbox geometry: portrait into a square pads the side; upscaling small images', () => {
  const g = letterboxGeometry(300, 600, 640, 640, 'center');
  assert.equal(g.scale, 640 / 600);
  assert.equal(g.resizedWidth, 320);
  assert.equal(g.padX, 160);
  const small = letterboxGeometry(100, 50, 640, 640);
  assert.equal(small.scale, 6.4);
  assert.equal(small.resizedHeight, 320);
});

test('model-input boxes map back to source pixels and are clamped to the image', () => {
  const g = letterboxGeometry(800, 400, 400, 400, 'center'); // scale 0.5, padY 100
  assert.deepEqual(toSourcePoint(200, 200, g), [400, 200]);
  assert.deepEqual(toSourceBox(100, 150, 200, 250, g), { x: 200, y: 100, width: 200, height: 200 });
  assert.deepEqual(toSourceBox(-10, 90, 410, 320, g), { x: 0, y: 0, width: 800, height: 400 });
  const s = stretchGeometry(640, 480, 320, 240);
  assert.deepEqual(toSourceBox(10, 20, 30, 40, s), { x: 20, y: 40, width: 40, height: 40 });
  const s2 = stretchGeometry(100, 400, 200, 200);
  assert.deepEqual(toSourcePoint(100, 100, s2), [50, 200]);
});

test('letterbox pads with the pad value and keeps the picture in the top-left', async () => {
  const red = { width: 4, height: 2, data: Buffer.from(Array.from({ length: 8 }, () => [255, 0, 0]).flat()) };
  const { image, geometry } = await letterbox(red, 8, 8, { padValue: 114 });
  assert.equal(geometry.scale, 2);
  assert.equal(image.width, 8);
  assert.deepEqual([...image.data.subarray(0, 3)], [255, 0, 0]);
  const below = (5 * 8 + 0) * 3;
  assert.deepEqual([...image.data.subarray(below, below + 3)], [114, 114, 114]);
});

test('frameToRgb: grey, grey+alpha, RGBA (alpha over white) and bad sizes', () => {
  assert.deepEqual([...frameToRgb({ width: 2, height: 1, channels: 1, data: Buffer.from([10, 200]) }).data], [10, 10, 10, 200, 200, 200]);
  assert.deepEqual([...frameToRgb({ width: 1, height: 1, channels: 2, data: Buffer.from([0, 0]) }).data], [255, 255, 255]);
  assert.deepEqual([...frameToRgb({ width: 2, height: 1, channels: 4, data: Buffer.from([255, 0, 0, 255, 0, 0, 255, 0]) }).data], [255, 0, 0, 255, 255, 255]);
  const rgb = Buffer.from([1, 2, 3]);
  assert.equal(frameToRgb({ width: 1, height: 1, channels: 3, data: rgb }).data, rgb, 'RGB passes through without a copy');
  assert.throws(() => frameToRgb({ width: 2, height: 2, channels: 3, data: Buffer.alloc(5) }), { code: 'frame_size_mismatch' });
});

test('rgbToTensorData: NCHW planes in BGR order with mean/std', () => {
  const img = { width: 2, height: 1, data: Buffer.from([10, 20, 30, 40, 50, 60]) };
  assert.deepEqual([...rgbToTensorData(img, { colourOrder: 'RGB' })], [10, 40, 20, 50, 30, 60]);
  assert.deepEqual([...rgbToTensorData(img, { colourOrder: 'BGR' })], [30, 60, 20, 50, 10, 40]);
  const norm = rgbToTensorData(img, { colourOrder: 'BGR', mean: [30, 20, 10], std: [2, 4, 5] });
  assert.deepEqual([...norm], [0, 15, 0, 7.5, 0, 6]);
  const unit = rgbToTensorData({ width: 1, height: 1, data: Buffer.from([0, 127.5, 255]) }, { colourOrder: 'RGB', scale: 1 / 127.5, mean: [1], std: [1] });
  assert.deepEqual([...unit].map((v) => Math.round(v * 1000) / 1000), [-1, -0.004, 1]);
});

test('rgbToTensor: NHWC layout and grey luma', () => {
  const img = { width: 2, height: 1, data: Buffer.from([10, 20, 30, 40, 50, 60]) };
  const nhwc = rgbToTensor(img, { colourOrder: 'RGB', layout: 'NHWC' });
  assert.deepEqual(nhwc.dims, [1, 1, 2, 3]);
  assert.deepEqual([...(nhwc.data as Float32Array)], [10, 20, 30, 40, 50, 60]);
  const grey = rgbToTensor({ width: 1, height: 1, data: Buffer.from([255, 255, 255]) }, { colourOrder: 'GRAY', scale: 1 / 255 });
  assert.deepEqual(grey.dims, [1, 1, 1, 1]);
  assert.ok(Math.abs((grey.data as Float32Array)[0] - 1) < 1e-6);
});

test('tensorDataToHwc inverts rgbToTensorData and clamps out-of-range values', () => {
  const img = { width: 3, height: 2, data: Buffer.from([0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 250, 251, 255]) };
  for (const options of [
    { colourOrder: 'RGB' as const, scale: 1 / 255 },
    { colourOrder: 'BGR' as const },
    { colourOrder: 'RGB' as const, scale: 1 / 127.5, mean: [1], std: [1] },
  ]) {
    assert.deepEqual([...tensorDataToHwc(rgbToTensorData(img, options), 3, 2, options)], [...img.data]);
  }
  const out = tensorDataToHwc(Float32Array.from([-0.5, 2, 0.5]), 1, 1, { colourOrder: 'RGB', scale: 1 / 255 });
  assert.deepEqual([...out], [0, 255, 128]);
});

test('padRgb edge mode repeats border pixels; bad placement throws', () => {
  const img = { width: 1, height: 1, data: Buffer.from([7, 8, 9]) };
  assert.deepEqual([...padRgb(img, 2, 2, { mode: 'edge' }).data], [7, 8, 9, 7, 8, 9, 7, 8, 9, 7, 8, 9]);
  assert.throws(() => padRgb(img, 1, 1, { left: 1 }), RangeError);
});

test('bucketSize rounds up to the multiple and never below one bucket', () => {
  assert.deepEqual(bucketSize(480, 640, 32), { height: 480, width: 640 });
  assert.deepEqual(bucketSize(481, 641, 32), { height: 512, width: 672 });
  assert.deepEqual(bucketSize(1, 1, 64), { height: 64, width: 64 });
  assert.deepEqual(bucketSize(700, 1000), { height: 704, width: 1024 });
  // sizes that differ slightly share a bucket, so the session sees one shape
  assert.deepEqual(bucketSize(1000, 1330, 64), bucketSize(990, 1300, 64));
  assert.throws(() => bucketSize(10, 10, 0), RangeError);
});

test('padToBucket pads with edge pixels to the bucket and remembers the real size', () => {
  const img = { width: 2, height: 1, data: Buffer.from([1, 2, 3, 4, 5, 6]) };
  const { image, width, height } = padToBucket(img, 4);
  assert.deepEqual([image.width, image.height, width, height], [4, 4, 2, 1]);
  const last = (3 * 4 + 3) * 3;
  assert.deepEqual([...image.data.subarray(last, last + 3)], [4, 5, 6]);
});
