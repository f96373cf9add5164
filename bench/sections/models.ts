/**
 * Section "models": step time per model (the stage function, models loaded and warmed up),
 * at 640x480, 1152x864 (1 MP) and 1920x1080, on the execution providers of ONNX_PROVIDERS
 * (default cpu).
 *
 * Detectors run 5 times per size (p50). The restore models (upscale, denoise) take seconds to
 * minutes per image on this 2-core CPU: they run once at 640x480 and 1 MP, and at 1920x1080
 * only with BENCH_FULL=1 (or `--full`); otherwise the 1920x1080 figure is the 1 MP time scaled
 * by the pixel count (x2.08; the models are tiled, so time is linear in pixels), marked "est.".
 */
import sharp from 'sharp';
import type { Frame } from '../../services/lib/pipeline/frame.js';
import type { PreparedStage, StageContext } from '../../services/lib/pipeline/stage.js';
import { loadStage } from '../../services/lib/steps/registry.js';
import { loadConfig } from '../../services/lib/shared/config.js';
import { fixture, hasGpu, MODELS_DIR, ms, now, progress, silentLog, summarize, table } from '../lib/util.js';
import type { SectionResult } from './types.js';
import { stepContext } from '../../test/helpers/steps.js';

const config = loadConfig();

interface ModelCase { step: string; label: string; params: Record<string, unknown>; heavy?: boolean }

const CASES: ModelCase[] = [
  { step: 'detect_faces', label: 'detect faces: yunet (640)', params: { model: 'yunet' } },
  { step: 'detect_faces', label: 'detect faces: ultraface (RFB-320)', params: { model: 'ultraface' } },
  { step: 'detect_faces', label: 'detect faces: blazeface (back-256)', params: { model: 'blazeface' } },
  { step: 'detect_objects', label: 'detect objects: yolox (nano 416)', params: { model: 'yolox' } },
  { step: 'detect_objects', label: 'detect objects: nanodet (m 416)', params: { model: 'nanodet' } },
  { step: 'detect_objects', label: 'detect objects: fastestdet (352)', params: { model: 'fastestdet' } },
  { step: 'upscale', label: 'upscale x2 (SPAN)', params: { factor: 2, model: 'span' }, heavy: true },
  { step: 'upscale', label: 'upscale x2 (compact)', params: { factor: 2, model: 'compact' }, heavy: true },
  { step: 'upscale', label: 'upscale x3 (ESPCN luma)', params: { factor: 3 }, heavy: true },
  { step: 'upscale', label: 'upscale x4 (animevideov3)', params: { factor: 4 }, heavy: true },
  { step: 'denoise', label: 'denoise light', params: { level: 'light' }, heavy: true },
  { step: 'denoise', label: 'denoise medium', params: { level: 'medium' }, heavy: true },
  { step: 'denoise', label: 'denoise strong', params: { level: 'strong' }, heavy: true },
];

async function frameOf(width: number, height: number): Promise<Frame> {
  const data = await sharp(fixture('messi5.jpg')).resize(width, height, { fit: 'fill' }).removeAlpha().raw().toBuffer();
  return { width, height, channels: 3, data };
}

export async function modelsSection(options: { quick: boolean }): Promise<SectionResult> {
  const full = process.env.BENCH_FULL === '1' || process.argv.includes('--full');
  // 1152x864 is the 1 MP photo of the other sections (and of the issue's per-model figures).
  const sizes = [{ w: 640, h: 480 }, { w: 1152, h: 864 }, { w: 1920, h: 1080 }];
  const LARGEST = sizes.length - 1;
  const frames = await Promise.all(sizes.map((s) => frameOf(s.w, s.h)));
  const tiny = await frameOf(96, 96);
  const prepared = new Map<string, PreparedStage<Record<string, unknown>>>();
  const rows: string[][] = [];
  const data: Record<string, unknown> = {};
  const ctx = (): StageContext => stepContext({ image: { format: 'jpeg', width: 0, height: 0, channels: 3, orientation: 1, hasAlpha: false } }, { log: silentLog });
  for (const c of CASES) {
    try {
      if (!prepared.has(c.step)) {
        const stage = await loadStage(c.step);
        prepared.set(c.step, (await stage.prepare({ log: silentLog, modelsDir: MODELS_DIR })) as PreparedStage<Record<string, unknown>>);
      }
      const run = prepared.get(c.step)!;
      progress(`models: ${c.label}`);
      const warm = await run.run({ frame: c.heavy ? tiny : frames[0]! }, c.params, ctx());
      const provider = warm.provenance?.provider ?? '';
      const model = warm.provenance?.model ?? '';
      const cells: string[] = [];
      let small = NaN;
      for (const [i, frame] of frames.entries()) {
        const reps = c.heavy ? 1 : options.quick ? 3 : 5;
        if (c.heavy && i === LARGEST && !full) {
          cells.push(`~${ms(small * (frame.width * frame.height) / (frames[1]!.width * frames[1]!.height), 0)} est.`);
          continue;
        }
        const times: number[] = [];
        for (let r = 0; r < reps; r++) {
          const a = now();
          await run.run({ frame }, c.params, ctx());
          times.push(now() - a);
        }
        const p50 = summarize(times).p50;
        if (i === 1) small = p50;
        cells.push(ms(p50));
      }
      data[c.label] = { model, provider, cells };
      rows.push([c.label, model, provider, ...cells]);
    } catch (error) {
      rows.push([c.label, '', '', `failed: ${String((error as Error).message).split('\n')[0]!.slice(0, 100)}`, '', '']);
    }
  }
  for (const p of prepared.values()) await p.close?.();
  const gpu = hasGpu();
  const markdown = [
    `Step time (ms, the stage function on a raw RGB frame of a real photo; models loaded and warmed up first), ONNX_PROVIDERS=${config.onnxProviders.join(',')}. Detectors: p50 of ${options.quick ? 3 : 5} runs. Upscale and denoise: one run; at 1920x1080 ${full ? 'measured' : 'estimated from 1152x864 by pixel count ("est."; `BENCH_FULL=1 npm run bench -- models` measures it, ~8 more minutes)'}. Upscale/denoise times include tiling and blending.`,
    '',
    table(['step / model', 'model id(s)', 'provider', '640x480 ms', '1152x864 (1 MP) ms', '1920x1080 ms'], rows),
    '',
    gpu
      ? 'A GPU is present: run `ONNX_PROVIDERS=cuda,cpu npm run bench -- models` for the CUDA figures (the provider column says which provider actually ran).'
      : '**GPU: no GPU on this machine.** On a machine with an NVIDIA GPU and the CUDA build of onnxruntime-node, run `ONNX_PROVIDERS=cuda,cpu npm run bench -- models` (CUDA_DEVICE_ID picks the GPU); the provider column shows whether CUDA actually ran or the runtime fell back to CPU.',
  ].join('\n');
  return { title: `Models: step time per model (${config.onnxProviders.join(',')})`, markdown, data };
}
