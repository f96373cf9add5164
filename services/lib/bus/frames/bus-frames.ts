/**
 * Frames as chunks on the JetStream stream PHOTOLAB_FRAMES (memory storage, TTL, one message
 * per subject): photolab.frames.<jobId>.<index>.<chunk>.
 */
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import { appError } from '../../shared/errors.js';
import type { FrameRef } from '../../shared/schema-types.js';
import type { Frame } from '../../pipeline/frame.js';
import { ChunkedMessages } from '../chunked-messages.js';
import { STREAMS, subjects } from '../subjects.js';

const frameMissing = (subject: string) =>
  appError('frame_missing', `frame chunk ${subject} is not on the bus (expired, or its writer died before storing it)`);

export class BusFrames {
  private readonly chunks: ChunkedMessages;

  constructor(js: JetStreamClient, jsm: JetStreamManager, serverMaxPayload: number, waitForFrameMs = 10_000) {
    this.chunks = new ChunkedMessages(js, jsm, STREAMS.frames, serverMaxPayload, waitForFrameMs);
  }

  get chunkSize(): number {
    return this.chunks.chunkSize;
  }

  chunksFor(bytes: number): number {
    return this.chunks.chunksFor(bytes);
  }

  put(id: string, frame: Frame): Promise<number> {
    return this.chunks.put(subjects.frame(id), frame.data);
  }

  async get(ref: FrameRef): Promise<Frame> {
    const data = await this.chunks.get(subjects.frame(ref.id), ref.bytes, ref.chunks, frameMissing);
    return { width: ref.width, height: ref.height, channels: ref.channels as Frame['channels'], data };
  }

  deleteJob(jobId: string): Promise<void> {
    return this.chunks.purge(subjects.framesOfJob(jobId));
  }
}
