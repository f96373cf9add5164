/**
 * The WebSocket API's binary frame (schemas/ws): a 4-byte big-endian length of a JSON header,
 * the header, then the image bytes. Submits go one way, results the other.
 */
export function encodeFrame(header: object, body: Uint8Array): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32BE(json.length);
  return Buffer.concat([prefix, json, body]);
}

/** The header (parsed JSON) and the bytes after it; throws on a frame too short for its header. */
export function decodeFrame(frame: Buffer): { header: unknown; body: Buffer } {
  const length = frame.readUInt32BE(0);
  if (4 + length > frame.length) throw new RangeError(`frame of ${frame.length} bytes announces a ${length}-byte header`);
  return { header: JSON.parse(frame.subarray(4, 4 + length).toString('utf8')), body: frame.subarray(4 + length) };
}
