/**
 * Super-resolution of a whole frame by any factor 1 < f <= 8, shared by the upscale step and
 * enhance_faces' background upscaling.
 *
 * Which model:
 *  - ×2: 2xNomosUni SPAN by default (27.6 dB vs bicubic 26.2 on a messi5 crop; compact, trained
 *    for degraded input, re-sharpens clean photos and scores 24.4), or compact, RGB;
 *  - ×3: ESPCN on the luma channel (fixed 224×224 input, so always tiled); chroma comes from a
 *    bicubic upscale: out = bicubic RGB + (model Y − Y of the bicubic RGB), which is the same as
 *    replacing the luma of the bicubic image in YCbCr;
 *  - ×4: Real-ESRGAN animevideov3 (SRVGG compact), RGB. Trained for anime: on drawn content it
 *    beats bicubic (HappyFish: +1.4 dB) but on photo crops it loses 0.5-1.5 dB PSNR to bicubic
 *    (it flattens texture); the manifest's photo x4 models (realesr-general-x4v3,
 *    RealESRGAN_x4plus) are the better choice where installed;
 *  - other factors: the smallest model whose scale reaches the factor (x2 below 2, x4 between 2
 *    and 4), then a lanczos3 downscale to the exact size, because a model's own detail survives a
 *    downscale but an upscale after the model only interpolates; above 4 the x4 model then a
 *    lanczos3 upscale (chaining two models costs 4-16× more for little gain).
 * Output size is always round(f × width) × round(f × height), exact for integer factors.
 * Alpha is resampled with lanczos3 straight to the output size (models know nothing of alpha).
 * Grey frames go through RGB models as R = G = B and come back as the mean of the three.
 */
import type { Frame } from '../../pipeline/frame.js';
import { appError } from '../../shared/errors.js';
import type { LoadedModel } from '../runtime.js';
import { joinAlpha, resizePixels, rgbToGreyMean, splitAlpha } from '../../imaging/frame-ops.js';
import {
  asTileModel, loadImageModel, modelDefaultTile, modelFixedSize, modelScale, modelUse,
  type ModelEnv, type ModelUse,
} from '../image-models.js';
import { byteSource, runTiled, runTiledToBytes, toByte, type PlanarImage } from '../../imaging/tiling.js';
import { planUpscale, type X2Model, type X4Model } from './plan.js';


export interface UpscaleRequest {
  factor: number;
  /** Which ×2 model (default span: higher PSNR than compact on clean photos, and faster). */
  x2Model?: X2Model;
  /** Which ×4 model (factors above 2 except 3; default animevideov3, the one on these machines). */
  x4Model?: X4Model;
  /** Tile side in input pixels (default: the model's manifest value). Ignored by fixed-size models. */
  tileSize?: number;
  /** Tile overlap in input pixels (default 16). */
  tileOverlap?: number;
}

export interface UpscaleOutcome {
  frame: Frame;
  models: ModelUse[];
  note: string;
}

export const DEFAULT_TILE_OVERLAP = 16;
/** Edge-replicated context around the image, so the models' zero padding does not darken its border. */
export const BORDER_PAD = 16;
/** sharp/libvips' own pixel ceiling (0x3FFF²): larger outputs cannot be resampled or encoded. */
export const MAX_OUTPUT_PIXELS = 268_402_689;

export function upscaledSize(width: number, height: number, factor: number): { width: number; height: number } {
  return { width: Math.max(1, Math.round(width * factor)), height: Math.max(1, Math.round(height * factor)) };
}

export async function upscaleFrame(frame: Frame, request: UpscaleRequest, env: ModelEnv): Promise<UpscaleOutcome> {
  const plan = planUpscale(request.factor, request.x2Model, request.x4Model);
  const out = upscaledSize(frame.width, frame.height, request.factor);
  const modelPixels = frame.width * plan.modelScale * frame.height * plan.modelScale;
  if (out.width * out.height > MAX_OUTPUT_PIXELS || modelPixels > MAX_OUTPUT_PIXELS) {
    throw appError('output_too_large', `upscaling ${frame.width}x${frame.height} by ${request.factor} gives more than ${MAX_OUTPUT_PIXELS} pixels`,
      { details: { width: out.width, height: out.height, maxPixels: MAX_OUTPUT_PIXELS } });
  }
  const model = await loadImageModel(plan.modelId, env);
  const { colour, colourChannels, alpha } = splitAlpha(frame);
  const scaled = plan.lumaOnly
    ? await upscaleLuma(model, colour, colourChannels, frame.width, frame.height, request, env)
    : await runRgbModel(model, colour, colourChannels, frame.width, frame.height, request, env);
  const sw = frame.width * plan.modelScale;
  const sh = frame.height * plan.modelScale;
  const resized = sw === out.width && sh === out.height;
  const finalColour = resized ? scaled : await resizePixels(scaled, sw, sh, colourChannels, out.width, out.height, 'lanczos3');
  const finalAlpha = alpha && await resizePixels(alpha, frame.width, frame.height, 1, out.width, out.height, 'lanczos3');
  const parts = [`${plan.modelId} x${plan.modelScale}`];
  if (plan.lumaOnly) parts.push('on luma, chroma bicubic');
  if (!resized) parts.push(`lanczos3 to ${out.width}x${out.height}`);
  if (alpha) parts.push('alpha lanczos3');
  if (colourChannels === 1 && !plan.lumaOnly) parts.push('grey as RGB');
  return {
    frame: joinAlpha(finalColour, colourChannels, finalAlpha, out.width, out.height),
    models: [modelUse(model)],
    note: `upscaled ${frame.width}x${frame.height} by ${request.factor}: ${parts.join(', ')}`,
  };
}

