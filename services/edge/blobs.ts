/**
 * Caller blobs: images uploaded once (POST /api/blobs) and then used by id in job requests.
 * Stored on the blobs stream under blobs/<ownerHash>/<blobId>, so the name itself scopes a
 * blob to its owner: another caller's blobId simply does not resolve (404, never 403).
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { Bus } from '../lib/bus/bus.js';
import { ownerHash } from '../lib/bus/job-store.js';
import { appError } from '../lib/shared/errors.js';
import { newId } from '../lib/shared/ids.js';
import type { BlobRef, Owner } from '../lib/shared/schema-types.js';

const BLOB_ID = /^[0-9A-HJKMNP-TV-Z]{26}$/;

export class CallerBlobs {
  private constructor(private readonly bus: Bus, private readonly maxBytes: number) {}

  static async open(bus: Bus, _nc: NatsConnection, maxBytes: number): Promise<CallerBlobs> {
    return new CallerBlobs(bus, maxBytes);
  }

  async upload(owner: Owner, bytes: Buffer, contentType = 'application/octet-stream'): Promise<{ blobId: string; ref: BlobRef }> {
    if (bytes.length === 0) throw appError('image_required', 'the upload is empty');
    if (bytes.length > this.maxBytes) throw appError('payload_too_large', `the upload is ${bytes.length} bytes; the limit is ${this.maxBytes}`, { details: { limit: this.maxBytes } });
    const blobId = newId();
    const ref = await this.bus.blobs.put(blobName(owner, blobId), bytes, contentType);
    return { blobId, ref };
  }

  /** The caller's blob, with its bytes (checked against the stored digest). */
  async read(owner: Owner, blobId: string): Promise<{ ref: BlobRef; bytes: Buffer }> {
    const missing = () => appError('blob_not_found', `no blob ${blobId}`);
    if (!BLOB_ID.test(blobId)) throw missing();
    const name = blobName(owner, blobId);
    const ref = await this.bus.blobs.describe(name);
    if (!ref) throw missing();
    return { ref, bytes: await this.bus.blobs.get(ref) };
  }
}

export const blobName = (owner: Owner, blobId: string) => `blobs/${ownerHash(owner)}/${blobId}`;

