/**
 * The ONNX model runtime: one inference session per model per process, created when a stage
 * prepares (never per message), after the file's SHA-256 is checked against the manifest.
 *
 * Execution providers come from ONNX_PROVIDERS in order (`cuda`, `cpu`); when CUDA cannot be
 * created (no GPU, CPU-only onnxruntime build, driver missing) the session falls back to CPU and
 * says so in the log and in `provider`. Models are never downloaded here: a missing file is a
 * 503 `model_not_installed` pointing at `npm run models -- fetch <id>`.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { ort, type Ort } from './onnx.js';
import { loadConfig, type Config } from '../shared/config.js';
import { AppError, appError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { findModel, modelPath, type ModelEntry } from './manifest.js';
import { padRgb, type RgbImage } from './tensor.js';

export interface LoadedModel {
  id: string;
  sha256: string;
  provider: string;
  inputNames: readonly string[];
  outputNames: readonly string[];
  entry: ModelEntry;
  run(feeds: Record<string, Ort.Tensor>): Promise<Record<string, Ort.Tensor>>;
}

/** Sessions by "<modelsDir>\0<id>": a promise, so concurrent first calls share one load. */
const sessions = new Map<string, Promise<LoadedModel>>();
/** File digests by "<path>\0<size>\0<mtime>": hashing a 300 MB model once per process is plenty. */
const digests = new Map<string, Promise<string>>();

/** The error every caller gets for a model whose file is not in MODELS_DIR. */
export function modelNotInstalled(entry: ModelEntry, modelsDir: string): AppError {
  return appError('model_not_installed',
    `model "${entry.id}" is not installed: ${modelPath(entry, modelsDir)} is missing; run \`npm run models -- fetch ${entry.id}\``,
    { details: { model: entry.id, file: entry.file } });
}

/** True when the model's file exists in modelsDir (size and checksum are checked at load). */
export function modelInstalled(id: string, modelsDir: string): boolean {
  return existsSync(modelPath(findModel(id), modelsDir));
}

/** SHA-256 of a file, streamed, cached per path+size+mtime. */
export function sha256File(file: string): Promise<string> {
  const st = statSync(file);
  const key = `${file}\0${st.size}\0${st.mtimeMs}`;
  let digest = digests.get(key);
  if (!digest) {
    digest = new Promise<string>((resolve, reject) => {
      const hash = createHash('sha256');
      createReadStream(file).on('data', (chunk) => hash.update(chunk)).on('error', reject).on('end', () => resolve(hash.digest('hex')));
    });
    digests.set(key, digest);
    digest.catch(() => digests.delete(key));
  }
  return digest;
}

/**
 * The model's session, loaded once per process (per models folder). Throws AppError:
 * 400 unknown_model, 503 model_not_installed, 500 model_corrupt (checksum or size mismatch,
 * not retryable), 500 model_load_failed (onnxruntime refused the file).
 */
export async function loadModel(id: string, options: { modelsDir: string; log?: Logger }): Promise<LoadedModel> {
  const key = `${options.modelsDir}\0${id}`;
  let loading = sessions.get(key);
  if (!loading) {
    loading = createModel(id, options);
    sessions.set(key, loading);
    // A failed load is not cached: after `models fetch` the next message can succeed.
    loading.catch(() => sessions.delete(key));
  }
  return loading;
}

async function createModel(id: string, options: { modelsDir: string; log?: Logger }): Promise<LoadedModel> {
  const entry = findModel(id);
  const file = modelPath(entry, options.modelsDir);
  if (!existsSync(file)) throw modelNotInstalled(entry, options.modelsDir);
  const size = statSync(file).size;
  if (entry.bytes !== null && size !== entry.bytes) {
    throw modelCorrupt(entry, file, `it is ${size} bytes, the manifest says ${entry.bytes}`);
  }
  const sha256 = await sha256File(file);
  if (entry.sha256 !== null && sha256 !== entry.sha256) {
    throw modelCorrupt(entry, file, `its sha256 is ${sha256}, the manifest says ${entry.sha256}`);
  }
  if (entry.sha256 === null) options.log?.warn({ model: id, sha256 }, 'model has no pinned checksum in the manifest; loading it unverified');

  const { session, provider } = await createSession(file, entry, options.log);
  options.log?.info({ model: id, provider, sha256, inputs: session.inputNames, outputs: session.outputNames }, 'model loaded');
  return {
    id,
    sha256,
    provider,
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    entry,
    async run(feeds) {
      try {
        return (await session.run(feeds)) as Record<string, Ort.Tensor>;
      } catch (error) {
        throw appError('model_run_failed', `model "${id}" failed: ${(error as Error).message}`, { cause: error });
      }
    },
  };
}

function modelCorrupt(entry: ModelEntry, file: string, why: string): AppError {
  return appError('model_corrupt',
    `model "${entry.id}" at ${file} is corrupt: ${why}; delete it and run \`npm run models -- fetch ${entry.id}\``,
    { details: { model: entry.id, file: entry.file } });
}

