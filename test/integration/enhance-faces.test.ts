/**
 * enhance_faces end to end with restoration models generated at test time (same contract as
 * GFPGAN / GPEN / CodeFormer, but a predictable colour negative), the real YuNet detector and,
 * for the fallback, the real ×2 super-resolution model.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fixture } from '../helpers/paths.js';
import { createRestorationModelsDir } from '../helpers/restoration-models.js';
import type { Frame } from '../../services/lib/pipeline/frame.js';
import type { StageContext, StageDefinition } from '../../services/lib/pipeline/stage.js';
import type { EnhanceFacesParams, EnhanceFacesParamsResolved, Face, Findings } from '../../services/lib/shared/schema-types.js';
import { resolveParams } from '../../services/lib/pipeline/params.js';

// The manifest override must be in place before any service module reads the configuration.
const models = createRestorationModelsDir();
process.env.MODELS_MANIFEST = models.manifestPath;
const { createEnhanceFacesStage } = await import('../../services/lib/steps/enhance_faces.js');
const { stage: decode } = await import('../../services/lib/steps/decode.js');
const align = await import('../../services/lib/imaging/face-align.js');
const { AppError } = await import('../../services/lib/shared/errors.js');
const { withDefaults, stepContext, admitHere } = await import('../helpers/steps.js');

const silent = { info() {}, warn() {}, debug() {}, error() {}, trace() {}, fatal() {}, child() { return silent; } } as unknown as StageContext['log'];

function context(findings: Findings = {}): StageContext {
  return stepContext(findings, { log: silent });
}

async function run(stage: StageDefinition<EnhanceFacesParamsResolved, 'frame'>, frame: Frame, params: EnhanceFacesParams, findings: Findings = {}) {
  const prepared = withDefaults<EnhanceFacesParams>('enhance_faces', await stage.prepare({ log: silent, modelsDir: models.modelsDir }));
  return prepared.run({ frame }, params, context(findings));
}

/** A smooth (linear) test image: bilinear resampling reproduces it, so the expected pixels are exact. */
function gradientFrame(width: number, height: number, channels: 1 | 2 | 3 | 4): Frame {
  const data = Buffer.alloc(width * height * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const p = (y * width + x) * channels;
      const values = channels <= 2 ? [40 + Math.floor(x / 2)] : [40 + Math.floor(x / 2), 30 + Math.floor(y / 2), 120];
      values.forEach((v, c) => { data[p + c] = v; });
      if (channels === 2 || channels === 4) data[p + channels - 1] = 200;
    }
  }
  return { width, height, channels, data };
}

/** A face whose landmarks are the template (of a 512 square) mapped into the image: rotation θ, side in image pixels. */
function syntheticFace(theta: number, side: number, x: number, y: number): Face {
  const s = side / 512;
  const pose = { a: s * Math.cos(theta), b: s * Math.sin(theta), tx: x, ty: y };
  const landmarks = align.FFHQ_TEMPLATE_512.map((p) => align.applySimilarity(pose, p).map((v) => v));
  return { box: { x: x + side * 0.3, y: y + side * 0.3, width: side * 0.4, height: side * 0.5 }, score: 0.95, landmarks };
}

/** Image pixels with their position in the face's aligned square (size). */
function* facePixels(face: Face, size: number, width: number, height: number) {
  const toAligned = align.estimateSimilarity(face.landmarks!.map(([x, y]) => [x, y] as const), align.templateFor(size));
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const [u, v] = align.applySimilarity(toAligned, [x, y]);
      yield { x, y, u, v, inSquare: u >= 0 && v >= 0 && u <= size - 1 && v <= size - 1, core: u > 160 && u < 352 && v > 160 && v < 352 };
    }
  }
}

