/**
 * Reports and replays against the real system with real models on CPU: decode ->
 * detect_faces -> upscale x2 -> encode(png) in a case. The report lists every step with its
 * parameters, model and model file sha256, provider and output sha256; its signature checks out
 * offline with `npm run verify` and fails after one changed byte of the result or of the report;
 * the HTML page has both thumbnails and the disclosure; a replay is byte-identical step by step.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { assertError, assertSchema, bearer, multipart, request } from '../helpers/edge-client.js';
import { REPO_ROOT, fixture } from '../helpers/paths.js';
import { startSystem, waitFor, type TestSystem } from '../helpers/system.js';

const PIPELINE = [{ step: 'decode' }, { step: 'detect_faces' }, { step: 'upscale', params: { factor: 2 } }, { step: 'encode', params: { format: 'png' } }];
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

describe('reports and replay', () => {
  let system: TestSystem;
  let headers: Record<string, string>;
  let jobId: string;
  let result: Buffer;
  let reportText: string;
  let photo: Buffer;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'photolab-report-'));
  const url = (p: string) => `${system.baseUrl}${p}`;

  function verify(reportFile: string, imageFile: string, jwksFile: string): { status: number; output: string } {
    const run = spawnSync(process.execPath, [path.join(REPO_ROOT, 'dist/services/cli/verify.js'), reportFile, imageFile, '--jwks', jwksFile], { encoding: 'utf8' });
    return { status: run.status ?? -1, output: `${run.stdout}${run.stderr}` };
  }

  before(async () => {
    system = await startSystem({ steps: ['decode', 'detect_faces', 'upscale', 'encode'] });
    headers = bearer(await system.token('examiner', 'lab-report'));
    photo = await sharp(readFileSync(fixture('messi5.jpg'))).resize(240).jpeg({ quality: 92 }).toBuffer();
    const created = await request(url('/api/cases'), { method: 'POST', body: JSON.stringify({ name: 'report case' }), headers: { ...headers, 'content-type': 'application/json' } });
    const form = multipart([
      { name: 'file', value: photo, filename: 'messi.jpg', contentType: 'image/jpeg' },
      { name: 'pipeline', value: JSON.stringify(PIPELINE) },
      { name: 'caseId', value: created.body.id },
    ]);
    const submitted = await request(url('/api/jobs'), { method: 'POST', body: form.body, headers: { ...headers, 'content-type': form.contentType } });
    assert.equal(submitted.status, 202, submitted.bytes.toString());
    jobId = submitted.body.jobId;
    const job = await waitFor(async () => {
      const answer = await request(url(`/api/jobs/${jobId}`), { headers });
      return ['done', 'failed', 'canceled', 'timeout'].includes(answer.body.status) ? answer.body : undefined;
    }, 'the job', 120_000);
    assert.equal(job.status, 'done', JSON.stringify(job));
    result = (await request(url(`/api/jobs/${jobId}/result`), { headers })).bytes;
  });
  after(async () => {
    await system?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the report lists every step with model, model sha256, provider and output sha256, and discloses synthesis', async () => {
    assertError(await request(url('/api/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV/report'), { headers }), 404, 'job_not_found');
    const answer = await request(url(`/api/jobs/${jobId}/report`), { headers });
    assert.equal(answer.status, 200);
    assertSchema('http/report.schema.json', answer.body);
    reportText = answer.bytes.toString('utf8');
    const report = answer.body;
    assert.equal(report.job.jobId, jobId);
    assert.equal(report.job.caseName, 'report case');
    assert.equal(report.original.sha256, sha256(photo));
    assert.equal(report.original.stored, 'evidence');
    assert.equal(report.result.sha256, sha256(result));
    assert.deepEqual(report.steps.map((s: any) => s.step), PIPELINE.map((s) => s.step));
    for (const step of report.steps) {
      assert.equal(step.status, 'done');
      assert.match(step.outputSha256, /^[0-9a-f]{64}$/, `${step.step} output hash`);
      assert.equal(step.digestVersion, 2, `${step.step}: the report says how its hash was computed`);
      assert.ok(step.worker && step.startedAt && step.ms !== undefined);
    }
    assert.equal(report.steps[3].outputSha256, sha256(result), 'the last step\'s output is the result');
    for (const index of [1, 2]) {
      assert.ok(report.steps[index].model, 'model id');
      assert.match(report.steps[index].modelSha256, /^[0-9a-f]{64}/);
      assert.equal(report.steps[index].provider, 'cpu');
    }
    // The parameters as the step ran them: the caller's, with every default filled in.
    assert.equal(report.steps[2].params.factor, 2);
    assert.equal(report.steps[2].params.model, 'span');
    assert.deepEqual(report.steps.map((s: any) => s.synthesisesDetail), [false, false, true, false]);
    assert.equal(report.disclosures.length, 1);
    assert.match(report.disclosures[0], /model-generated detail/);
    assert.match(report.disclosures[0], /not a basis for identification/);
    assert.match(report.software.onnxruntime, /^\d+\.\d+/);
    assert.match(report.software.libvips, /^\d+\.\d+/);
    assert.match(report.software.gitCommit, /^([0-9a-f]{40}|unknown)$/);
  });

  test('the signature verifies offline and fails after one byte of the result or of the report is changed', async () => {
    const jwks = await request(url('/.well-known/jwks.json'));
    assert.equal(jwks.status, 200);
    assert.equal(jwks.body.keys[0].crv, 'Ed25519');
    assert.equal(jwks.body.keys[0].d, undefined, 'no private part');
    const jwksFile = path.join(dir, 'jwks.json');
    writeFileSync(jwksFile, jwks.bytes);
    const reportFile = path.join(dir, 'report.json');
    writeFileSync(reportFile, reportText);
    const resultFile = path.join(dir, 'result.png');
    writeFileSync(resultFile, result);
    const good = verify(reportFile, resultFile, jwksFile);
    assert.equal(good.status, 0, good.output);
    assert.match(good.output, /signature: valid/);

    const flipped = Buffer.from(result);
    flipped[flipped.length >> 1]! ^= 0x01;
    writeFileSync(path.join(dir, 'flipped.png'), flipped);
    const badFile = verify(reportFile, path.join(dir, 'flipped.png'), jwksFile);
    assert.equal(badFile.status, 1, badFile.output);
    assert.match(badFile.output, /DOES NOT MATCH/);

    // One byte of the report's content: the factor 2 of the upscale step becomes 3.
    const at = reportText.indexOf('"factor": 2');
    assert.ok(at > 0);
    const tampered = `${reportText.slice(0, at)}"factor": 3${reportText.slice(at + '"factor": 2'.length)}`;
    assert.equal(Buffer.byteLength(tampered), Buffer.byteLength(reportText));
    writeFileSync(path.join(dir, 'tampered.json'), tampered);
    const badReport = verify(path.join(dir, 'tampered.json'), resultFile, jwksFile);
    assert.equal(badReport.status, 1, badReport.output);
    assert.match(badReport.output, /signature: INVALID/);
  });

  test('the HTML report has both thumbnails side by side and the disclosure', async () => {
    const answer = await request(url(`/api/jobs/${jobId}/report?format=html`), { headers });
    assert.equal(answer.status, 200);
    assert.match(answer.headers['content-type']!, /^text\/html/);
    const html = answer.bytes.toString('utf8');
    assert.equal((html.match(/<img src="data:image\/jpeg;base64,/g) ?? []).length, 2);
    assert.match(html, /model-generated detail/);
    assert.ok(html.includes(sha256(result)) && html.includes(sha256(photo)));
  });

  test('replay on CPU of decode -> detect_faces -> upscale x2 -> encode(png) is byte-identical at every step', async () => {
    const answer = await request(url(`/api/jobs/${jobId}/replay`), { method: 'POST', headers });
    assert.ok(answer.status === 200 || answer.status === 202, answer.bytes.toString());
    const comparison = answer.status === 200 ? answer.body : await waitFor(async () => {
      const c = await request(url(answer.headers.location!), { headers });
      return c.body.identical !== undefined ? c.body : undefined;
    }, 'the replay', 120_000);
    assertSchema('http/replay.schema.json', comparison);
    assert.equal(comparison.status, 'done');
    assert.equal(comparison.identical, true, JSON.stringify(comparison));
    assert.equal(comparison.firstDifference, null);
    assert.equal(comparison.resultSha256.first, sha256(result));
    assert.deepEqual(comparison.steps.map((s: any) => s.identical), [true, true, true, true]);
    const replayJob = await request(url(`/api/jobs/${comparison.replayJobId}`), { headers });
    assert.equal(replayJob.body.replayOf, jobId);
    assert.ok(replayJob.body.caseId, 'the replay is in the same case');
  });
});
