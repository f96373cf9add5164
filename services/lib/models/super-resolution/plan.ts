/**
 * Which super-resolution model serves a factor (see upscaler.ts for why). Pure, so that the
 * upscale and enhance_faces manifests say which model a job needs without loading any model code.
 */
import { appError } from '../../shared/errors.js';
import { MODEL_IDS } from '../model-ids.js';

export type X2Model = 'compact' | 'span';
export type X4Model = 'animevideov3' | 'general-x4v3' | 'x4plus';

export const X4_IDS: Record<X4Model, string> = { animevideov3: MODEL_IDS.x4, 'general-x4v3': MODEL_IDS.x4General, x4plus: MODEL_IDS.x4Plus };

export interface UpscalePlan {
  modelId: string;
  /** Model scale (2, 3 or 4). */
  modelScale: number;
  /** The model works on luma only (ESPCN). */
  lumaOnly: boolean;
}

export const MIN_FACTOR = 1;
export const MAX_FACTOR = 8;

/** The model for a factor (pure: the manifests name it as the model a job needs, and run() uses it). */
export function planUpscale(factor: number, x2Model: X2Model = 'span', x4Model: X4Model = 'animevideov3'): UpscalePlan {
  if (!Number.isFinite(factor) || factor <= MIN_FACTOR || factor > MAX_FACTOR) {
    throw appError('invalid_factor', `factor must be a number above ${MIN_FACTOR} and at most ${MAX_FACTOR}, got ${factor}`);
  }
  const x2 = { modelId: x2Model === 'span' ? MODEL_IDS.x2Span : MODEL_IDS.x2Compact, modelScale: 2, lumaOnly: false };
  if (factor === 3) return { modelId: MODEL_IDS.x3Y, modelScale: 3, lumaOnly: true };
  if (factor <= 2) return x2;
  return { modelId: X4_IDS[x4Model] ?? MODEL_IDS.x4, modelScale: 4, lumaOnly: false };
}