function checkFace(before: Frame, after: Frame, face: Face, size: number, expected: (orig: number) => number, tolerance = 1.5) {
  const { width, height, channels } = before;
  const colour = channels <= 2 ? 1 : 3;
  let core = 0;
  let outside = 0;
  const k = size / 512;
  for (const p of facePixels(face, size, width, height)) {
    const i = (p.y * width + p.x) * channels;
    if (channels === 2 || channels === 4) assert.equal(after.data[i + channels - 1], before.data[i + channels - 1], 'alpha changed');
    if (!p.inSquare) {
      for (let c = 0; c < colour; c++) assert.equal(after.data[i + c], before.data[i + c], `(${p.x},${p.y}) outside the face changed`);
      outside++;
    } else if (p.u > 160 * k && p.u < 352 * k && p.v > 160 * k && p.v < 352 * k) {
      for (let c = 0; c < colour; c++) {
        const want = expected(before.data[i + c]);
        assert.ok(Math.abs(after.data[i + c] - want) <= tolerance, `(${p.x},${p.y}) c${c}: ${after.data[i + c]}, expected ${want}`);
      }
      core++;
    }
  }
  assert.ok(core > 200, `only ${core} face pixels checked`);
  assert.ok(outside > 200, `only ${outside} outside pixels checked`);
}

