/**
 * Face alignment geometry for face restoration, as pure functions:
 *  - a similarity transform (rotation, uniform scale, translation) estimated by least squares
 *    from the 5 detected landmarks to the FFHQ 5-point template (Umeyama without reflection);
 *  - warping the image into the aligned square with bilinear sampling;
 *  - a feathered mask (eroded from the square's border, then a smooth ramp) and pasting the
 *    restored square back through the same transform, so only the face region changes.
 *
 * Coordinates follow OpenCV's convention (pixel (x, y) has its centre at integer (x, y)), which
 * is the convention of the FFHQ template and of the detectors' landmarks.
 */

export type Point = readonly [number, number];

/** x' = a·x − b·y + tx,  y' = b·x + a·y + ty  (scale s = √(a² + b²), rotation θ = atan2(b, a)). */
export interface Similarity {
  a: number;
  b: number;
  tx: number;
  ty: number;
}

/**
 * The FFHQ 5-point template for a 512×512 aligned face (facexlib / GFPGAN): subject's right eye
 * (image left), left eye, nose tip, right and left mouth corners: the order of Face.landmarks.
 */
export const FFHQ_TEMPLATE_512: readonly Point[] = [
  [192.98138, 239.94708],
  [318.90277, 240.1936],
  [256.63416, 314.01935],
  [201.26117, 371.41043],
  [313.08905, 371.15118],
];

/** The template for a square of `size` pixels (GPEN-256: 256). */
export function templateFor(size: number): Point[] {
  const k = size / 512;
  return FFHQ_TEMPLATE_512.map(([x, y]) => [x * k, y * k] as const);
}

/**
 * The similarity that maps `src` onto `dst` with the least squared error (closed form: centre
 * both point sets, then a = Σ(p·q)/Σ|p|², b = Σ(p×q)/Σ|p|²). Throws on fewer than 2 points,
 * different counts, non-finite values or coincident source points.
 */
export function estimateSimilarity(src: readonly Point[], dst: readonly Point[]): Similarity {
  if (src.length !== dst.length || src.length < 2) throw new Error(`need the same number (>= 2) of source and target points, got ${src.length} and ${dst.length}`);
  if (![...src, ...dst].every(([x, y]) => Number.isFinite(x) && Number.isFinite(y))) throw new Error('landmarks must be finite numbers');
  const n = src.length;
  let sx = 0, sy = 0, dx = 0, dy = 0;
  for (let i = 0; i < n; i++) {
    sx += src[i][0]; sy += src[i][1]; dx += dst[i][0]; dy += dst[i][1];
  }
  sx /= n; sy /= n; dx /= n; dy /= n;
  let norm = 0, dot = 0, cross = 0;
  for (let i = 0; i < n; i++) {
    const px = src[i][0] - sx, py = src[i][1] - sy;
    const qx = dst[i][0] - dx, qy = dst[i][1] - dy;
    norm += px * px + py * py;
    dot += px * qx + py * qy;
    cross += px * qy - py * qx;
  }
  if (norm < 1e-9) throw new Error('landmarks coincide: no transform can be estimated');
  const a = dot / norm;
  const b = cross / norm;
  return { a, b, tx: dx - (a * sx - b * sy), ty: dy - (b * sx + a * sy) };
}

export function applySimilarity(m: Similarity, [x, y]: Point): [number, number] {
  return [m.a * x - m.b * y + m.tx, m.b * x + m.a * y + m.ty];
}

export function invertSimilarity(m: Similarity): Similarity {
  const d = m.a * m.a + m.b * m.b;
  if (d < 1e-18) throw new Error('transform is degenerate (scale 0)');
  const a = m.a / d;
  const b = -m.b / d;
  return { a, b, tx: -(a * m.tx - b * m.ty), ty: -(b * m.tx + a * m.ty) };
}

export function similarityScale(m: Similarity): number {
  return Math.hypot(m.a, m.b);
}

/** Root-mean-square distance between the transformed `src` and `dst` (alignment quality, in dst pixels). */
export function alignmentError(m: Similarity, src: readonly Point[], dst: readonly Point[]): number {
  let sum = 0;
  for (let i = 0; i < src.length; i++) {
    const [x, y] = applySimilarity(m, src[i]);
    sum += (x - dst[i][0]) ** 2 + (y - dst[i][1]) ** 2;
  }
  return Math.sqrt(sum / src.length);
}

/** 8-bit interleaved pixels; only the first `colourChannels` of each pixel are read or written. */
export interface PixelBuffer {
  width: number;
  height: number;
  /** Interleaved channels per pixel in `data` (e.g. 4 for RGBA). */
  channels: number;
  data: Uint8Array;
}

/**
 * The aligned square: pixel (u, v) of the `size`×`size` output samples the image at
 * inverse(toAligned)(u, v) bilinearly; outside the image the nearest edge pixel is used.
 * Returns interleaved floats (0..255) with `colourChannels` channels.
 */
