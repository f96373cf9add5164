/**
 * denoise: same-size noise removal at three strengths (light, medium, strong); the recipes and
 * their measurements are in services/lib/models/denoiser.ts. Alpha passes through unchanged.
 */
import type { DenoiseParams, DenoiseParamsResolved } from '../shared/schema-types.js';
import { checkTiling } from '../imaging/tile-params.js';
import type { StageDefinition } from '../pipeline/stage.js';
import { MODEL_IDS } from '../models/model-ids.js';

export type DenoiseLevel = NonNullable<DenoiseParams['level']>;

/** The models a level needs for a frame with `colourChannels` colour channels. */
export function denoiseModelIds(level: DenoiseLevel, colourChannels: 1 | 3): string[] {
  const dncnn = colourChannels === 1 ? MODEL_IDS.denoiseGray : MODEL_IDS.denoiseColor;
  switch (level) {
    case 'light': return [dncnn];
    case 'medium': return [dncnn, MODEL_IDS.x2Span];
    case 'strong': return [MODEL_IDS.x2Compact];
  }
}

export const stage: StageDefinition<DenoiseParamsResolved, 'frame'> = {
  step: 'denoise',
  version: '1.0.0',
  input: 'frame',
  output: 'frame',
  check: checkTiling,
  // Colour or grey is known only once decoded: a job needs the models of both.
  models: (params) => [...new Set([...denoiseModelIds(params.level, 3), ...denoiseModelIds(params.level, 1)])].map((id) => [id]),
  async prepare({ log, modelsDir }) {
    const { preloadInstalled, provenanceOf } = await import('../models/image-models.js');
    const { denoiseFrame } = await import('../models/denoiser.js');
    await preloadInstalled([MODEL_IDS.denoiseColor, MODEL_IDS.denoiseGray], { modelsDir, log });
    return {
      async run({ frame }, params, ctx) {
        const result = await denoiseFrame(frame, params, { modelsDir, log: ctx.log ?? log, signal: ctx.signal, heartbeat: () => ctx.heartbeat() });
        return { frame: result.frame, provenance: provenanceOf(result.models, result.note) };
      },
    };
  },
};
