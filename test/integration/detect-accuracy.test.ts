/**
 * detect_faces and detect_objects on real photos with the real models (../shared), called as
 * stage functions on frames from the real decode stage.
 *
 * Reference positions were read off renders of the fixtures (boxes drawn with sharp + SVG):
 * dog.jpg (768x576): dog x 130-325 / y 210-545, bicycle x 130-570 / y 135-425, white car
 * x 465-695 / y 75-170. messi5.jpg (548x342): one face in focus (Messi) at x 227-257 / y 93-132;
 * the crowd behind is blurred and must not produce faces at the default threshold.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { pino } from 'pino';
import sharp from 'sharp';
import type { Frame } from '../../services/lib/pipeline/frame.js';
import type { PreparedStage, StageContext, StageResult } from '../../services/lib/pipeline/stage.js';
import type { Box, DecodeParams, DetectFacesParams, DetectObjectsParams, DetectedObject, Face, Findings } from '../../services/lib/shared/schema-types.js';
import { findModel } from '../../services/lib/models/manifest.js';
import { schemaValidator } from '../../services/lib/shared/schemas.js';
import { MODELS_DIR, fixture } from '../helpers/paths.js';
import { resolveParams } from '../../services/lib/pipeline/params.js';
import { withDefaults, type TestableStage, stepContext, admitHere } from '../helpers/steps.js';

const log = pino({ level: 'silent' });
const options = { log, modelsDir: MODELS_DIR };
const ctx = (): StageContext => stepContext({}, { log });

let decode: PreparedStage<DecodeParams, 'encoded'>;
let faces: TestableStage<DetectFacesParams>;
let objects: TestableStage<DetectObjectsParams>;
let facesStage: typeof import('../../services/lib/steps/detect_faces.js').stage;
let objectsStage: typeof import('../../services/lib/steps/detect_objects.js').stage;

const DOG_REF: Record<string, Box> = {
  dog: { x: 130, y: 210, width: 195, height: 335 },
  bicycle: { x: 130, y: 135, width: 440, height: 290 },
  car: { x: 465, y: 75, width: 230, height: 95 },
};
const MESSI_FACE: Box = { x: 227, y: 93, width: 30, height: 39 };

before(async () => {
  decode = await (await import('../../services/lib/steps/decode.js')).stage.prepare(options);
  facesStage = (await import('../../services/lib/steps/detect_faces.js')).stage;
  objectsStage = (await import('../../services/lib/steps/detect_objects.js')).stage;
  faces = withDefaults('detect_faces', await facesStage.prepare(options));
  objects = withDefaults('detect_objects', await objectsStage.prepare(options));
});

async function decodeBytes(bytes: Buffer, format = 'jpeg'): Promise<Frame> {
  const result = await decode.run({ encoded: { bytes, format, contentType: `image/${format}` } }, {}, ctx());
  assert.ok(result.frame);
  return result.frame;
}

const decodeFixture = (name: string) => decodeBytes(readFileSync(fixture(name)), name.endsWith('.png') ? 'png' : 'jpeg');

function iou(a: Box, b: Box): number {
  const w = Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x);
  const h = Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y);
  if (w <= 0 || h <= 0) return 0;
  return (w * h) / (a.width * a.height + b.width * b.height - w * h);
}

function best(found: DetectedObject[], labels: string[], ref: Box): DetectedObject | undefined {
  return found.filter((o) => labels.includes(o.label)).sort((a, b) => iou(b.box, ref) - iou(a.box, ref))[0];
}

function assertDogScene(found: DetectedObject[], minIou: number, carLabels = ['car']): void {
  for (const [label, ref] of Object.entries(DOG_REF)) {
    const labels = label === 'car' ? carLabels : [label];
    const hit = best(found, labels, ref);
    assert.ok(hit, `${label} not found in ${JSON.stringify(found.map((o) => o.label))}`);
    assert.ok(iou(hit.box, ref) >= minIou, `${label} box ${JSON.stringify(hit.box)} overlaps the reference by only ${iou(hit.box, ref).toFixed(2)}`);
  }
  assert.ok(!found.some((o) => o.label === 'person' && o.score > 0.5), 'no one is in the photo');
}

const validateFindings = schemaValidator<Findings>('common.schema.json#/definitions/Findings');

function assertValidFindings(result: StageResult): void {
  assert.ok(validateFindings(result.findings), JSON.stringify(validateFindings.errors));
}

test('YOLOX (default) finds the dog, the bicycle and the car where they are', async () => {
  const frame = await decodeFixture('dog.jpg');
  const result = await objects.run({ frame }, {}, ctx());
  assert.equal(result.frame, frame, 'the frame passes through unchanged');
  const found = result.findings?.objects ?? [];
  assertDogScene(found, 0.6);
  for (const label of ['dog', 'bicycle', 'car']) assert.ok(best(found, [label], DOG_REF[label])!.score > 0.6, `${label} score`);
  assertValidFindings(result);
  assert.deepEqual(result.provenance, {
    model: 'yolox-nano', modelSha256: findModel('yolox-nano').sha256!, provider: 'cpu', note: `${found.length} object(s)`,
  });
  for (const o of found) {
    assert.ok(o.box.x >= 0 && o.box.y >= 0 && o.box.x + o.box.width <= 768.01 && o.box.y + o.box.height <= 576.01, 'boxes stay in the image');
  }
});

test('classes, minScore and maxObjects filter the objects', async () => {
  const frame = await decodeFixture('dog.jpg');
  const dogs = (await objects.run({ frame }, { classes: ['dog'] }, ctx())).findings?.objects ?? [];
  assert.ok(dogs.length >= 1);
  assert.ok(dogs.every((o) => o.label === 'dog' && o.classId === 16));
  const one = (await objects.run({ frame }, { maxObjects: 1 }, ctx())).findings?.objects ?? [];
  assert.equal(one.length, 1);
  const strict = (await objects.run({ frame }, { minScore: 0.99 }, ctx())).findings?.objects ?? [];
  assert.equal(strict.length, 0);
  await assert.rejects(objects.run({ frame }, { classes: ['unicorn' as 'dog'] }, ctx()), { status: 400, code: 'invalid_params' });
});

test('NanoDet and FastestDet find the same scene', async () => {
  const frame = await decodeFixture('dog.jpg');
  const nanodet = await objects.run({ frame }, { model: 'nanodet' }, ctx());
  // NanoDet calls the white pickup a truck; either label at the car's place is right.
  assertDogScene(nanodet.findings?.objects ?? [], 0.5, ['car', 'truck']);
  assert.equal(nanodet.provenance?.model, 'nanodet-m');
  const fastest = await objects.run({ frame }, { model: 'fastestdet' }, ctx());
  assertDogScene(fastest.findings?.objects ?? [], 0.5);
  assert.equal(fastest.provenance?.model, 'fastestdet');
});

test('YuNet finds the one face in focus in messi5.jpg, with five landmarks in order', async () => {
  const frame = await decodeFixture('messi5.jpg');
  const result = await faces.run({ frame }, {}, ctx());
  assert.equal(result.frame, frame);
  const found = result.findings?.faces ?? [];
  assert.equal(found.length, 1, JSON.stringify(found));
  const [face] = found;
  assert.ok(iou(face.box, MESSI_FACE) > 0.6, JSON.stringify(face.box));
  assert.ok(face.score > 0.8);
  assertLandmarks(face);
  assertValidFindings(result);
  assert.equal(result.provenance?.model, 'yunet-640');
  assert.equal(result.provenance?.modelSha256, findModel('yunet-640').sha256);
  // Lower the threshold and the blurred crowd shows up: minScore is applied.
  const loose = (await faces.run({ frame }, { minScore: 0.3 }, ctx())).findings?.faces ?? [];
  assert.ok(loose.length > 1);
  const capped = (await faces.run({ frame }, { minScore: 0.3, maxFaces: 2 }, ctx())).findings?.faces ?? [];
  assert.equal(capped.length, 2);
});

function assertLandmarks(face: Face): void {
  const lm = face.landmarks;
  assert.ok(lm && lm.length === 5, 'five landmarks');
  const [rightEye, leftEye, nose, rightMouth, leftMouth] = lm;
  for (const [x, y] of lm) {
    assert.ok(x >= face.box.x - 2 && x <= face.box.x + face.box.width + 2 && y >= face.box.y - 2 && y <= face.box.y + face.box.height + 2, 'landmark inside the box');
  }
  // The subject's right eye is on the image's left.
  assert.ok(rightEye[0] < leftEye[0] && rightMouth[0] < leftMouth[0]);
  assert.ok(nose[1] > rightEye[1] && nose[1] < rightMouth[1], 'nose between eyes and mouth');
}

test('yunet-dynamic finds the same face', async () => {
  const frame = await decodeFixture('messi5.jpg');
  const found = (await faces.run({ frame }, { model: 'yunet-dynamic' }, ctx())).findings?.faces ?? [];
  assert.equal(found.length, 1);
  assert.ok(iou(found[0].box, MESSI_FACE) > 0.6);
  assertLandmarks(found[0]);
});

test('UltraFace (all three) and BlazeFace find the face too', async () => {
  const frame = await decodeFixture('messi5.jpg');
  for (const model of ['ultraface', 'ultraface-rfb-640', 'ultraface-slim-320', 'blazeface'] as const) {
    const result = await faces.run({ frame }, { model }, ctx());
    const found = result.findings?.faces ?? [];
    assert.equal(found.length, 1, `${model}: ${JSON.stringify(found)}`);
    assert.ok(iou(found[0].box, MESSI_FACE) > 0.5, `${model}: ${JSON.stringify(found[0].box)}`);
    assert.equal(found[0].landmarks, undefined, `${model} gives no 5-point landmarks`);
    assertValidFindings(result);
  }
  // The front (selfie) BlazeFace needs a close-up: a 160x160 crop around the face.
  const { data, info } = await sharp(readFileSync(fixture('messi5.jpg'))).extract({ left: 162, top: 33, width: 160, height: 160 }).png().toBuffer({ resolveWithObject: true });
  assert.equal(info.width, 160);
  const crop = await decodeBytes(data, 'png');
  const close = (await faces.run({ frame: crop }, { model: 'blazeface-front-128' }, ctx())).findings?.faces ?? [];
  assert.equal(close.length, 1, JSON.stringify(close));
  assert.ok(iou(close[0].box, { ...MESSI_FACE, x: MESSI_FACE.x - 162, y: MESSI_FACE.y - 33 }) > 0.4, JSON.stringify(close[0].box));
});

/** A JPEG whose pixels are stored rotated, with EXIF orientation 6 (rotate 90° clockwise to view). */
async function exifRotated(name: string): Promise<Buffer> {
  const { data, info } = await sharp(readFileSync(fixture(name))).rotate().raw().toBuffer({ resolveWithObject: true });
  const stored = await sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels } }).rotate(270).raw().toBuffer({ resolveWithObject: true });
  return sharp(stored.data, { raw: { width: stored.info.width, height: stored.info.height, channels: stored.info.channels } })
    .jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toBuffer();
}

