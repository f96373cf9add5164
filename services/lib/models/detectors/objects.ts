/**
 * COCO object detector decoders (YOLOX, NanoDet, FastestDet): RGB image in, objects in the
 * image's own pixel coordinates out, after class-wise NMS.
 */
import type { DetectedObject } from '../../shared/schema-types.js';
import { classwiseNms, type Candidate } from '../nms.js';
import type { LoadedModel } from '../runtime.js';
import { letterbox, resizeRgb, runOnImage, sigmoid, stretchGeometry, toSourceBox, type LetterboxGeometry, type RgbImage } from '../tensor.js';
import { COCO_LABELS } from './coco.js';

export interface ObjectDetectOptions {
  minScore: number;
  maxObjects: number;
  iouThreshold: number;
  /** Class ids to keep; undefined keeps all. Filtering before NMS saves work. */
  classIds?: ReadonlySet<number>;
}

export type ObjectFamily = 'yolox' | 'nanodet' | 'fastestdet';

export function objectFamily(modelId: string): ObjectFamily {
  if (modelId.startsWith('yolox')) return 'yolox';
  if (modelId.startsWith('nanodet')) return 'nanodet';
  if (modelId.startsWith('fastestdet')) return 'fastestdet';
  throw new Error(`no object decoder for model ${modelId}`);
}

const NUM_CLASSES = COCO_LABELS.length;
/** Candidates kept before NMS. */
const PRE_NMS = 2000;

export async function detectObjects(model: LoadedModel, image: RgbImage, options: ObjectDetectOptions): Promise<DetectedObject[]> {
  switch (objectFamily(model.id)) {
    case 'yolox': return detectYolox(model, image, options);
    case 'nanodet': return detectNanodet(model, image, options);
    case 'fastestdet': return detectFastestdet(model, image, options);
  }
}

function finish(candidates: Candidate[], geometry: LetterboxGeometry & { scaleY?: number }, options: ObjectDetectOptions): DetectedObject[] {
  if (candidates.length > PRE_NMS) candidates = candidates.sort((a, b) => b.score - a.score).slice(0, PRE_NMS);
  return classwiseNms(candidates, options.iouThreshold, options.maxObjects).map((c) => ({
    box: toSourceBox(c.x1, c.y1, c.x2, c.y2, geometry),
    score: Math.round(c.score * 10000) / 10000,
    label: COCO_LABELS[c.classId ?? 0],
    classId: c.classId ?? 0,
  })).filter((o) => o.box.width > 0 && o.box.height > 0);
}

/** Best class of one anchor among the allowed ones: [classId, score]. */
function bestClass(scores: Float32Array, offset: number, stride: number, allowed?: ReadonlySet<number>): [number, number] {
  let best = -1;
  let bestScore = -Infinity;
  for (let c = 0; c < NUM_CLASSES; c++) {
    if (allowed && !allowed.has(c)) continue;
    const s = scores[offset + c * stride];
    if (s > bestScore) { bestScore = s; best = c; }
  }
  return [best, bestScore];
}

function inputSize(model: LoadedModel): { width: number; height: number } {
  const { size } = model.entry.contract;
  if (size.kind !== 'fixed' || !size.width || !size.height) throw new Error(`model ${model.id} must have a fixed input size`);
  return { width: size.width, height: size.height };
}

async function prepareLetterboxed(model: LoadedModel, image: RgbImage) {
  const { contract } = model.entry;
  const { width, height } = inputSize(model);
  const { image: input, geometry } = await letterbox(image, width, height, { padValue: contract.padValue ?? 0 });
  const out = await runOnImage(model, input);
  return { out, geometry, width, height };
}

/** YOLOX: [1, anchors, 85] = dx, dy, log w, log h, obj, 80 class probabilities, anchors over strides 8/16/32. */
async function detectYolox(model: LoadedModel, image: RgbImage, options: ObjectDetectOptions): Promise<DetectedObject[]> {
  const { out, geometry, width, height } = await prepareLetterboxed(model, image);
  const pred = out[model.outputNames[0]].data as Float32Array;
  const candidates: Candidate[] = [];
  let anchor = 0;
  for (const stride of [8, 16, 32]) {
    const cols = Math.floor(width / stride);
    const rows = Math.floor(height / stride);
    for (let row = 0; row < rows; row++) {
      for (let col = 0; col < cols; col++, anchor++) {
        const o = anchor * 85;
        const obj = pred[o + 4];
        if (obj < options.minScore) continue; // score = obj * cls <= obj
        const [classId, cls] = bestClass(pred, o + 5, 1, options.classIds);
        const score = obj * cls;
        if (classId < 0 || score < options.minScore) continue;
        const cx = (col + pred[o]) * stride;
        const cy = (row + pred[o + 1]) * stride;
        const w = Math.exp(pred[o + 2]) * stride;
        const h = Math.exp(pred[o + 3]) * stride;
        candidates.push({ x1: cx - w / 2, y1: cy - h / 2, x2: cx + w / 2, y2: cy + h / 2, score, classId });
      }
    }
  }
  return finish(candidates, geometry, options);
}

