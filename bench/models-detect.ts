/**
 * Step time of every detection model on a ~1 MP photo, on this machine's CPU (or whatever
 * ONNX_PROVIDERS picks). Times the whole stage run (RGB conversion, resize, tensor, model,
 * decode, NMS), median of N runs after warm-up.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/models-detect.js [runs]
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { pino } from 'pino';
import sharp from 'sharp';
import type { Frame } from '../services/lib/pipeline/frame.js';
import type { StageContext } from '../services/lib/pipeline/stage.js';
import { stage as detectFaces } from '../services/lib/steps/detect_faces.js';
import { stage as detectObjects } from '../services/lib/steps/detect_objects.js';
import { loadConfig } from '../services/lib/shared/config.js';
import type { DetectFacesParams, DetectFacesParamsResolved, DetectObjectsParams, DetectObjectsParamsResolved } from '../services/lib/shared/schema-types.js';
import { MODELS_DIR, fixture } from '../test/helpers/paths.js';
import { resolveParams } from '../services/lib/pipeline/params.js';
import { stepContext } from '../test/helpers/steps.js';

const config = loadConfig();

const runs = Number(process.argv[2] ?? 10);
const log = pino({ level: 'silent' });
const ctx: StageContext = stepContext({}, { log });

/** A fixture resized to about one megapixel (aspect kept). */
async function megapixelFrame(name: string): Promise<Frame> {
  const meta = await sharp(readFileSync(fixture(name))).metadata();
  const scale = Math.sqrt(1_000_000 / ((meta.width ?? 1) * (meta.height ?? 1)));
  const { data, info } = await sharp(readFileSync(fixture(name))).rotate()
    .resize(Math.round((meta.width ?? 1) * scale), Math.round((meta.height ?? 1) * scale)).raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, channels: info.channels as Frame['channels'], data };
}

async function time(fn: () => Promise<unknown>): Promise<{ median: number; min: number }> {
  await fn(); // first call loads lazily-selected models and warms them
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    ms.push(performance.now() - t);
  }
  ms.sort((a, b) => a - b);
  return { median: ms[Math.floor(ms.length / 2)], min: ms[0] };
}

const options = { log, modelsDir: MODELS_DIR };
const objects = await detectObjects.prepare(options);
const faces = await detectFaces.prepare(options);
const dog = await megapixelFrame('dog.jpg');
const messi = await megapixelFrame('messi5.jpg');
console.log(`cpu: ${os.cpus()[0]?.model} x${os.cpus().length}; providers ${config.onnxProviders.join(',')}; ONNX_THREADS ${config.onnxThreads || 'default'}; ${runs} runs`);
console.log(`objects on dog.jpg ${dog.width}x${dog.height}, faces on messi5.jpg ${messi.width}x${messi.height}`);
console.log('model                 median ms   min ms   found');
const objectModels: DetectObjectsParams['model'][] = ['yolox-nano', 'nanodet-m', 'fastestdet'];
for (const model of objectModels) {
  const params = resolveParams<DetectObjectsParamsResolved>('detect_objects', { model } satisfies DetectObjectsParams);
  const { median, min } = await time(() => objects.run({ frame: dog }, params, ctx));
  const found = (await objects.run({ frame: dog }, params, ctx)).findings?.objects?.length;
  console.log(`${String(model).padEnd(20)} ${median.toFixed(1).padStart(9)} ${min.toFixed(1).padStart(8)}   ${found} objects`);
}
const faceModels: DetectFacesParams['model'][] = ['yunet-640', 'yunet-dynamic', 'ultraface-rfb-320', 'ultraface-rfb-640', 'ultraface-slim-320', 'blazeface-front-128', 'blazeface-back-256'];
for (const model of faceModels) {
  const params = resolveParams<DetectFacesParamsResolved>('detect_faces', { model } satisfies DetectFacesParams);
  const { median, min } = await time(() => faces.run({ frame: messi }, params, ctx));
  const found = (await faces.run({ frame: messi }, params, ctx)).findings?.faces?.length;
  console.log(`${String(model).padEnd(20)} ${median.toFixed(1).padStart(9)} ${min.toFixed(1).padStart(8)}   ${found} faces`);
}
