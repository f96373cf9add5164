/**
 * Where raw frames live between two steps. A frame is written once by a step and read by
 * the next one (maybe on another machine); the job message only carries its FrameRef.
 *
 * Chosen by measurement (BENCHMARKS.md): the Object Store client moves 40-65 MB/s here,
 * plain JetStream messages 220-700 MB/s, and a tmpfs file far more. So frames go as a few
 * large messages on a memory stream, plus a host-local copy that a next step on the same
 * machine reads instead.
 */
import type { FrameRef } from '../../shared/schema-types.js';
import type { Frame } from '../../pipeline/frame.js';

export interface StoredFrame {
  ref: FrameRef;
  /**
   * Resolves when the frame is readable from every host. A step may publish the next
   * message before this (a reader on another host waits for the frame), but acks its own
   * input only after: if it dies in between, the step runs again and writes the frame again.
   */
  durable: Promise<void>;
}

export interface FrameStore {
  put(frameId: string, frame: Frame): Promise<StoredFrame>;
  get(ref: FrameRef): Promise<Frame>;
  /** Drops every frame of a finished job. */
  deleteJob(jobId: string): Promise<void>;
}

export const frameId = (jobId: string, index: number) => `${jobId}.${index}`;
export const jobOfFrame = (id: string) => id.split('.')[0]!;
