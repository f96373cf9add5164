/**
 * Host-local frame cache: one file per frame in a tmpfs folder (/dev/shm). A next step on
 * the same machine reads the frame at memory speed instead of over the bus.
 * Layout: <dir>/<jobId>/<index>.raw; a job's folder goes when the job ends or its TTL passes.
 */
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { FrameRef } from '../../shared/schema-types.js';
import type { Frame } from '../../pipeline/frame.js';
import { jobOfFrame } from './frame-store.js';

export class LocalFrames {
  constructor(readonly dir: string, readonly hostId: string) {}

  private file(id: string): string {
    const [jobId, index] = id.split('.');
    return path.join(this.dir, jobId!, `${index}.raw`);
  }

  async put(id: string, frame: Frame): Promise<void> {
    const file = this.file(id);
    await mkdir(path.dirname(file), { recursive: true });
    // Write then rename: a reader never sees half a frame, and a re-run overwrites atomically.
    const partial = `${file}.${process.pid}.part`;
    await writeFile(partial, frame.data);
    await rename(partial, file);
  }

  /** The frame, or null when this host has no copy (another host wrote it, or it was swept). */
  async get(ref: FrameRef): Promise<Frame | null> {
    if (ref.host !== this.hostId) return null;
    try {
      const data = await readFile(this.file(ref.id));
      if (data.length !== ref.bytes) return null;
      return { width: ref.width, height: ref.height, channels: ref.channels as Frame['channels'], data };
    } catch {
      return null;
    }
  }

  async deleteJob(jobId: string): Promise<void> {
    await rm(path.join(this.dir, jobId), { recursive: true, force: true });
  }

  /** Removes job folders older than ttlMs (jobs whose end we never saw). */
  async sweep(ttlMs: number): Promise<number> {
    let removed = 0;
    const now = Date.now();
    let entries: string[] = [];
    try {
      entries = await readdir(this.dir);
    } catch {
      return 0;
    }
    for (const name of entries) {
      try {
        const info = await stat(path.join(this.dir, name));
        if (now - info.mtimeMs > ttlMs) {
          await this.deleteJob(jobOfFrame(name));
          removed++;
        }
      } catch {
        /* removed by another process meanwhile */
      }
    }
    return removed;
  }
}
