/**
 * A raw image between two steps: 8-bit, interleaved, sRGB, rows top to bottom, in the
 * orientation the user sees (decode has applied EXIF orientation).
 * channels: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA.
 */
export interface Frame {
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
  data: Buffer;
}

export function frameBytes(width: number, height: number, channels: number): number {
  return width * height * channels;
}

export function assertFrame(frame: Frame): void {
  if (frame.data.length !== frameBytes(frame.width, frame.height, frame.channels)) {
    throw new Error(`frame is ${frame.data.length} bytes, expected ${frame.width}x${frame.height}x${frame.channels}`);
  }
}

/** An encoded image (what decode reads and encode writes). */
export interface EncodedImage {
  bytes: Buffer;
  /** sharp's format name: jpeg, png, webp, avif, tiff, gif, heif... */
  format: string;
  contentType: string;
}
