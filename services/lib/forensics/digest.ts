/**
 * The digest of one step's output for the provenance (replay finds the first step whose output
 * differs by comparing these). A frame is hashed over its raw pixels with its shape in front,
 * so two frames with the same bytes in another shape differ, and with the findings the step
 * added after them (a detector passes the frame through unchanged: its boxes are its output);
 * an encoded image over its bytes alone, so the last step's hash is the result file's sha256.
 * Cost measured here (node sha256, one core of this machine): ~14 ms per 12 MB frame (4 MP RGB),
 * next to model steps of seconds at that size; light steps (decode, encode) pay it visibly.
 */
import { createHash, type Hash } from 'node:crypto';
import type { Frame } from '../pipeline/frame.js';
import type { StageResult } from '../pipeline/stage.js';

/**
 * The hash state after a frame's shape and pixels, per frame object: a step that hands back the
 * frame it was given (a detector in a fused chain) costs a copy of this state plus its findings
 * instead of a second pass over 3-36 MB. Keyed by the object, as frames are never changed in
 * place (the stage contract, stage.ts); a new frame object over the same bytes is hashed anew.
 */
const pixelHashes = new WeakMap<Frame, Hash>();

function pixelHash(frame: Frame): Hash {
  let hash = pixelHashes.get(frame);
  if (!hash) {
    const { width, height, channels, data } = frame;
    hash = createHash('sha256').update(`frame:${width}x${height}x${channels}\n`).update(data);
    pixelHashes.set(frame, hash);
  }
  return hash.copy();
}

export function outputDigest(result: StageResult): { outputSha256?: string } {
  if (result.frame) {
    const hash = pixelHash(result.frame);
    if (result.findings && Object.keys(result.findings).length > 0) hash.update(`\nfindings:${JSON.stringify(result.findings)}`);
    return { outputSha256: hash.digest('hex') };
  }
  if (result.encoded) return { outputSha256: createHash('sha256').update(result.encoded.bytes).digest('hex') };
  return {};
}
