/**
 * Per-process model cache for detection stages: the default model is loaded and warmed up in
 * prepare(); other selectable models load on first use and stay loaded. Loading goes through
 * runtime.loadModel (one session per model per process, checksum verified).
 */
import type { Logger } from '../shared/logger.js';
import { findModel } from './manifest.js';
import { loadModel, modelInstalled, modelNotInstalled, warmUp, type LoadedModel } from './runtime.js';

export class DetectorModels {
  private readonly models = new Map<string, Promise<LoadedModel>>();
  private readonly ready = new Map<string, LoadedModel>();

  constructor(private readonly options: { modelsDir: string; log?: Logger }) {}

  /** The model, loaded and warmed once; a failed load is retried on the next call. */
  get(id: string): Promise<LoadedModel> {
    let loading = this.models.get(id);
    if (!loading) {
      loading = (async () => {
        const model = await loadModel(id, this.options);
        const started = performance.now();
        await warmUp(model, warmUpShape(model));
        this.options.log?.debug({ model: id, ms: Math.round(performance.now() - started) }, 'model warmed up');
        this.ready.set(id, model);
        return model;
      })();
      this.models.set(id, loading);
      loading.catch(() => this.models.delete(id));
    }
    return loading;
  }

  /** What describe() reports: the loaded models and their execution providers. */
  describe(): { model: string; provider: string; sha256: string }[] {
    return [...this.ready.values()].map((m) => ({ model: m.id, provider: m.provider, sha256: m.sha256 }));
  }
}

/** Dynamic models warm up at 640x640 (their usual bucket); fixed ones at their own size. */
function warmUpShape(model: LoadedModel): number[] {
  const spec = model.entry.contract.inputs[0];
  return spec.shape.map((d, i) => (typeof d === 'number' ? d : i === 0 ? 1 : 640));
}

/** admit(): refuses a job whose model file is missing here, before it is queued. */
export function assertInstalled(id: string, modelsDir: string): void {
  const entry = findModel(id);
  if (!modelInstalled(id, modelsDir)) throw modelNotInstalled(entry, modelsDir);
}
