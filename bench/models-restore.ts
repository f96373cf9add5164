/**
 * Step times of the restore stages (upscale, denoise, enhance_faces) on a ~1 MP photo, one model
 * (recipe) at a time, models loaded and warmed first (load time reported separately).
 *
 *   npx tsc -p tsconfig.json && node dist/bench/models-restore.js [--only upscale-x2-span,...] [--runs 2]
 *
 * MODELS_DIR (default ../shared/models) must hold the shared models. enhance_faces runs with the
 * generated stand-in restoration model (same contract, trivial compute: measures alignment,
 * warp and paste-back) and with the FACE_RESTORE_FALLBACK path (×2 SR on each aligned face).
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import sharp from 'sharp';
import type { Frame } from '../services/lib/pipeline/frame.js';
import type { StageContext, StageDefinition } from '../services/lib/pipeline/stage.js';
import type { Findings } from '../services/lib/shared/schema-types.js';
import { fixture } from '../test/helpers/paths.js';
import { createRestorationModelsDir } from '../test/helpers/restoration-models.js';
import { resolveParams } from '../services/lib/pipeline/params.js';

const testModels = createRestorationModelsDir();
process.env.MODELS_MANIFEST = testModels.manifestPath;
const { stepContext } = await import('../test/helpers/steps.js');
const { stage: upscale } = await import('../services/lib/steps/upscale.js');
const { stage: denoise } = await import('../services/lib/steps/denoise.js');
const { createEnhanceFacesStage } = await import('../services/lib/steps/enhance_faces.js');
const { stage: detectFaces } = await import('../services/lib/steps/detect_faces.js');

const silent = { info() {}, warn() {}, debug() {}, error() {}, trace() {}, fatal() {}, child() { return silent; } } as unknown as StageContext['log'];
const ctx = (findings: Findings = {}): StageContext => stepContext(findings, { log: silent });
const modelsDir = testModels.modelsDir;

const args = process.argv.slice(2);
const only = args.includes('--only') ? args[args.indexOf('--only') + 1].split(',') : undefined;
const runs = args.includes('--runs') ? Number(args[args.indexOf('--runs') + 1]) : 1;

/** messi5.jpg (several faces) resampled to 1224×816 = 1.0 MP: timing does not depend on content, faces count does. */
async function megapixelPhoto(): Promise<Frame> {
  const { data, info } = await sharp(readFileSync(fixture('messi5.jpg'))).resize(1224, 816, { fit: 'fill', kernel: 'lanczos3' }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, channels: 3, data };
}

interface Case {
  name: string;
  stage: StageDefinition<Record<string, unknown>>;
  params: Record<string, unknown>;
  findings?: Findings;
}

const frame = await megapixelPhoto();
const faces = (await (await detectFaces.prepare({ log: silent, modelsDir })).run({ frame }, resolveParams('detect_faces', {}), ctx())).findings?.faces ?? [];
const enhance = createEnhanceFacesStage({ fallback: '' }) as unknown as StageDefinition<Record<string, unknown>>;
const enhanceFallback = createEnhanceFacesStage({ fallback: 'sr-nomos-compact-x2' }) as unknown as StageDefinition<Record<string, unknown>>;
const up = upscale as unknown as StageDefinition<Record<string, unknown>>;
const dn = denoise as unknown as StageDefinition<Record<string, unknown>>;

const cases: Case[] = [
  { name: 'upscale-x2-span', stage: up, params: { factor: 2, model: 'span' } },
  { name: 'upscale-x2-compact', stage: up, params: { factor: 2, model: 'compact' } },
  { name: 'upscale-x3-espcn', stage: up, params: { factor: 3 } },
  { name: 'upscale-x4-animevideov3', stage: up, params: { factor: 4 } },
  { name: 'denoise-light-dncnn', stage: dn, params: { level: 'light' } },
  { name: 'denoise-medium', stage: dn, params: { level: 'medium' } },
  { name: 'denoise-strong', stage: dn, params: { level: 'strong' } },
  { name: `enhance-faces-standin-gfpgan (${faces.length} faces)`, stage: enhance, params: { model: 'gfpgan-v1.4', weight: 1 }, findings: { faces } },
  { name: `enhance-faces-fallback-compact-x2 (${faces.length} faces)`, stage: enhanceFallback, params: { model: 'gpen-bfr-512', weight: 1 }, findings: { faces } },
];

console.log(`# ${frame.width}x${frame.height} (${(frame.width * frame.height / 1e6).toFixed(2)} MP) RGB, ${os.cpus().length} CPUs (${os.cpus()[0]?.model}), ONNX_THREADS=${process.env.ONNX_THREADS ?? 'default'}`);
console.log('| step | first run (load + warm) ms | steady ms | output | note |');
console.log('|---|---|---|---|---|');
for (const c of cases) {
  if (only && !only.some((o) => c.name.startsWith(o))) continue;
  const prepared = await c.stage.prepare({ log: silent, modelsDir });
  const t0 = performance.now();
  await prepared.run({ frame }, c.params, ctx(c.findings));
  const first = performance.now() - t0;
  let best = Infinity;
  let out: Frame | undefined;
  let note = '';
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    const result = await prepared.run({ frame }, c.params, ctx(c.findings));
    best = Math.min(best, performance.now() - t);
    out = result.frame;
    note = result.provenance?.note ?? '';
  }
  console.log(`| ${c.name} | ${first.toFixed(0)} | ${best.toFixed(0)} | ${out?.width}x${out?.height} | ${note} |`);
}