test('EXIF-rotated input gives boxes in the orientation the user sees', async () => {
  const rotatedBytes = await exifRotated('dog.jpg');
  const meta = await sharp(rotatedBytes).metadata();
  assert.equal(meta.orientation, 6);
  assert.equal(meta.width, 576, 'stored sideways');
  const upright = await decodeFixture('dog.jpg');
  const rotated = await decodeBytes(rotatedBytes);
  assert.deepEqual([rotated.width, rotated.height], [768, 576], 'decode applied the orientation');
  const a = (await objects.run({ frame: upright }, {}, ctx())).findings?.objects ?? [];
  const b = (await objects.run({ frame: rotated }, {}, ctx())).findings?.objects ?? [];
  assertDogScene(b, 0.6);
  for (const label of ['dog', 'bicycle', 'car']) {
    const ua = best(a, [label], DOG_REF[label])!;
    const ub = best(b, [label], DOG_REF[label])!;
    assert.ok(iou(ua.box, ub.box) > 0.85, `${label}: upright ${JSON.stringify(ua.box)} vs rotated ${JSON.stringify(ub.box)}`);
  }

  const messi = await decodeBytes(await exifRotated('messi5.jpg'));
  assert.deepEqual([messi.width, messi.height], [548, 342]);
  const face = (await faces.run({ frame: messi }, {}, ctx())).findings?.faces ?? [];
  assert.equal(face.length, 1);
  assert.ok(iou(face[0].box, MESSI_FACE) > 0.6, JSON.stringify(face[0].box));
  assertLandmarks(face[0]);
});

