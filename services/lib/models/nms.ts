/**
 * Intersection over union and non-maximum suppression for detector outputs.
 * Boxes are corners (x1, y1, x2, y2) in any consistent unit.
 */

export interface Candidate {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  score: number;
  /** Class index for class-wise NMS; ignored by plain nms(). */
  classId?: number;
}

export function area(b: Candidate): number {
  return Math.max(0, b.x2 - b.x1) * Math.max(0, b.y2 - b.y1);
}

/** Intersection over union; 0 for disjoint or empty boxes. */
export function iou(a: Candidate, b: Candidate): number {
  const w = Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1);
  const h = Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1);
  if (w <= 0 || h <= 0) return 0;
  const inter = w * h;
  const union = area(a) + area(b) - inter;
  return union <= 0 ? 0 : inter / union;
}

/**
 * Greedy NMS: best score first, dropping every later box that overlaps a kept one by more than
 * `iouThreshold`. Returns at most `maxOut` boxes, best first. Ties keep input order (stable sort),
 * so results are deterministic.
 */
export function nms<T extends Candidate>(candidates: readonly T[], iouThreshold: number, maxOut = Infinity): T[] {
  const sorted = [...candidates].sort((a, b) => b.score - a.score);
  const kept: T[] = [];
  for (const candidate of sorted) {
    if (kept.length >= maxOut) break;
    if (kept.every((k) => iou(k, candidate) <= iouThreshold)) kept.push(candidate);
  }
  return kept;
}

/**
 * NMS per class (a dog box never suppresses an overlapping bicycle box), merged best first and
 * capped at `maxOut`. Candidates without classId count as class -1.
 */
export function classwiseNms<T extends Candidate>(candidates: readonly T[], iouThreshold: number, maxOut = Infinity): T[] {
  const byClass = new Map<number, T[]>();
  for (const c of candidates) {
    const key = c.classId ?? -1;
    let list = byClass.get(key);
    if (!list) byClass.set(key, (list = []));
    list.push(c);
  }
  const kept: T[] = [];
  for (const list of byClass.values()) kept.push(...nms(list, iouThreshold, maxOut));
  return kept.sort((a, b) => b.score - a.score).slice(0, maxOut);
}

/**
 * The indices of the k highest scores above minScore, best first: detectors produce thousands of
 * anchors, and NMS over only the best few hundred is what keeps it cheap.
 */
export function topK(scores: ArrayLike<number>, minScore: number, k: number): number[] {
  const idx: number[] = [];
  for (let i = 0; i < scores.length; i++) if (scores[i] >= minScore) idx.push(i);
  idx.sort((a, b) => scores[b] - scores[a]);
  return idx.length > k ? idx.slice(0, k) : idx;
}
