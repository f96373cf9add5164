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
import { outputDigest } from '../../services/lib/forensics/digest.js';
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
});

test('the digest covers shape, pixels and findings; an encoded image is hashed as its bytes', () => {
  const data = Buffer.alloc(12, 1);
  const base = outputDigest({ frame: { width: 2, height: 2, channels: 3, data } }).outputSha256;
  assert.notEqual(outputDigest({ frame: { width: 4, height: 1, channels: 3, data } }).outputSha256, base, 'shape');
  assert.notEqual(outputDigest({ frame: { width: 2, height: 2, channels: 3, data }, findings: { faces: [] } }).outputSha256, base, 'findings');
  assert.equal(outputDigest({ encoded: { bytes: Buffer.from('abc'), format: 'png', contentType: 'image/png' } }).outputSha256,
    'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
});

test('a frame handed on unchanged is digested from its kept hash state, with the same result as a fresh pass', () => {
  const data = Buffer.from([...Array(12).keys()]);
  const frame = { width: 2, height: 2, channels: 3 as const, data };
  const fresh = (findings?: StageResult['findings']) =>
    outputDigest({ frame: { ...frame, data: Buffer.from(data) }, ...(findings ? { findings } : {}) }).outputSha256;
  const first = outputDigest({ frame }).outputSha256;
  assert.equal(first, fresh());
  // The detector's output: the same frame object with findings after it; the kept state is copied, not consumed.
  const findings: StageResult['findings'] = { faces: [{ box: { x: 0, y: 0, width: 1, height: 1 }, score: 0.9 }] };
  assert.equal(outputDigest({ frame, findings }).outputSha256, fresh(findings));
  assert.equal(outputDigest({ frame }).outputSha256, first, 'a third use still starts from the pixels');
});