test('grey, grey+alpha and RGBA frames work', async () => {
  const source = readFileSync(fixture('dog.jpg'));
  const grey = await decodeBytes(await sharp(source).greyscale().toColourspace('b-w').png().toBuffer(), 'png');
  assert.equal(grey.channels, 1);
  assertDogScene((await objects.run({ frame: grey }, {}, ctx())).findings?.objects ?? [], 0.5, ['car', 'truck']);
  // Built by hand: decode currently turns grey+alpha PNGs into plain grey (reported to its owner).
  const ga = Buffer.alloc(grey.width * grey.height * 2);
  for (let i = 0; i < grey.width * grey.height; i++) {
    const transparent = i < grey.width * 20; // the top 20 rows: garbage colour, fully transparent
    ga[i * 2] = transparent ? 0 : grey.data[i];
    ga[i * 2 + 1] = transparent ? 0 : 255;
  }
  const greyAlpha: Frame = { width: grey.width, height: grey.height, channels: 2, data: ga };
  assertDogScene((await objects.run({ frame: greyAlpha }, {}, ctx())).findings?.objects ?? [], 0.5, ['car', 'truck']);
  const rgba = await decodeBytes(await sharp(readFileSync(fixture('messi5.jpg'))).ensureAlpha(1).png().toBuffer(), 'png');
  assert.equal(rgba.channels, 4);
  const found = (await faces.run({ frame: rgba }, {}, ctx())).findings?.faces ?? [];
  assert.equal(found.length, 1);
  assert.ok(iou(found[0].box, MESSI_FACE) > 0.6);
});