function tileOptions(model: LoadedModel, request: Pick<UpscaleRequest, 'tileSize' | 'tileOverlap'>, env: ModelEnv, fallbackTile = 256) {
  const fixed = modelFixedSize(model);
  return {
    scale: modelScale(model),
    tileSize: fixed ?? request.tileSize ?? modelDefaultTile(model, fallbackTile),
    overlap: request.tileOverlap ?? DEFAULT_TILE_OVERLAP,
    fixedTileSize: fixed !== undefined,
    borderPad: BORDER_PAD,
    signal: env.signal,
    onTile: () => env.heartbeat?.(),
  };
}

/**
 * An RGB image model (SR ×2/×4, colour denoiser) over 8-bit colour pixels, tiled. Grey input is
 * fed as R = G = B and the output averaged back to grey. Returns pixels at the model's scale.
 */
export async function runRgbModel(model: LoadedModel, colour: Buffer, colourChannels: 1 | 3, width: number, height: number,
  request: Pick<UpscaleRequest, 'tileSize' | 'tileOverlap'>, env: ModelEnv): Promise<Buffer> {
  const source = byteSource(colour, width, height, colourChannels, colourChannels === 1 ? [0, 0, 0] : [0, 1, 2]);
  const rgb = await runTiledToBytes(source, asTileModel(model), tileOptions(model, request, env));
  return colourChannels === 1 ? rgbToGreyMean(rgb) : rgb;
}

/** A one-channel model (grey denoiser) over grey pixels, tiled. */
export async function runGreyModel(model: LoadedModel, grey: Buffer, width: number, height: number,
  request: Pick<UpscaleRequest, 'tileSize' | 'tileOverlap'>, env: ModelEnv): Promise<Buffer> {
  return runTiledToBytes(byteSource(grey, width, height, 1, [0]), asTileModel(model), tileOptions(model, request, env));
}

/** BT.601 full-range luma (what ESPCN was trained on: PIL's YCbCr), in [0,1]. */
function lumaPlane(rgb: Buffer, width: number, height: number): PlanarImage {
  const n = width * height;
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = (0.299 * rgb[3 * i] + 0.587 * rgb[3 * i + 1] + 0.114 * rgb[3 * i + 2]) / 255;
  return { width, height, channels: 1, data };
}

/** ESPCN-style luma model: model luma, bicubic chroma. */
async function upscaleLuma(model: LoadedModel, colour: Buffer, colourChannels: 1 | 3, width: number, height: number,
  request: UpscaleRequest, env: ModelEnv): Promise<Buffer> {
  const scale = modelScale(model);
  const outW = width * scale;
  const outH = height * scale;
  const options = tileOptions(model, request, env);
  if (colourChannels === 1) {
    const out = Buffer.alloc(outW * outH);
    await runTiled(byteSource(colour, width, height, 1, [0]), asTileModel(model), options, (firstRow, rows, block) => {
      for (let i = 0; i < rows * outW; i++) out[firstRow * outW + i] = toByte(block[i]);
    });
    return out;
  }
  const out = await resizePixels(colour, width, height, 3, outW, outH, 'cubic');
  await runTiled(lumaPlane(colour, width, height), asTileModel(model), options, (firstRow, rows, block) => {
    for (let i = 0; i < rows * outW; i++) {
      const p = (firstRow * outW + i) * 3;
      const baseLuma = 0.299 * out[p] + 0.587 * out[p + 1] + 0.114 * out[p + 2];
      const delta = Math.min(1, Math.max(0, block[i])) * 255 - baseLuma;
      out[p] = clampByte(out[p] + delta);
      out[p + 1] = clampByte(out[p + 1] + delta);
      out[p + 2] = clampByte(out[p + 2] + delta);
    }
  });
  return out;
}

function clampByte(v: number): number {
  const b = Math.round(v);
  return b > 255 ? 255 : b >= 0 ? b : 0;
}
