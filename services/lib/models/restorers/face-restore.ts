/**
 * Face restoration on a frame: for each face with 5 landmarks, align it to the FFHQ template,
 * restore the aligned square with a model, and paste it back with a feathered mask
 * (geometry in face-align.ts). Used by the enhance_faces step.
 *
 * A "restorer" turns an aligned RGB square (0..255 floats) into a restored one. Two kinds:
 *  - a face-restoration model (GFPGAN, GPEN, CodeFormer): RGB NCHW in [-1, 1] (from the manifest
 *    contract), output the same; CodeFormer's extra input `w` (float64) gets the fidelity weight;
 *  - a fallback image model named by FACE_RESTORE_FALLBACK (e.g. the ×2 super-resolution model):
 *    applied to the aligned face, then box-downscaled back to the square's size.
 */
import { ort, type Ort } from '../onnx.js';
import type { Frame } from '../../pipeline/frame.js';
import { appError } from '../../shared/errors.js';
import type { Face } from '../../shared/schema-types.js';
import { findModel } from '../manifest.js';
import { modelInstalled, modelNotInstalled, type LoadedModel } from '../runtime.js';
import { estimateSimilarity, featherMask, pasteBack, templateFor, warpToAligned, type Point } from '../../imaging/face-align.js';
import { asTileModel, modelScale } from '../image-models.js';
import { runTiledToPlanar } from '../../imaging/tiling.js';

/** Side of the aligned square for fallback models (the size GFPGAN and CodeFormer work at). */
export const FALLBACK_SIZE = 512;

export interface Restorer {
  /** Model id (for provenance). */
  id: string;
  /** Aligned square side. */
  size: number;
  /** Share of the restored face in the result. */
  blend: number;
  fallback: boolean;
  restore(aligned: Float32Array): Promise<Float32Array>;
}

/**
 * Which model restores faces: the requested one when installed, else the fallback when set and
 * installed, else 503 model_not_installed naming `npm run models -- fetch <requested>`.
 */
export function chooseRestorationModel(requested: string, fallback: string, modelsDir: string): { id: string; fallback: boolean } {
  const entry = findModel(requested);
  if (entry.task !== 'face_restoration') throw appError('invalid_model', `model "${requested}" is not a face-restoration model`);
  if (modelInstalled(requested, modelsDir)) return { id: requested, fallback: false };
  if (fallback) {
    const fallbackEntry = findModel(fallback);
    if (!['super_resolution', 'denoise'].includes(fallbackEntry.task) || fallbackEntry.contract.colourOrder !== 'RGB') {
      throw appError('model_incompatible', `FACE_RESTORE_FALLBACK "${fallback}" must be an RGB super-resolution or denoise model`);
    }
    if (modelInstalled(fallback, modelsDir)) return { id: fallback, fallback: true };
  }
  throw modelNotInstalled(entry, modelsDir);
}

/** A face-restoration model as a Restorer (input/output normalisation from its manifest contract). */
export function restorationModelRestorer(model: LoadedModel, weight: number): Restorer {
  const { contract } = model.entry;
  if (contract.size.kind !== 'fixed' || contract.size.width !== contract.size.height || !contract.size.width) {
    throw appError('model_incompatible', `face-restoration model "${model.id}" must take a fixed square input`);
  }
  const size = contract.size.width;
  const mean = [0, 1, 2].map((c) => contract.mean[c] ?? contract.mean[0]);
  const std = [0, 1, 2].map((c) => contract.std[c] ?? contract.std[0]);
  const imageInput = model.inputNames[0];
  // Any further input is CodeFormer's fidelity w (float64 [1]); its blend is then done by the model.
  const extra = model.inputNames.slice(1);
  const feeds: Record<string, Ort.Tensor> = {};
  for (const name of extra) feeds[name] = new (ort().Tensor)('float64', Float64Array.from([weight]), [1]);
  return {
    id: model.id,
    size,
    blend: extra.length > 0 ? 1 : weight,
    fallback: false,
    async restore(aligned) {
      const n = size * size;
      const planar = new Float32Array(3 * n);
      for (let c = 0; c < 3; c++) for (let i = 0; i < n; i++) planar[c * n + i] = (aligned[i * 3 + c] * contract.scale - mean[c]) / std[c];
      const outputs = await model.run({ [imageInput]: new (ort().Tensor)('float32', planar, [1, 3, size, size]), ...feeds });
      const output = outputs[model.outputNames[0]];
      if (output.dims.join(',') !== `1,3,${size},${size}`) {
        throw appError('model_run_failed', `model "${model.id}" gave shape [${output.dims.join(',')}], expected [1,3,${size},${size}]`);
      }
      const data = output.data as Float32Array;
      const restored = new Float32Array(3 * n);
      for (let c = 0; c < 3; c++) {
        for (let i = 0; i < n; i++) {
          const v = (data[c * n + i] * std[c] + mean[c]) / contract.scale;
          restored[i * 3 + c] = v < 0 ? 0 : v > 255 ? 255 : v;
        }
      }
      return restored;
    },
  };
}

