/**
 * Determinism of every step on this machine: runs pipelines in-process, exactly as the stage
 * runner calls the step functions (validated params with defaults, findings carried along),
 * and prints the sha256 of each step's output (services/lib/forensics/digest.ts, the hash the
 * provenance records). Run it in separate processes with different ONNX_THREADS and compare:
 *
 *   npm run build && for t in 1 2 0; do ONNX_THREADS=$t node dist/bench/determinism.js; done
 *
 * DETERMINISM_PHOTO, DETERMINISM_WIDTH and DETERMINISM_PIPELINES (names, comma-separated) pick
 * the input and the pipelines. Each process runs every pipeline twice (warm sessions) and says whether the runs agree;
 * docs/forensics.md has the measured table.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { outputDigest } from '../services/lib/forensics/digest.js';
import type { EncodedImage, Frame } from '../services/lib/pipeline/frame.js';
import { validatePipeline } from '../services/lib/pipeline/pipeline.js';
import type { PreparedStage, StageInput } from '../services/lib/pipeline/stage.js';
import { resolveParams } from '../services/lib/pipeline/params.js';
import { loadStages } from '../services/lib/steps/registry.js';
import { loadConfig } from '../services/lib/shared/config.js';
import { createLogger } from '../services/lib/shared/logger.js';
import type { Findings } from '../services/lib/shared/schema-types.js';
import { admitHere, stepContext } from '../test/helpers/steps.js';

const config = loadConfig();

const FIXTURES = process.env.FIXTURES_DIR ?? path.resolve('..', 'shared', 'fixtures');

const PIPELINES: Record<string, unknown[]> = {
  'faces-upscale2-png': [{ step: 'decode' }, { step: 'detect_faces' }, { step: 'upscale', params: { factor: 2 } }, { step: 'encode', params: { format: 'png' } }],
  'upscale2-compact': [{ step: 'decode' }, { step: 'upscale', params: { factor: 2, model: 'compact' } }, { step: 'encode', params: { format: 'png' } }],
  'upscale3': [{ step: 'decode' }, { step: 'upscale', params: { factor: 3 } }, { step: 'encode', params: { format: 'png' } }],
  'upscale4': [{ step: 'decode' }, { step: 'upscale', params: { factor: 4 } }, { step: 'encode', params: { format: 'png' } }],
  'denoise-jpeg': [{ step: 'decode' }, { step: 'denoise' }, { step: 'encode', params: { format: 'jpeg' } }],
  'objects-webp': [{ step: 'decode' }, { step: 'detect_objects' }, { step: 'encode', params: { format: 'webp' } }],
  'faces-enhance': [{ step: 'decode' }, { step: 'detect_faces' }, { step: 'enhance_faces' }, { step: 'encode', params: { format: 'png' } }],
};

async function main(): Promise<void> {
  const log = createLogger('determinism');
  const stages = await loadStages();
  const prepared = new Map<string, PreparedStage<Record<string, unknown>>>();
  const photo = await sharp(readFileSync(path.join(FIXTURES, process.env.DETERMINISM_PHOTO ?? 'messi5.jpg'))).resize(Number(process.env.DETERMINISM_WIDTH ?? 320)).jpeg({ quality: 92 }).toBuffer();
  const out: Record<string, unknown> = { onnxThreads: config.onnxThreads, photoBytes: photo.length };
  const only = (process.env.DETERMINISM_PIPELINES ?? '').split(',').filter(Boolean);
  for (const [name, raw] of Object.entries(PIPELINES)) {
    if (only.length > 0 && !only.includes(name)) continue;
    let pipeline;
    try {
      pipeline = validatePipeline(raw, stages);
      for (const item of pipeline) {
        const stage = stages.get(item.step)!;
        admitHere(stage, item.params ?? {}, config.modelsDir);
        if (!prepared.has(item.step)) prepared.set(item.step, await stage.prepare({ log, modelsDir: config.modelsDir }) as PreparedStage<Record<string, unknown>>);
      }
    } catch (error) {
      out[name] = { skipped: (error as Error).message };
      continue;
    }
    const runs: string[][] = [];
    for (let run = 0; run < 2; run++) {
      let input: { frame?: Frame; encoded?: EncodedImage } = { encoded: { bytes: photo, format: 'jpeg', contentType: 'image/jpeg' } };
      let findings: Findings = {};
      const hashes: string[] = [];
      for (const item of pipeline) {
        const result = await prepared.get(item.step)!.run(input as StageInput, resolveParams(item.step, item.params), {
          ...stepContext(findings, { log }), inputFormat: 'jpeg',
        });
        findings = { ...findings, ...result.findings };
        hashes.push(`${item.step}:${outputDigest(result).outputSha256?.slice(0, 16)}`);
        input = result.frame ? { frame: result.frame } : { encoded: result.encoded };
      }
      runs.push(hashes);
    }
    out[name] = { steps: runs[0], sameInProcess: JSON.stringify(runs[0]) === JSON.stringify(runs[1]) };
  }
  console.log(JSON.stringify(out));
  for (const p of prepared.values()) await p.close?.();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
