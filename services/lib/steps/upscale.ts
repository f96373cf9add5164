/**
 * upscale: super-resolution by any factor 1 < f <= 8 (see models/super-resolution/upscaler.ts
 * for which model does what). Output is exactly round(f × width) × round(f × height); alpha and
 * grey are kept. Earlier findings follow the pixels (the runner moves them by their geometry).
 */
import type { UpscaleParamsResolved } from '../shared/schema-types.js';
import { checkTiling } from '../imaging/tile-params.js';
import type { StageDefinition } from '../pipeline/stage.js';
import { MODEL_IDS } from '../models/model-ids.js';
import { planUpscale } from '../models/super-resolution/plan.js';

export const stage: StageDefinition<UpscaleParamsResolved, 'frame'> = {
  step: 'upscale',
  version: '1.0.0',
  input: 'frame',
  output: 'frame',
  check: checkTiling,
  models: (params) => [[planUpscale(params.factor, params.model, params.x4Model).modelId]],
  async prepare({ log, modelsDir }) {
    const { preloadInstalled, provenanceOf } = await import('../models/image-models.js');
    const { upscaleFrame } = await import('../models/super-resolution/upscaler.js');
    await preloadInstalled([MODEL_IDS.x2Span], { modelsDir, log });
    return {
      async run({ frame }, params, ctx) {
        const result = await upscaleFrame(frame, {
          factor: params.factor,
          x2Model: params.model,
          x4Model: params.x4Model,
          tileSize: params.tileSize,
          tileOverlap: params.tileOverlap,
        }, { modelsDir, log: ctx.log ?? log, signal: ctx.signal, heartbeat: () => ctx.heartbeat() });
        return { frame: result.frame, provenance: provenanceOf(result.models, result.note) };
      },
    };
  },
};