/** NanoDet (GFL head): per stride, class probabilities [n,80] and side distributions [n, 4*8]. */
async function detectNanodet(model: LoadedModel, image: RgbImage, options: ObjectDetectOptions): Promise<DetectedObject[]> {
  const { out, geometry, width } = await prepareLetterboxed(model, image);
  const candidates: Candidate[] = [];
  const bins = 8;
  for (const stride of [8, 16, 32]) {
    const cols = Math.floor(width / stride);
    const n = cols * Math.floor(geometry.targetHeight / stride);
    // Output names are opaque numbers: find this stride's tensors by shape.
    const clsName = model.outputNames.find((name) => out[name].dims[1] === n && out[name].dims[2] === NUM_CLASSES);
    const regName = model.outputNames.find((name) => out[name].dims[1] === n && out[name].dims[2] === 4 * bins);
    if (!clsName || !regName) throw new Error(`nanodet outputs for stride ${stride} not found`);
    const cls = out[clsName].data as Float32Array;
    const reg = out[regName].data as Float32Array;
    const dist = [0, 0, 0, 0];
    for (let i = 0; i < n; i++) {
      const [classId, score] = bestClass(cls, i * NUM_CLASSES, 1, options.classIds);
      if (classId < 0 || score < options.minScore) continue;
      for (let side = 0; side < 4; side++) {
        // softmax over the bins, expected bin index = distance in strides
        const base = i * 4 * bins + side * bins;
        let max = -Infinity;
        for (let k = 0; k < bins; k++) max = Math.max(max, reg[base + k]);
        let sum = 0;
        let expected = 0;
        for (let k = 0; k < bins; k++) {
          const e = Math.exp(reg[base + k] - max);
          sum += e;
          expected += e * k;
        }
        dist[side] = (expected / sum) * stride;
      }
      // NanoDet's points sit at the cell's centre pixel: col * stride + (stride - 1) / 2
      const cx = (i % cols) * stride + (stride - 1) / 2;
      const cy = Math.floor(i / cols) * stride + (stride - 1) / 2;
      candidates.push({ x1: cx - dist[0], y1: cy - dist[1], x2: cx + dist[2], y2: cy + dist[3], score, classId });
    }
  }
  return finish(candidates, geometry, options);
}

/** FastestDet: [1, 85, G, G] = obj, tx, ty, w, h, 80 classes per cell; boxes relative to the whole input. */
async function detectFastestdet(model: LoadedModel, image: RgbImage, options: ObjectDetectOptions): Promise<DetectedObject[]> {
  const { width, height } = inputSize(model);
  // FastestDet's demo stretches the image to its square input.
  const input = await resizeRgb(image, width, height);
  const out = await runOnImage(model, input);
  const tensor = out[model.outputNames[0]];
  const pred = tensor.data as Float32Array;
  const gh = tensor.dims[2];
  const gw = tensor.dims[3];
  const plane = gh * gw;
  const candidates: Candidate[] = [];
  for (let row = 0; row < gh; row++) {
    for (let col = 0; col < gw; col++) {
      const cell = row * gw + col;
      const obj = pred[cell];
      const [classId, cls] = bestClass(pred, 5 * plane + cell, plane, options.classIds);
      if (classId < 0 || obj <= 0 || cls <= 0) continue;
      const score = obj ** 0.6 * cls ** 0.4;
      if (score < options.minScore) continue;
      const cx = (col + Math.tanh(pred[plane + cell])) / gw * width;
      const cy = (row + Math.tanh(pred[2 * plane + cell])) / gh * height;
      const w = sigmoid(pred[3 * plane + cell]) * width;
      const h = sigmoid(pred[4 * plane + cell]) * height;
      candidates.push({ x1: cx - w / 2, y1: cy - h / 2, x2: cx + w / 2, y2: cy + h / 2, score, classId });
    }
  }
  return finish(candidates, stretchGeometry(image.width, image.height, width, height), options);
}
