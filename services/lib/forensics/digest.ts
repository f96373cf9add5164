/**
 * The digest of one step's output for the provenance (replay finds the first step whose output
 * differs by comparing these). Version 2 (`digestVersion: 2` in the provenance; absent means 1):
 *
 * - a frame's pixel digest: sha256 of `frame:<w>x<h>x<channels>\n` and its raw pixels, so two
 *   frames with the same bytes in another shape differ;
 * - a frame step's output: its pixel digest when the step found nothing, else sha256 of
 *   `frame-sha256:<pixel digest>\nfindings:` and the findings it added as JSON (a detector
 *   passes the frame through unchanged: its boxes are its output);
 * - an encoded image: sha256 of its bytes, so the last step's hash is the result file's sha256.
 *
 * Version 1 hashed a frame with findings over its pixels again. Version 2 hashes each frame's
 * pixels once, where it is made: the pixel digest travels with the frame's reference (FrameRef
 * `sha256`), so a detector in another process digests its findings, not 3-36 MB it did not
 * change. The two versions agree on frames without findings and on encoded images.
 *
 * Cost measured here (node sha256, one core of this machine): 1.8 ms per 3 MB frame (1 MP RGB),
 * ~14 ms per 12 MB (4 MP). Hashing in a worker thread instead was measured and left out: on two
 * cores the hash then ran beside the next step's model and slowed it by as much as it spared.
 */
import { createHash } from 'node:crypto';
import type { Frame } from '../pipeline/frame.js';
import type { StageResult } from '../pipeline/stage.js';
import type { Findings } from '../shared/schema-types.js';

export const DIGEST_VERSION = 2;

/**
 * Pixel digests per frame object, computed once. Keyed by the object, as frames are never
 * changed in place (the stage contract, stage.ts); a new frame object over the same bytes is
 * hashed anew.
 */
const pixelDigests = new WeakMap<Frame, string>();

/** The frame's pixel digest (see above), computed at the first call. */
export function pixelDigest(frame: Frame): string {
  let digest = pixelDigests.get(frame);
  if (!digest) {
    const { width, height, channels, data } = frame;
    digest = createHash('sha256').update(`frame:${width}x${height}x${channels}\n`).update(data).digest('hex');
    pixelDigests.set(frame, digest);
  }
  return digest;
}

/**
 * A frame read through a reference that carries its pixel digest, as its producer computed it.
 * The pixels are not hashed again on the way in (that pass is what the reference spares), so a
 * step's provenance states the frame it was handed as its producer recorded it.
 */
export function knownPixelDigest(frame: Frame, sha256: string): void {
  if (!pixelDigests.has(frame)) pixelDigests.set(frame, sha256);
}

export interface OutputDigest { outputSha256?: string; digestVersion?: number }

export function outputDigest(result: StageResult): OutputDigest {
  return digestOf(result, findingsText(result.findings));
}

/**
 * outputDigest, computed at the event loop's next turn or when asked for, whichever comes first.
 * In a fused chain the next step starts before that turn, and its first wait (sharp's resize or
 * encode on libuv's thread pool) leaves the event loop free: a frame's hash (1.8 ms for 1 MP)
 * then runs on the core that the step's own work leaves idle, instead of before the step. The
 * findings are read now, as outputDigest would.
 */
export function deferredOutputDigest(result: StageResult): () => OutputDigest {
  const findings = findingsText(result.findings);
  let digest: OutputDigest | undefined;
  const compute = () => (digest ??= digestOf(result, findings));
  const turn = setImmediate(compute);
  return () => {
    clearImmediate(turn);
    return compute();
  };
}

function digestOf(result: StageResult, findings: string | undefined): OutputDigest {
  if (result.frame) {
    const pixels = pixelDigest(result.frame);
    return { outputSha256: findings === undefined ? pixels : sha256(`frame-sha256:${pixels}\nfindings:`, findings), digestVersion: DIGEST_VERSION };
  }
  if (result.encoded) return { outputSha256: sha256(result.encoded.bytes), digestVersion: DIGEST_VERSION };
  return {};
}

function sha256(...parts: (string | Uint8Array)[]): string {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest('hex');
}

function findingsText(findings: Findings | undefined): string | undefined {
  return findings && Object.keys(findings).length > 0 ? JSON.stringify(findings) : undefined;
}
