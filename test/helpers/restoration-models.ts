/**
 * Tiny ONNX models with the face-restoration contract (RGB NCHW [-1,1] in and out), written at
 * test time because no real restoration model is available here:
 *  - "invert": output = −input (a colour negative: p -> 255 − p);
 *  - "fidelity": CodeFormer's two inputs, output = −input · w (w: float64 [1]).
 * Plus a temporary MODELS_DIR with them, links to the shared detector and SR models, and a
 * manifest copy whose restoration entries carry the generated files' sizes and checksums.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import { MODELS_DIR, REPO_ROOT } from './paths.js';

const { onnx } = onnxProto;
const FLOAT = 1;
const DOUBLE = 11;

function valueInfo(name: string, elemType: number, dims: number[]) {
  return { name, type: { tensorType: { elemType, shape: { dim: dims.map((dimValue) => ({ dimValue })) } } } };
}

export function restorationModelBytes(kind: 'invert' | 'fidelity', size: number): Buffer {
  const image = valueInfo('input', FLOAT, [1, 3, size, size]);
  const output = valueInfo('output', FLOAT, [1, 3, size, size]);
  const graph = kind === 'invert'
    ? { name: 'invert', node: [{ opType: 'Neg', input: ['input'], output: ['output'] }], input: [image], output: [output] }
    : {
        name: 'fidelity',
        node: [
          { opType: 'Cast', input: ['w'], output: ['w_float'], attribute: [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: FLOAT }] },
          { opType: 'Mul', input: ['input', 'w_float'], output: ['scaled'] },
          { opType: 'Neg', input: ['scaled'], output: ['output'] },
        ],
        input: [image, valueInfo('w', DOUBLE, [1])],
        output: [output],
      };
  const model = onnx.ModelProto.create({ irVersion: 7, producerName: 'photolab-tests', opsetImport: [{ domain: '', version: 13 }], graph });
  return Buffer.from(onnx.ModelProto.encode(model).finish());
}

export interface TestModels {
  modelsDir: string;
  manifestPath: string;
}

/**
 * A MODELS_DIR with gfpgan-v1.4 (invert), gpen-bfr-256 (invert, 256) and codeformer (fidelity);
 * gpen-bfr-512 stays missing. Set MODELS_MANIFEST to manifestPath before importing services.
 */
export function createRestorationModelsDir(): TestModels {
  const modelsDir = mkdtempSync(path.join(os.tmpdir(), 'photolab-restore-models-'));
  mkdirSync(path.join(modelsDir, 'face_restoration'));
  for (const folder of ['face_detection', 'super_resolution', 'denoising']) symlinkSync(path.join(MODELS_DIR, folder), path.join(modelsDir, folder));
  const manifest = JSON.parse(readFileSync(path.join(REPO_ROOT, 'models', 'manifest.json'), 'utf8')) as { models: Array<Record<string, unknown>> };
  const generated: Record<string, Buffer> = {
    'gfpgan-v1.4': restorationModelBytes('invert', 512),
    'gpen-bfr-256': restorationModelBytes('invert', 256),
    codeformer: restorationModelBytes('fidelity', 512),
  };
  for (const entry of manifest.models) {
    const bytes = generated[entry.id as string];
    if (!bytes) continue;
    writeFileSync(path.join(modelsDir, entry.file as string), bytes);
    entry.bytes = bytes.length;
    entry.sha256 = createHash('sha256').update(bytes).digest('hex');
    entry.pinned = true;
  }
  const manifestPath = path.join(modelsDir, 'manifest.json');
  writeFileSync(manifestPath, JSON.stringify(manifest, null, 2));
  return { modelsDir, manifestPath };
}
