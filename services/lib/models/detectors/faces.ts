/**
 * Face detector decoders: each turns an RGB image into faces in the image's own pixel
 * coordinates, given a loaded model. Pre-processing follows each model's contract in the manifest.
 *
 * YuNet (default): 5 landmarks. UltraFace: boxes only. BlazeFace: its 6 keypoints are eyes, nose
 * tip, mouth centre and ears, which cannot give the 5-point layout (mouth corners) alignment
 * needs, so its faces carry no landmarks.
 */
import type { Face } from '../../shared/schema-types.js';
import { nms, topK, type Candidate } from '../nms.js';
import type { LoadedModel } from '../runtime.js';
import { bucketSize } from '../runtime.js';
import {
  letterbox, letterboxGeometry, padRgb, resizeRgb, runOnImage, sigmoid, stretchGeometry, toSourceBox, toSourcePoint,
  type LetterboxGeometry, type RgbImage,
} from '../tensor.js';

export interface FaceDetectOptions {
  minScore: number;
  maxFaces: number;
  iouThreshold: number;
  /** Long side of the input for dynamic-size models (multiple of 32). */
  inputSize?: number;
}

interface FaceCandidate extends Candidate {
  landmarks?: number[][];
}

/** Anchors kept before NMS: plenty for a crowd, cheap for NMS. */
const PRE_NMS = 1000;

export type FaceFamily = 'yunet' | 'ultraface' | 'blazeface';

export function faceFamily(modelId: string): FaceFamily {
  if (modelId.startsWith('yunet')) return 'yunet';
  if (modelId.startsWith('ultraface')) return 'ultraface';
  if (modelId.startsWith('blazeface')) return 'blazeface';
  throw new Error(`no face decoder for model ${modelId}`);
}

export async function detectFaces(model: LoadedModel, image: RgbImage, options: FaceDetectOptions): Promise<Face[]> {
  switch (faceFamily(model.id)) {
    case 'yunet': return detectYunet(model, image, options);
    case 'ultraface': return detectUltraface(model, image, options);
    case 'blazeface': return detectBlazeface(model, image, options);
  }
}

function toFaces(candidates: FaceCandidate[], geometry: LetterboxGeometry & { scaleY?: number }, options: FaceDetectOptions): Face[] {
  return nms(candidates, options.iouThreshold, options.maxFaces).map((c) => {
    const face: Face = { box: toSourceBox(c.x1, c.y1, c.x2, c.y2, geometry), score: round4(c.score) };
    if (c.landmarks) face.landmarks = c.landmarks.map(([x, y]) => toSourcePoint(x, y, geometry).map(round2));
    return face;
  }).filter((f) => f.box.width > 0 && f.box.height > 0);
}

/** YuNet input size: the fixed model's, or the image's long side scaled to inputSize and bucketed to 32. */
function yunetInputSize(model: LoadedModel, image: RgbImage, options: FaceDetectOptions): { width: number; height: number } {
  const size = model.entry.contract.size;
  if (size.kind === 'fixed' && size.width && size.height) return { width: size.width, height: size.height };
  const longSide = options.inputSize ?? 640;
  const scale = Math.min(1, longSide / Math.max(image.width, image.height));
  return bucketSize(Math.round(image.height * scale), Math.round(image.width * scale), size.multipleOf ?? 32);
}

async function detectYunet(model: LoadedModel, image: RgbImage, options: FaceDetectOptions): Promise<Face[]> {
  const { contract } = model.entry;
  const target = yunetInputSize(model, image, options);
  const { image: input, geometry } = await letterbox(image, target.width, target.height, { padValue: contract.padValue ?? 0 });
  const out = await runOnImage(model, input);
  const candidates: FaceCandidate[] = [];
  for (const stride of [8, 16, 32]) {
    const cls = out[`cls_${stride}`].data as Float32Array;
    const obj = out[`obj_${stride}`].data as Float32Array;
    const bbox = out[`bbox_${stride}`].data as Float32Array;
    const kps = out[`kps_${stride}`].data as Float32Array;
    const cols = Math.floor(target.width / stride);
    const scores = new Float32Array(cls.length);
    for (let i = 0; i < cls.length; i++) scores[i] = Math.sqrt(Math.min(1, Math.max(0, cls[i])) * Math.min(1, Math.max(0, obj[i])));
    for (const i of topK(scores, options.minScore, PRE_NMS)) {
      const col = i % cols;
      const row = Math.floor(i / cols);
      const cx = (col + bbox[i * 4]) * stride;
      const cy = (row + bbox[i * 4 + 1]) * stride;
      const w = Math.exp(bbox[i * 4 + 2]) * stride;
      const h = Math.exp(bbox[i * 4 + 3]) * stride;
      const landmarks: number[][] = [];
      for (let k = 0; k < 5; k++) landmarks.push([(col + kps[i * 10 + 2 * k]) * stride, (row + kps[i * 10 + 2 * k + 1]) * stride]);
      candidates.push({ x1: cx - w / 2, y1: cy - h / 2, x2: cx + w / 2, y2: cy + h / 2, score: scores[i], landmarks });
    }
  }
  return toFaces(candidates, geometry, options);
}