/** The settings ONNX Runtime sessions are made with. */
export type RuntimeSettings = Pick<Config, 'onnxProviders' | 'cudaDeviceId' | 'cudaMemLimitBytes' | 'onnxThreads' | 'onnxSpinWait'>;

let settings: RuntimeSettings | undefined;

/** A stage process passes its Config before loading models; otherwise the environment is read on first use. */
export function configureRuntime(config: RuntimeSettings): void {
  settings = config;
}

function runtimeSettings(): RuntimeSettings {
  settings ??= loadConfig();
  return settings;
}

/** The execution provider configurations to try, in order; CPU always ends the list. */
export function providerChain(providers: readonly string[] = runtimeSettings().onnxProviders, config: RuntimeSettings = runtimeSettings()): { name: string; config: Ort.InferenceSession.ExecutionProviderConfig }[] {
  const chain: { name: string; config: Ort.InferenceSession.ExecutionProviderConfig }[] = [];
  for (const raw of providers) {
    const name = raw.toLowerCase();
    if (chain.some((c) => c.name === name)) continue;
    if (name === 'cuda') {
      const cuda: Record<string, unknown> = { name: 'cuda', deviceId: config.cudaDeviceId };
      // Passed through to the CUDA provider's options by onnxruntime-node builds that read them.
      if (config.cudaMemLimitBytes > 0) cuda.gpu_mem_limit = String(config.cudaMemLimitBytes);
      chain.push({ name, config: cuda as unknown as Ort.InferenceSession.ExecutionProviderConfig });
    } else if (name === 'cpu') {
      chain.push({ name, config: 'cpu' });
    }
  }
  if (!chain.some((c) => c.name === 'cpu')) chain.push({ name: 'cpu', config: 'cpu' });
  return chain;
}

async function createSession(file: string, entry: ModelEntry, log?: Logger): Promise<{ session: Ort.InferenceSession; provider: string }> {
  const config = runtimeSettings();
  const unknown = config.onnxProviders.filter((p) => !['cuda', 'cpu'].includes(p.toLowerCase()));
  if (unknown.length > 0) log?.warn({ providers: unknown }, 'ignoring unknown ONNX_PROVIDERS entries (known: cuda, cpu)');
  let lastError: unknown;
  for (const { name, config: providerConfig } of providerChain(config.onnxProviders, config)) {
    const options: Ort.InferenceSession.SessionOptions = {
      executionProviders: [providerConfig],
      graphOptimizationLevel: 'all',
      // 3 = errors only: some exported models make onnxruntime print hundreds of harmless warnings.
      logSeverityLevel: 3,
    };
    if (config.onnxThreads > 0) options.intraOpNumThreads = config.onnxThreads;
    if (!config.onnxSpinWait) options.extra = { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } };
    try {
      const session = await ort().InferenceSession.create(file, options);
      if (name !== config.onnxProviders[0]?.toLowerCase()) {
        log?.warn({ model: entry.id, provider: name, wanted: config.onnxProviders }, 'model runs on a fallback execution provider');
      }
      return { session, provider: name };
    } catch (error) {
      lastError = error;
      log?.warn({ model: entry.id, provider: name, err: (error as Error).message }, 'execution provider unavailable, trying the next');
    }
  }
  throw appError('model_load_failed', `model "${entry.id}" could not be loaded: ${(lastError as Error)?.message}`,
    { cause: lastError });
}

/**
 * Runs the model once on zeros so the first real message does not pay for memory planning and
 * kernel selection. `shape` defaults to the contract's first input with symbolic dimensions
 * replaced by 1 (batch) or 64 (spatial).
 */
export async function warmUp(model: LoadedModel, shape?: readonly number[]): Promise<void> {
  const spec = model.entry.contract.inputs[0];
  const dims = shape ?? spec.shape.map((d, i) => (typeof d === 'number' ? d : i === 0 ? 1 : 64));
  const size = dims.reduce((a, b) => a * b, 1);
  const feeds: Record<string, Ort.Tensor> = { [model.inputNames[0]]: new (ort().Tensor)('float32', new Float32Array(size), dims) };
  await model.run(feeds);
}

/**
 * Input-size bucketing for dynamic models: rounds height and width up to a multiple so that
 * photos of slightly different sizes reuse the same shape (onnxruntime re-plans memory for each
 * new shape). Pad the image to the bucket (tensor.padRgb) and crop the output back.
 */
export function bucketSize(height: number, width: number, multiple = 64): { height: number; width: number } {
  if (!Number.isInteger(multiple) || multiple < 1) throw new RangeError(`bucket multiple must be a positive integer, got ${multiple}`);
  return { height: Math.max(multiple, Math.ceil(height / multiple) * multiple), width: Math.max(multiple, Math.ceil(width / multiple) * multiple) };
}

/**
 * Pads an image to its bucket (edge pixels repeated, so image-to-image models see no artificial
 * border). Crop the model's output back to `width x height` (times the scale factor).
 */
export function padToBucket(image: RgbImage, multiple = 64): { image: RgbImage; width: number; height: number } {
  const bucket = bucketSize(image.height, image.width, multiple);
  return { image: padRgb(image, bucket.width, bucket.height, { mode: 'edge' }), width: image.width, height: image.height };
}

