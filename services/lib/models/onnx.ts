/**
 * onnxruntime-node, loaded on first use. Its native library is the largest thing a process of
 * this product can load; processes that never run a model (the edge, the metrics sink) import
 * step manifests and tensor helpers' types but must never pay for it (test/unit/import-rules).
 */
import { createRequire } from 'node:module';
import type * as Ort from 'onnxruntime-node';

export type { Ort };

const require = createRequire(import.meta.url);
let loaded: typeof Ort | undefined;

export function ort(): typeof Ort {
  loaded ??= require('onnxruntime-node') as typeof Ort;
  return loaded;
}