async function detectUltraface(model: LoadedModel, image: RgbImage, options: FaceDetectOptions): Promise<Face[]> {
  const { contract } = model.entry;
  const width = contract.size.width ?? 320;
  const height = contract.size.height ?? 240;
  // UltraFace was trained on images stretched to its 4:3 input, so stretch (as its demo does).
  const input = await resizeRgb(image, width, height);
  const out = await runOnImage(model, input);
  const scores2 = out.scores.data as Float32Array;
  const boxes = out.boxes.data as Float32Array;
  const n = scores2.length / 2;
  const faceScores = new Float32Array(n);
  for (let i = 0; i < n; i++) faceScores[i] = scores2[i * 2 + 1];
  const candidates: FaceCandidate[] = topK(faceScores, options.minScore, PRE_NMS).map((i) => ({
    x1: boxes[i * 4] * width, y1: boxes[i * 4 + 1] * height, x2: boxes[i * 4 + 2] * width, y2: boxes[i * 4 + 3] * height, score: faceScores[i],
  }));
  return toFaces(candidates, stretchGeometry(image.width, image.height, width, height), options);
}

/** MediaPipe SSD anchors: per stride layer a grid of cells, `perCell` anchors each, centres at cell + 0.5. */
function blazeAnchors(inputSize: number): { strides: number[]; perCell: number[] } {
  return inputSize <= 128 ? { strides: [8, 16], perCell: [2, 6] } : { strides: [16, 32], perCell: [2, 6] };
}

async function detectBlazeface(model: LoadedModel, image: RgbImage, options: FaceDetectOptions): Promise<Face[]> {
  const { contract } = model.entry;
  const size = contract.size.width ?? 128;
  // Centre-padded letterbox, as MediaPipe does: faces keep their shape.
  const geometry = letterboxGeometry(image.width, image.height, size, size, 'center');
  const resized = await resizeRgb(image, geometry.resizedWidth, geometry.resizedHeight);
  const input = padRgb(resized, size, size, { left: geometry.padX, top: geometry.padY, padValue: contract.padValue ?? 0 });
  const out = await runOnImage(model, input, 'NHWC');
  const { strides, perCell } = blazeAnchors(size);
  // Outputs come as (scores, scores, boxes, boxes) per layer; match layers by anchor count.
  const layers = strides.map((stride, l) => {
    const cells = size / stride;
    const count = cells * cells * perCell[l];
    const scoreName = model.outputNames.find((n) => out[n].dims.at(-1) === 1 && out[n].dims[1] === count);
    const boxName = model.outputNames.find((n) => out[n].dims.at(-1) === 16 && out[n].dims[1] === count);
    if (!scoreName || !boxName) throw new Error(`blazeface output for ${count} anchors not found`);
    return { stride, cells, perCell: perCell[l], scores: out[scoreName].data as Float32Array, boxes: out[boxName].data as Float32Array };
  });
  const candidates: FaceCandidate[] = [];
  for (const layer of layers) {
    const probs = Float32Array.from(layer.scores, (logit) => sigmoid(Math.max(-100, Math.min(100, logit))));
    for (const i of topK(probs, options.minScore, PRE_NMS)) {
      const cell = Math.floor(i / layer.perCell);
      const ax = ((cell % layer.cells) + 0.5) * layer.stride;
      const ay = (Math.floor(cell / layer.cells) + 0.5) * layer.stride;
      const b = layer.boxes.subarray(i * 16, i * 16 + 16);
      const cx = ax + b[0];
      const cy = ay + b[1];
      candidates.push({ x1: cx - b[2] / 2, y1: cy - b[3] / 2, x2: cx + b[2] / 2, y2: cy + b[3] / 2, score: probs[i] });
    }
  }
  return toFaces(candidates, geometry, options);
}

function round2(v: number): number {
  return Math.round(v * 100) / 100;
}

function round4(v: number): number {
  return Math.round(v * 10000) / 10000;
}

