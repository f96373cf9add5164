/**
 * The FrameStore the services use: host-local cache and/or bus, per FRAME_TRANSPORT.
 *   local: cache only (one machine; fastest; a frame is lost if the host goes).
 *   bus:   JetStream only (every step may be on another machine).
 *   auto:  both; the next step on this host reads the cache, others read the bus. The bus
 *          write runs while the next step starts (see StoredFrame.durable).
 */
import { assertFrame, type Frame } from '../../pipeline/frame.js';
import { appError } from '../../shared/errors.js';
import type { FrameRef } from '../../shared/schema-types.js';
import type { BusFrames } from './bus-frames.js';
import type { FrameStore, StoredFrame } from './frame-store.js';
import type { LocalFrames } from './local-frames.js';

export type FrameTransport = 'auto' | 'bus' | 'local';

export class TieredFrames implements FrameStore {
  constructor(private readonly mode: FrameTransport, private readonly local: LocalFrames, private readonly bus: BusFrames) {}

  /** The host cache, for what is kept there outside the frames (an upload's copy); none with `bus`. */
  get hostCache(): LocalFrames | undefined {
    return this.mode === 'bus' ? undefined : this.local;
  }

  async put(id: string, frame: Frame): Promise<StoredFrame> {
    assertFrame(frame);
    const ref: FrameRef = {
      kind: 'frame', id, width: frame.width, height: frame.height, channels: frame.channels,
      bytes: frame.data.length, chunks: 0, stored: [],
    };
    if (this.mode !== 'bus') {
      await this.local.put(id, frame);
      ref.host = this.local.hostId;
      ref.stored.push('local');
    }
    if (this.mode === 'local') return { ref, durable: Promise.resolve() };
    ref.chunks = this.bus.chunksFor(frame.data.length);
    ref.stored.push('bus');
    const busWrite = this.bus.put(id, frame).then(() => undefined);
    if (this.mode === 'bus') {
      await busWrite;
      return { ref, durable: Promise.resolve() };
    }
    busWrite.catch(() => undefined); // surfaced through `durable`
    return { ref, durable: busWrite };
  }

  async get(ref: FrameRef): Promise<Frame> {
    if (ref.stored.includes('local')) {
      const frame = await this.local.get(ref);
      if (frame) return frame;
    }
    if (ref.stored.includes('bus')) return this.bus.get(ref);
    throw appError('frame_missing', `frame ${ref.id} was kept only on host ${ref.host}, which this process (${this.local.hostId}) cannot read; use FRAME_TRANSPORT=auto or bus across machines`);
  }

  async deleteJob(jobId: string): Promise<void> {
    await Promise.all([this.hostCache?.deleteJob(jobId), this.mode === 'local' ? undefined : this.bus.deleteJob(jobId)]);
  }
}
