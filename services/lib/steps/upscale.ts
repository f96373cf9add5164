/**
 * upscale: super-resolution by any factor 1 < f <= 8 (see upscaler.ts for which model does what).
 * Output is exactly round(f × width) × round(f × height); alpha and grey are kept.
 */
import type { UpscaleParamsResolved } from '../shared/schema-types.js';
import { checkTiling } from '../imaging/tiling.js';
import type { StageDefinition } from '../pipeline/stage.js';
import { scaleFindings } from '../imaging/frame-ops.js';
import { MODEL_IDS, preloadInstalled, provenanceOf, requireInstalled } from '../models/image-models.js';
import { planUpscale, upscaleFrame } from '../models/super-resolution/upscaler.js';

export const stage: StageDefinition<UpscaleParamsResolved, 'frame'> = {
  step: 'upscale',
  input: 'frame',
  output: 'frame',
  admit(params, { modelsDir }) {
    checkTiling(params);
    requireInstalled([planUpscale(params.factor, params.model, params.x4Model).modelId], modelsDir);
  },
  async prepare({ log, modelsDir }) {
    await preloadInstalled([MODEL_IDS.x2Span], { modelsDir, log });
    return {
      async run({ frame }, params, ctx) {
        checkTiling(params);
        const result = await upscaleFrame(frame, {
          factor: params.factor,
          x2Model: params.model,
          x4Model: params.x4Model,
          tileSize: params.tileSize,
          tileOverlap: params.tileOverlap,
        }, { modelsDir, log: ctx.log ?? log, signal: ctx.signal, heartbeat: () => ctx.heartbeat() });
        return {
          frame: result.frame,
          // Earlier faces/objects follow the pixels (later steps and the result use the new size).
          findings: scaleFindings(ctx.findings, result.frame.width / frame.width, result.frame.height / frame.height),
          provenance: provenanceOf(result.models, result.note),
        };
      },
    };
  },
};