export function warpToAligned(image: PixelBuffer, colourChannels: number, toAligned: Similarity, size: number): Float32Array {
  const { width, height, channels, data } = image;
  const back = invertSimilarity(toAligned);
  const out = new Float32Array(size * size * colourChannels);
  for (let v = 0; v < size; v++) {
    for (let u = 0; u < size; u++) {
      const x = back.a * u - back.b * v + back.tx;
      const y = back.b * u + back.a * v + back.ty;
      const xc = Math.min(Math.max(x, 0), width - 1);
      const yc = Math.min(Math.max(y, 0), height - 1);
      const x0 = Math.floor(xc), y0 = Math.floor(yc);
      const x1 = Math.min(x0 + 1, width - 1), y1 = Math.min(y0 + 1, height - 1);
      const fx = xc - x0, fy = yc - y0;
      const i00 = (y0 * width + x0) * channels, i01 = (y0 * width + x1) * channels;
      const i10 = (y1 * width + x0) * channels, i11 = (y1 * width + x1) * channels;
      const o = (v * size + u) * colourChannels;
      for (let c = 0; c < colourChannels; c++) {
        const top = data[i00 + c] + (data[i01 + c] - data[i00 + c]) * fx;
        const bottom = data[i10 + c] + (data[i11 + c] - data[i10 + c]) * fx;
        out[o + c] = top + (bottom - top) * fy;
      }
    }
  }
  return out;
}

/**
 * The paste-back weight over the aligned square: 0 within `erode` pixels of the border, then a
 * smoothstep ramp over `feather` pixels up to 1 (an eroded and blurred square, in closed form).
 * Separable: mask(u, v) = ramp(u) · ramp(v).
 */
export function featherMask(size: number, erode = Math.round(size / 16), feather = Math.round(size / 8)): Float32Array {
  const ramp = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    const t = (Math.min(i, size - 1 - i) - erode) / Math.max(feather, 1e-6);
    const c = Math.min(Math.max(t, 0), 1);
    ramp[i] = c * c * (3 - 2 * c);
  }
  const mask = new Float32Array(size * size);
  for (let v = 0; v < size; v++) for (let u = 0; u < size; u++) mask[v * size + u] = ramp[u] * ramp[v];
  return mask;
}

/** Bilinear sample of channel c of an interleaved float square (coordinates inside [0, size−1]). */
function sampleSquare(square: Float32Array, size: number, channels: number, c: number, u: number, v: number): number {
  const u0 = Math.floor(u), v0 = Math.floor(v);
  const u1 = Math.min(u0 + 1, size - 1), v1 = Math.min(v0 + 1, size - 1);
  const fu = u - u0, fv = v - v0;
  const p00 = square[(v0 * size + u0) * channels + c], p01 = square[(v0 * size + u1) * channels + c];
  const p10 = square[(v1 * size + u0) * channels + c], p11 = square[(v1 * size + u1) * channels + c];
  const top = p00 + (p01 - p00) * fu;
  const bottom = p10 + (p11 - p10) * fu;
  return top + (bottom - top) * fv;
}

export interface PasteResult {
  /** Image pixels that may have changed (bounding box of the pasted square), clipped to the image. */
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/**
 * Blends the restored square back into `image` in place: each image pixel (x, y) maps to
 * (u, v) = toAligned(x, y); where mask(u, v) · weight > 0 its colour moves towards the restored
 * square's bilinear sample by that amount. Pixels outside the square (or the mask) are untouched.
 */
export function pasteBack(image: PixelBuffer, colourChannels: number, restored: Float32Array, size: number,
  toAligned: Similarity, mask: Float32Array, weight: number): PasteResult {
  const { width, height, channels, data } = image;
  const back = invertSimilarity(toAligned);
  const corners = [[0, 0], [size - 1, 0], [0, size - 1], [size - 1, size - 1]].map((p) => applySimilarity(back, p as unknown as Point));
  const x0 = Math.max(0, Math.floor(Math.min(...corners.map((p) => p[0]))));
  const y0 = Math.max(0, Math.floor(Math.min(...corners.map((p) => p[1]))));
  const x1 = Math.min(width - 1, Math.ceil(Math.max(...corners.map((p) => p[0]))));
  const y1 = Math.min(height - 1, Math.ceil(Math.max(...corners.map((p) => p[1]))));
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const u = toAligned.a * x - toAligned.b * y + toAligned.tx;
      const v = toAligned.b * x + toAligned.a * y + toAligned.ty;
      if (!(u >= 0 && v >= 0 && u <= size - 1 && v <= size - 1)) continue;
      const m = sampleSquare(mask, size, 1, 0, u, v) * weight;
      if (m <= 0) continue;
      const p = (y * width + x) * channels;
      for (let c = 0; c < colourChannels; c++) {
        const r = sampleSquare(restored, size, colourChannels, c, u, v);
        const blended = Math.round(data[p + c] + (r - data[p + c]) * m);
        data[p + c] = blended > 255 ? 255 : blended < 0 ? 0 : blended;
      }
    }
  }
  return { x0, y0, x1, y1 };
}