describe('enhance_faces', () => {
  const stage = createEnhanceFacesStage({ fallback: '' });

  it('admission refuses a missing restoration model with 503 model_not_installed naming the fetch command', async () => {
    assert.throws(() => admitHere(stage, resolveParams('enhance_faces', { model: 'gpen-bfr-512' }), models.modelsDir), (error: unknown) => {
      assert.ok(error instanceof AppError);
      assert.equal(error.status, 503);
      assert.equal(error.code, 'model_not_installed');
      assert.match(error.message, /npm run models -- fetch gpen-bfr-512/);
      return true;
    });
    admitHere(stage, resolveParams('enhance_faces', { model: 'gfpgan-v1.4' }), models.modelsDir);
    // A stage with an installed fallback serves every restoration model (its presence says so).
    const withFallback = await createEnhanceFacesStage({ fallback: 'sr-nomos-compact-x2' }).prepare({ log: silent, modelsDir: models.modelsDir });
    admitHere(stage, resolveParams('enhance_faces', { model: 'gpen-bfr-512' }), models.modelsDir, withFallback.servedModels);
  });

  it('GFPGAN contract, weight 1: the aligned face region is replaced exactly, the rest untouched (RGB)', async () => {
    const frame = gradientFrame(320, 260, 3);
    const face = syntheticFace(0.25, 180, 60, 20);
    const result = await run(stage, frame, { model: 'gfpgan-v1.4', weight: 1 }, { faces: [face] });
    checkFace(frame, result.frame!, face, 512, (p) => 255 - p);
    assert.equal(result.provenance?.model, 'gfpgan-v1.4');
    assert.match(result.provenance?.note ?? '', /restored 1 of 1/);
    assert.equal(result.findings, undefined, 'faces from an earlier step are not repeated');
  });

  it('GPEN-256 contract: template scaled to 256; weight 0.5 blends half way (RGBA: alpha kept)', async () => {
    const frame = gradientFrame(300, 240, 4);
    const face = syntheticFace(-0.4, 150, 80, 40);
    const result = await run(stage, frame, { model: 'gpen-bfr-256', weight: 0.5 }, { faces: [face] });
    assert.equal(result.frame!.channels, 4);
    checkFace(frame, result.frame!, face, 256, (p) => p + 0.5 * (255 - 2 * p));
  });

  it('CodeFormer contract: the fidelity weight goes to input w and the face is pasted fully (grey frame)', async () => {
    const frame = gradientFrame(280, 280, 1);
    const face = syntheticFace(0.1, 200, 30, 30);
    const result = await run(stage, frame, { model: 'codeformer', weight: 0.5 }, { faces: [face] });
    assert.equal(result.frame!.channels, 1);
    // output = −0.5 · (p/127.5 − 1)  ->  pixel (out + 1) · 127.5 = 191.25 − 0.5 p
    checkFace(frame, result.frame!, face, 512, (p) => 191.25 - 0.5 * p);
    assert.match(result.provenance?.note ?? '', /fidelity 0.5/);
  });

  it('maxFaces and onlyCenterFace choose the faces', async () => {
    const frame = gradientFrame(400, 200, 3);
    const left = { ...syntheticFace(0, 120, 10, 20), score: 0.7 };
    const centre = { ...syntheticFace(0, 120, 140, 30), score: 0.6 };
    const centreBox = { ...centre, box: { x: 170, y: 70, width: 60, height: 60 } };
    const onlyCentre = await run(stage, frame, { weight: 1, onlyCenterFace: true }, { faces: [left, centreBox] });
    assert.match(onlyCentre.provenance?.note ?? '', /restored 1 of 2/);
    checkFace(frame, onlyCentre.frame!, centreBox, 512, (p) => 255 - p);
    const best = await run(stage, frame, { weight: 1, maxFaces: 1 }, { faces: [centreBox, left] });
    checkFace(frame, best.frame!, left, 512, (p) => 255 - p);
  });

  it('detects faces itself with YuNet on a real photo and changes only pixels near them', async () => {
    const decoded = await (await decode.prepare({ log: silent, modelsDir: models.modelsDir }))
      .run({ encoded: { bytes: readFileSync(fixture('messi5.jpg')), format: 'jpeg', contentType: 'image/jpeg' } }, {}, context());
    const frame = decoded.frame!;
    const result = await run(stage, frame, { weight: 1 });
    const faces = result.findings?.faces ?? [];
    assert.ok(faces.length >= 1, 'YuNet found no face in messi5.jpg');
    assert.match(result.provenance?.model ?? '', /^yunet-640\+gfpgan-v1\.4$/);
    const out = result.frame!;
    let changed = 0;
    for (let y = 0; y < frame.height; y++) {
      for (let x = 0; x < frame.width; x++) {
        const i = (y * frame.width + x) * 3;
        if (out.data[i] === frame.data[i] && out.data[i + 1] === frame.data[i + 1] && out.data[i + 2] === frame.data[i + 2]) continue;
        changed++;
        const near = faces.some((f) => x > f.box.x - 2 * f.box.width && x < f.box.x + 3 * f.box.width && y > f.box.y - 2 * f.box.height && y < f.box.y + 3 * f.box.height);
        assert.ok(near, `pixel (${x},${y}) far from every face changed`);
      }
    }
    assert.ok(changed > 100);
    // At each nose tip the colour is (close to) the negative of the original.
    for (const f of faces) {
      const [nx, ny] = f.landmarks![2].map(Math.round);
      const i = (ny * frame.width + nx) * 3;
      for (let c = 0; c < 3; c++) assert.ok(Math.abs(out.data[i + c] - (255 - frame.data[i + c])) <= 40, 'nose not inverted');
    }
  });

  it('with FACE_RESTORE_FALLBACK it runs the fallback model on aligned faces and says so', async () => {
    const fallback = createEnhanceFacesStage({ fallback: 'sr-nomos-compact-x2' });
    const frame = gradientFrame(240, 220, 3);
    const face = syntheticFace(0, 160, 40, 30);
    const result = await run(fallback, frame, { model: 'gpen-bfr-512', weight: 1 }, { faces: [face] });
    assert.equal(result.provenance?.model, 'sr-nomos-compact-x2');
    assert.match(result.provenance?.note ?? '', /fallback sr-nomos-compact-x2 .*gpen-bfr-512 is not installed/);
    // A smooth image stays about the same through SR + downscale, and nothing outside the face moves.
    checkFace(frame, result.frame!, face, 512, (p) => p, 12);
  });

  it('upscale: the background is upscaled first and the faces follow', async () => {
    const frame = gradientFrame(160, 130, 3);
    const face = syntheticFace(0, 100, 30, 10);
    const result = await run(stage, frame, { weight: 1, upscale: 2 }, { faces: [face] });
    assert.equal(result.frame!.width, 320);
    assert.equal(result.frame!.height, 260);
    const moved = result.findings!.faces![0];
    assert.deepEqual(moved.landmarks, face.landmarks!.map(([x, y]) => [x * 2, y * 2]));
    assert.match(result.provenance?.model ?? '', /^sr-nomos-span-x2\+gfpgan-v1\.4$/);
  });

  it('leaves a frame without faces unchanged', async () => {
    const frame = gradientFrame(100, 100, 3);
    const result = await run(stage, frame, { weight: 1 }, { faces: [] });
    assert.ok(result.frame!.data.equals(frame.data));
    assert.match(result.provenance?.note ?? '', /restored 0 of 0/);
  });
});
