/**
 * Image-to-image models (super-resolution, denoising, face restoration) as the restore stages
 * use them: the model ids they rely on, loading through the shared runtime, and a model call
 * as a TileModel for the tiler.
 */
import { ort, type Ort } from './onnx.js';
import type { Logger } from '../shared/logger.js';
import { loadModel, modelInstalled, type LoadedModel } from './runtime.js';
import type { PlanarImage, TileModel } from '../imaging/tiling.js';

/** Model ids in models/manifest.json that the restore stages use. */

/** What a stage needs to run models. */
export interface ModelEnv {
  modelsDir: string;
  log?: Logger;
  signal?: AbortSignal;
  /** Called now and then during long work (tiles) to keep the job's message alive. */
  heartbeat?: () => void;
}

/** A model that was used, for provenance. */
export interface ModelUse {
  id: string;
  sha256: string;
  provider: string;
}


export function loadImageModel(id: string, env: ModelEnv): Promise<LoadedModel> {
  return loadModel(id, { modelsDir: env.modelsDir, log: env.log });
}

/**
 * prepare(): loads the models a step uses by default when they are installed, so the first job
 * does not pay for loading (and a corrupt file shows in the log at start). Missing or failing
 * models are left to admit() and run(), which report them to the caller.
 */
export async function preloadInstalled(ids: readonly string[], env: ModelEnv): Promise<void> {
  for (const id of ids) {
    try {
      if (modelInstalled(id, env.modelsDir)) await loadImageModel(id, env);
    } catch (error) {
      env.log?.warn({ model: id, err: (error as Error).message }, 'model could not be preloaded');
    }
  }
}

export function modelUse(model: LoadedModel): ModelUse {
  return { id: model.id, sha256: model.sha256, provider: model.provider };
}

/** Provenance fields for the models a step used (several are joined with "+", in order of use). */
export function provenanceOf(uses: ModelUse[], note: string): { model?: string; modelSha256?: string; provider?: string; note: string } {
  if (uses.length === 0) return { note };
  return {
    model: uses.map((u) => u.id).join('+'),
    modelSha256: uses.map((u) => u.sha256).join('+'),
    provider: [...new Set(uses.map((u) => u.provider))].join('+'),
    note,
  };
}

/** The model's integer scale (output / input size) from its manifest contract. */
export function modelScale(model: LoadedModel): number {
  return model.entry.contract.scaleFactor ?? 1;
}

/** The manifest's tile edge for the model, or `fallback`. */
export function modelDefaultTile(model: LoadedModel, fallback: number): number {
  return model.entry.contract.defaultTile ?? fallback;
}

/** Fixed square input side of a model (ESPCN: 224), or undefined for dynamic shapes. */
export function modelFixedSize(model: LoadedModel): number | undefined {
  const size = model.entry.contract.size;
  return size.kind === 'fixed' ? size.width : undefined;
}

/**
 * The model as a TileModel: one planar float tile in (1 × C × H × W, the model's own value
 * range), its first output back. Extra inputs (CodeFormer's fidelity) come from `extraFeeds`.
 */
export function asTileModel(model: LoadedModel, extraFeeds: Record<string, Ort.Tensor> = {}): TileModel {
  const inputName = model.inputNames[0];
  const outputName = model.outputNames[0];
  return async (tile: PlanarImage): Promise<PlanarImage> => {
    const input = new (ort().Tensor)('float32', tile.data, [1, tile.channels, tile.height, tile.width]);
    const outputs = await model.run({ [inputName]: input, ...extraFeeds });
    const output = outputs[outputName];
    const dims = output.dims;
    if (dims.length !== 4 || dims[0] !== 1 || output.type !== 'float32') {
      throw new Error(`model ${model.id} gave a ${output.type} output of shape [${dims.join(',')}], expected float32 [1,C,H,W]`);
    }
    return { channels: dims[1], height: dims[2], width: dims[3], data: output.data as Float32Array };
  };
}