test('a photo without faces or objects gives empty findings', async () => {
  const frame = await decodeFixture('starry_night.jpg');
  assert.deepEqual((await faces.run({ frame }, {}, ctx())).findings, { faces: [] });
  const tiny = await decodeFixture('HappyFish.jpg');
  const result = await objects.run({ frame: tiny }, { minScore: 0.9 }, ctx());
  assert.deepEqual(result.findings, { objects: [] });
});

test('admission and run refuse a model that is not installed', async () => {
  assert.throws(() => admitHere(objectsStage, resolveParams('detect_objects', { model: 'yolox-s' }), options.modelsDir), (e: { status?: number; code?: string; message: string }) =>
    e.status === 503 && e.code === 'model_not_installed' && e.message.includes('npm run models -- fetch yolox-s'));
  assert.doesNotThrow(() => admitHere(objectsStage, resolveParams('detect_objects', {}), options.modelsDir));
  assert.doesNotThrow(() => admitHere(facesStage, resolveParams('detect_faces', { model: 'ultraface' }), options.modelsDir));
  assert.throws(() => admitHere(facesStage, resolveParams('detect_faces', { model: 'blazeface' }), '/nonexistent'), { code: 'model_not_installed' });
  const frame = await decodeFixture('dog.jpg');
  await assert.rejects(objects.run({ frame }, resolveParams('detect_objects', { model: 'yolox-s' }), ctx()), { code: 'model_not_installed' });
});