/** An RGB image model ([0,1] in and out, integer scale k) as a Restorer: model, then k×k box average back. */
export function fallbackRestorer(model: LoadedModel, weight: number, size = FALLBACK_SIZE): Restorer {
  const k = modelScale(model);
  return {
    id: model.id,
    size,
    blend: weight,
    fallback: true,
    async restore(aligned) {
      const n = size * size;
      const planar = new Float32Array(3 * n);
      for (let c = 0; c < 3; c++) for (let i = 0; i < n; i++) planar[c * n + i] = aligned[i * 3 + c] / 255;
      const big = await runTiledToPlanar({ width: size, height: size, channels: 3, data: planar }, asTileModel(model),
        { scale: k, tileSize: size, overlap: 0 });
      const bw = size * k;
      const restored = new Float32Array(3 * n);
      for (let c = 0; c < 3; c++) {
        const plane = c * bw * bw;
        for (let v = 0; v < size; v++) {
          for (let u = 0; u < size; u++) {
            let sum = 0;
            for (let dy = 0; dy < k; dy++) for (let dx = 0; dx < k; dx++) sum += big.data[plane + (v * k + dy) * bw + u * k + dx];
            const value = (sum / (k * k)) * 255;
            restored[(v * size + u) * 3 + c] = value < 0 ? 0 : value > 255 ? 255 : value;
          }
        }
      }
      return restored;
    },
  };
}

/** The 5 landmarks of a face as points, or undefined when it has none (or malformed ones). */
export function faceLandmarks(face: Face): Point[] | undefined {
  const points = face.landmarks;
  if (!points || points.length !== 5) return undefined;
  if (!points.every((p) => p.length === 2 && Number.isFinite(p[0]) && Number.isFinite(p[1]))) return undefined;
  return points.map(([x, y]) => [x, y] as const);
}

/** The faces to restore: those with landmarks, optionally only the one nearest the centre, best score first, at most maxFaces. */
export function selectFaces(faces: readonly Face[], width: number, height: number, options: { onlyCenterFace: boolean; maxFaces: number }): Face[] {
  let usable = faces.filter((f) => faceLandmarks(f) !== undefined);
  if (options.onlyCenterFace && usable.length > 1) {
    const distance = (f: Face) => Math.hypot(f.box.x + f.box.width / 2 - width / 2, f.box.y + f.box.height / 2 - height / 2);
    usable = [usable.reduce((best, f) => (distance(f) < distance(best) ? f : best))];
  }
  return [...usable].sort((a, b) => b.score - a.score).slice(0, options.maxFaces);
}

/**
 * Restores `faces` on a copy of `frame` (colour channels only; alpha untouched). Grey frames go
 * through the model as R = G = B and come back as the mean.
 */
export async function restoreFaces(frame: Frame, faces: readonly Face[], restorer: Restorer,
  options: { signal?: AbortSignal; heartbeat?: () => void } = {}): Promise<{ frame: Frame; restored: number }> {
  const colourChannels = frame.channels <= 2 ? 1 : 3;
  const image = { width: frame.width, height: frame.height, channels: frame.channels, data: Buffer.from(frame.data) };
  const { size } = restorer;
  const template = templateFor(size);
  const mask = featherMask(size);
  let restored = 0;
  for (const face of faces) {
    options.signal?.throwIfAborted();
    const landmarks = faceLandmarks(face);
    if (!landmarks) continue;
    let toAligned;
    try {
      toAligned = estimateSimilarity(landmarks, template);
    } catch {
      continue; // degenerate landmarks: nothing sensible to align
    }
    const aligned = warpToAligned(image, colourChannels, toAligned, size);
    const rgb = colourChannels === 3 ? aligned : greyToRgbFloat(aligned);
    const result = await restorer.restore(rgb);
    pasteBack(image, colourChannels, colourChannels === 3 ? result : rgbToGreyFloat(result), size, toAligned, mask, restorer.blend);
    restored++;
    options.heartbeat?.();
  }
  return { frame: { width: frame.width, height: frame.height, channels: frame.channels, data: image.data }, restored };
}

function greyToRgbFloat(grey: Float32Array): Float32Array {
  const out = new Float32Array(grey.length * 3);
  for (let i = 0; i < grey.length; i++) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = grey[i];
  return out;
}

function rgbToGreyFloat(rgb: Float32Array): Float32Array {
  const out = new Float32Array(rgb.length / 3);
  for (let i = 0; i < out.length; i++) out[i] = (rgb[3 * i] + rgb[3 * i + 1] + rgb[3 * i + 2]) / 3;
  return out;
}
