/**
 * The pure parts of the forensics: canonical JSON, report signing and verification (a changed
 * byte fails, another key fails), the step-by-step comparison of two runs, and the digest.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { compareRuns } from '../../services/edge/forensics.js';
import { createHash } from 'node:crypto';
import { knownPixelDigest, outputDigest, pixelDigest } from '../../services/lib/forensics/digest.js';
import { canonicalJson, loadSigningKey, signedBytes, verifyReport } from '../../services/lib/forensics/signing.js';
import type { JobRecord, Provenance } from '../../services/lib/shared/schema-types.js';
import type { StageResult } from '../../services/lib/pipeline/stage.js';

test('canonical JSON sorts keys at every level and ignores formatting', () => {
  assert.equal(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: 'x' } }), '{"a":{"c":"x","d":[3,{"y":2,"z":1}]},"b":1}');
  const report = { x: 1, signature: { any: 'thing' }, a: [1] };
  assert.equal(Buffer.from(signedBytes(report)).toString(), '{"a":[1],"x":1}', 'signature left out');
});

test('a signed report verifies with its key set, and not after a change or with another key', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'photolab-key-'));
  try {
    const key = await loadSigningKey({ keyFile: '', dataDir: dir });
    const again = await loadSigningKey({ keyFile: '', dataDir: dir });
    assert.equal(again.kid, key.kid, 'the generated key is kept and reused');
    assert.equal(key.publicJwk.d, undefined);
    const content = { job: { jobId: 'J' }, steps: [{ step: 'upscale', params: { factor: 2 } }] };
    const report = { ...content, signature: await key.sign(signedBytes(content)) };
    const jwks = { keys: [key.publicJwk] };
    assert.equal((await verifyReport(JSON.parse(JSON.stringify(report, null, 4)), jwks)).ok, true, 'formatting does not matter');
    const changed = structuredClone(report);
    changed.steps[0]!.params.factor = 3;
    assert.equal((await verifyReport(changed, jwks)).ok, false);
    const other = await loadSigningKey({ keyFile: path.join(dir, 'other.jwk.json'), dataDir: dir });
    assert.equal((await verifyReport(report, { keys: [{ ...other.publicJwk, kid: key.kid }] })).ok, false, 'another key');
    assert.equal((await verifyReport({ ...content }, jwks)).ok, false, 'unsigned');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('compareRuns finds the first step where two runs part, and why', () => {
  const prov = (index: number, step: string, out: string, extra: Partial<Provenance> = {}): Provenance => ({ index, step, params: {}, status: 'done', outputSha256: out, ...extra });
  const job = (jobId: string, provenance: Provenance[], result: string): JobRecord => ({
    jobId, owner: { sub: 'a' }, status: 'done', createdAt: 1, deadline: 2, steps: [],
    pipeline: [{ step: 'decode' }, { step: 'upscale' }, { step: 'encode' }],
    input: { kind: 'blob', stream: 'S', name: 'n', bytes: 1, chunks: 1, sha256: 'o' },
    result: { findings: {}, provenance, image: { kind: 'blob', stream: 'S', name: 'r', bytes: 1, chunks: 1, sha256: result } },
  });
  const a = job('A', [prov(0, 'decode', 'd'), prov(1, 'upscale', 'u', { modelSha256: 'm', provider: 'cpu' }), prov(2, 'encode', 'e')], 'e');
  const same = compareRuns(a, job('B', [prov(0, 'decode', 'd'), prov(1, 'upscale', 'u', { modelSha256: 'm', provider: 'cpu' }), prov(2, 'encode', 'e')], 'e'));
  assert.equal(same.identical, true);
  assert.equal(same.firstDifference, null);
  const differs = compareRuns(a, job('B', [prov(0, 'decode', 'd'), prov(1, 'upscale', 'u2', { modelSha256: 'm', provider: 'cpu' }), prov(2, 'encode', 'e2')], 'e2'));
  assert.equal(differs.identical, false);
  assert.deepEqual(differs.firstDifference, { index: 1, step: 'upscale', reason: 'output_differs' });
  const model = compareRuns(a, job('B', [prov(0, 'decode', 'd'), prov(1, 'upscale', 'u2', { modelSha256: 'm2', provider: 'cpu' }), prov(2, 'encode', 'e2')], 'e2'));
  assert.equal(model.firstDifference?.reason, 'model_changed');
  const provider = compareRuns(a, job('B', [prov(0, 'decode', 'd'), prov(1, 'upscale', 'u2', { modelSha256: 'm', provider: 'cuda' }), prov(2, 'encode', 'e2')], 'e2'));
  assert.equal(provider.firstDifference?.reason, 'provider_changed');
  // A record hashed by digest version 1 against a replay hashed by version 2: not compared, and said so.
  const older = job('A', [prov(0, 'decode', 'd'), prov(1, 'upscale', 'u', { modelSha256: 'm', provider: 'cpu' }), prov(2, 'encode', 'e')], 'e');
  const newer = (p: Partial<Provenance>) => ({ digestVersion: 2, ...p });
  const versions = compareRuns(older, job('B', [prov(0, 'decode', 'd', newer({})), prov(1, 'upscale', 'u2', newer({ modelSha256: 'm', provider: 'cpu' })), prov(2, 'encode', 'e', newer({}))], 'e'));
  assert.deepEqual(versions.firstDifference, null, 'same result: identical');
  assert.equal(versions.steps?.[0]?.identical, true, 'hashes the two versions agree on still compare');
  const versionsApart = compareRuns(older, job('B', [prov(0, 'decode', 'd', newer({})), prov(1, 'upscale', 'u2', newer({ modelSha256: 'm', provider: 'cpu' })), prov(2, 'encode', 'e2', newer({}))], 'e2'));
  assert.deepEqual(versionsApart.firstDifference, { index: 1, step: 'upscale', reason: 'digest_changed' });
});

const sha = (...parts: (string | Buffer)[]) => { const h = createHash('sha256'); for (const p of parts) h.update(p); return h.digest('hex'); };

test('digest version 2: a frame by its shape and pixels, its findings over the pixel digest; an encoded image by its bytes', () => {
  const data = Buffer.alloc(12, 1);
  const pixels = sha('frame:2x2x3\n', data);
  assert.deepEqual(outputDigest({ frame: { width: 2, height: 2, channels: 3, data } }), { outputSha256: pixels, digestVersion: 2 }, 'no findings: the pixel digest (as in version 1)');
  assert.notEqual(outputDigest({ frame: { width: 4, height: 1, channels: 3, data } }).outputSha256, pixels, 'shape');
  const findings: StageResult['findings'] = { faces: [{ box: { x: 0, y: 0, width: 1, height: 1 }, score: 0.9 }] };
  assert.equal(outputDigest({ frame: { width: 2, height: 2, channels: 3, data }, findings }).outputSha256,
    sha(`frame-sha256:${pixels}\nfindings:`, JSON.stringify(findings)));
  assert.equal(outputDigest({ frame: { width: 2, height: 2, channels: 3, data }, findings: {} }).outputSha256, pixels, 'empty findings are none');
  assert.equal(outputDigest({ encoded: { bytes: Buffer.from('abc'), format: 'png', contentType: 'image/png' } }).outputSha256,
    'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
});

test('the findings hashed are those the step returned, not what the runner adds to them afterwards', () => {
  const frame = { width: 2, height: 2, channels: 3 as const, data: Buffer.alloc(12, 7) };
  const findings: NonNullable<StageResult['findings']> = { faces: [] };
  const digest = outputDigest({ frame, findings });
  findings.objects = [];
  assert.equal(digest.outputSha256, sha(`frame-sha256:${sha('frame:2x2x3\n', frame.data)}\nfindings:`, '{"faces":[]}'));
  assert.equal(outputDigest({ frame, findings }).outputSha256, sha(`frame-sha256:${sha('frame:2x2x3\n', frame.data)}\nfindings:`, '{"faces":[],"objects":[]}'), 'the pixel digest is kept, the findings read anew');
});

test('a frame known by its reference is not hashed again; another frame object is', () => {
  const frame = { width: 2, height: 2, channels: 3 as const, data: Buffer.alloc(12, 1) };
  const claimed = 'a'.repeat(64);
  knownPixelDigest(frame, claimed);
  assert.equal(outputDigest({ frame }).outputSha256, claimed, 'the producer\'s digest, as the reference carried it');
  assert.equal(pixelDigest(frame), claimed);
  assert.equal(pixelDigest({ ...frame, data: Buffer.from(frame.data) }), sha('frame:2x2x3\n', frame.data), 'another frame object is hashed anew');
});
