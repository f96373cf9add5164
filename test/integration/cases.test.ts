/**
 * Cases and evidence against the real system (nats-server, edge, decode and encode workers):
 * lifecycle (create, read, rename, list in cursor pages, close), isolation between tenants,
 * jobs in a case (HTTP, WebSocket, PLAYE endpoint) and the 409 of a closed case, the PLAYE
 * cloudStorage shape on the same paths (last writer by updatedAt wins), and originals that
 * outlive the blob TTL, come back byte-identical and start jobs by their hash.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { assertError, assertSchema, bearer, multipart, request, type HttpAnswer } from '../helpers/edge-client.js';
import { fixture } from '../helpers/paths.js';
import { openSocket, startSystem, waitFor, type TestSystem } from '../helpers/system.js';

const DECODE_ENCODE = [{ step: 'decode' }, { step: 'encode', params: { format: 'png' } }];
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('cases and evidence', () => {
  let system: TestSystem;
  let photo: Buffer;
  const url = (path: string) => `${system.baseUrl}${path}`;
  /** alice and carol share tenant lab-a; bob is in lab-b. */
  const as = async (sub: string, tenant: string) => bearer(await system.token(sub, tenant));
  const alice = () => as('alice', 'lab-a');
  const carol = () => as('carol', 'lab-a');
  const bob = () => as('bob', 'lab-b');

  async function postJson(path: string, body: unknown, headers: Record<string, string>, method = 'POST'): Promise<HttpAnswer> {
    return request(url(path), { method, body: JSON.stringify(body), headers: { ...headers, 'content-type': 'application/json' } });
  }

  async function createCase(name: string, headers: Record<string, string>): Promise<any> {
    const answer = await postJson('/api/cases', { name }, headers);
    assert.equal(answer.status, 201, answer.bytes.toString());
    assertSchema('http/case.schema.json', answer.body);
    return answer.body;
  }

  async function submitInCase(caseId: string, headers: Record<string, string>, extra: { name: string; value: string }[] = [], image: Buffer | null = photo): Promise<HttpAnswer> {
    const form = multipart([
      ...(image ? [{ name: 'file', value: image, filename: 'photo.jpg', contentType: 'image/jpeg' }] : []),
      { name: 'pipeline', value: JSON.stringify(DECODE_ENCODE) },
      { name: 'caseId', value: caseId },
      ...extra,
    ]);
    return request(url('/api/jobs'), { method: 'POST', body: form.body, headers: { ...headers, 'content-type': form.contentType } });
  }

  async function waitDone(jobId: string, headers: Record<string, string>): Promise<any> {
    return waitFor(async () => {
      const answer = await request(url(`/api/jobs/${jobId}`), { headers });
      return ['done', 'failed', 'canceled', 'timeout'].includes(answer.body.status) ? answer.body : undefined;
    }, `job ${jobId} to end`, 30_000);
  }

  before(async () => {
    // A short blob TTL: results and plain uploads expire within seconds, case originals must not.
    system = await startSystem({ steps: ['decode', 'encode'], env: { BLOB_TTL_S: '2' } });
    photo = await sharp(readFileSync(fixture('dog.jpg'))).resize(160, 120).jpeg({ quality: 90 }).toBuffer();
  });
  after(async () => {
    await system?.stop();
  });

  test('lifecycle: create, read, rename, list in cursor pages, close', async () => {
    const headers = await as('dana', 'lab-life');
    const created = await createCase('Burglary 12 Elm St', headers);
    assert.equal(created.status, 'open');
    assert.equal(created.id, created.caseId);
    assert.equal(created.createdBy, 'dana');

    const renamed = await postJson(`/api/cases/${created.id}`, { name: 'Burglary 12 Elm Street' }, headers, 'PATCH');
    assert.equal(renamed.status, 200, renamed.bytes.toString());
    assert.equal(renamed.body.name, 'Burglary 12 Elm Street');
    assert.ok(Date.parse(renamed.body.updatedAt) >= Date.parse(created.updatedAt));
    assertError(await postJson(`/api/cases/${created.id}`, { name: '' }, headers, 'PATCH'), 400, 'invalid_request');

    const read = await request(url(`/api/cases/${created.id}`), { headers });
    assert.equal(read.status, 200);
    assertSchema('http/case.schema.json', read.body);
    assert.deepEqual(read.body.jobs, []);
    assert.equal(read.body.name, 'Burglary 12 Elm Street');

    const more = [await createCase('second', headers), await createCase('third', headers)];
    const first = await request(url('/api/cases?limit=2'), { headers });
    assert.equal(first.status, 200);
    assert.ok(Array.isArray(first.body));
    for (const c of first.body) assertSchema('http/case.schema.json', c);
    assert.deepEqual(first.body.map((c: any) => c.id), [more[1].id, more[0].id], 'newest first');
    const cursor = first.headers['x-next-cursor'];
    assert.ok(cursor, 'a next cursor');
    const second = await request(url(`/api/cases?limit=2&cursor=${cursor}`), { headers });
    assert.deepEqual(second.body.map((c: any) => c.id), [created.id]);
    assert.equal(second.headers['x-next-cursor'], undefined, 'last page');
    assertError(await request(url('/api/cases?cursor=nonsense!'), { headers }), 400, 'invalid_cursor');

    const closed = await request(url(`/api/cases/${created.id}/close`), { method: 'POST', headers });
    assert.equal(closed.status, 200);
    assert.equal(closed.body.status, 'closed');
    assert.ok(closed.body.closedAt);
    assertError(await request(url(`/api/cases/${created.id}/close`), { method: 'POST', headers }), 409, 'case_closed');
  });

  test('a case belongs to its tenant: invisible (404) to another tenant, shared within its own', async () => {
    const mine = await createCase('tenant A case', await alice());
    for (const [path, method] of [[`/api/cases/${mine.id}`, 'GET'], [`/api/cases/${mine.id}/close`, 'POST']] as const) {
      assertError(await request(url(path), { method, headers: await bob() }), 404, 'case_not_found');
    }
    assertError(await postJson(`/api/cases/${mine.id}`, { name: 'taken over' }, await bob(), 'PATCH'), 404, 'case_not_found');
    assertError(await submitInCase(mine.id, await bob()), 404, 'case_not_found');
    const bobs = await request(url('/api/cases'), { headers: await bob() });
    assert.ok(!bobs.body.some((c: any) => c.id === mine.id), 'not in the other tenant\'s list');
    // A PLAYE upsert with the same id in the other tenant makes that tenant's own case, not a write to ours.
    const foreign = await postJson('/api/cases', { id: mine.id, name: 'bob\'s', updatedAt: Date.now() + 60_000 }, await bob());
    assert.equal(foreign.status, 201);
    const still = await request(url(`/api/cases/${mine.id}`), { headers: await alice() });
    assert.equal(still.body.name, 'tenant A case');

    const colleague = await request(url(`/api/cases/${mine.id}`), { headers: await carol() });
    assert.equal(colleague.status, 200, 'same tenant: visible');
  });

  test('jobs name a case over HTTP, WebSocket and the PLAYE endpoint; a closed case refuses them with 409', async () => {
    const headers = await alice();
    const c = await createCase('jobs', headers);
    const http = await submitInCase(c.id, headers);
    assert.equal(http.status, 202, http.bytes.toString());
    assert.equal(http.body.caseId, c.id);

    const token = await system.token('alice', 'lab-a');
    const socket = await openSocket(`${system.baseUrl.replace('http', 'ws')}/ws?token=${token}`);
    socket.ws.send(JSON.stringify({ type: 'submit', pipeline: DECODE_ENCODE, image: photo.toString('base64'), caseId: c.id, clientRef: 'ws1' }));
    const submitted = await socket.next((m) => m.type === 'submitted' && m.clientRef === 'ws1');

    const playeForm = multipart([{ name: 'file', value: photo, filename: 'image.png', contentType: 'image/png' }, { name: 'factor', value: '2' }]);
    // upscale has no worker here: respond-async answers 202 at once, and the job is in the case.
    const playe = await request(url(`/api/ai/upscale?caseId=${c.id}`), { method: 'POST', body: playeForm.body, headers: { ...headers, 'content-type': playeForm.contentType, prefer: 'respond-async' } });
    assert.equal(playe.status, 202, playe.bytes.toString());

    await waitDone(http.body.jobId, headers);
    await waitDone(submitted.jobId, headers);
    const detail = await request(url(`/api/cases/${c.id}`), { headers });
    assertSchema('http/case.schema.json', detail.body);
    const byId = new Map(detail.body.jobs.map((j: any) => [j.jobId, j]));
    assert.equal(detail.body.jobs.length, 3);
    assert.equal((byId.get(http.body.jobId) as any).status, 'done');
    assert.equal((byId.get(submitted.jobId) as any).status, 'done');
    assert.ok(['pending', 'running'].includes((byId.get(playe.body.jobId) as any).status), 'waits for upscale');
    assert.equal(detail.body.jobCount, 3);
    // The same photo three times is one original.
    assert.equal(detail.body.evidence.length, 1);
    assert.equal(detail.body.evidence[0].sha256, sha256(photo));
    await request(url(`/api/jobs/${playe.body.jobId}/cancel`), { method: 'POST', headers });

    const closed = await request(url(`/api/cases/${c.id}/close`), { method: 'POST', headers });
    assert.equal(closed.status, 200);
    const refused = await submitInCase(c.id, headers);
    assertError(refused, 409, 'case_closed');
    assert.match(refused.body.message, /closed/);
    socket.ws.send(JSON.stringify({ type: 'submit', pipeline: DECODE_ENCODE, image: photo.toString('base64'), caseId: c.id, clientRef: 'ws2' }));
    const wsRefused = await socket.next((m) => m.type === 'error' && m.code === 'case_closed');
    assert.equal(wsRefused.code, 'case_closed');
    const playeRefused = await request(url(`/api/ai/upscale?caseId=${c.id}`), { method: 'POST', body: playeForm.body, headers: { ...headers, 'content-type': playeForm.contentType } });
    assertError(playeRefused, 409, 'case_closed');
    const evidenceRefused = await request(url(`/api/cases/${c.id}/evidence`), { method: 'POST', body: photo, headers: { ...headers, 'content-type': 'image/jpeg' } });
    assertError(evidenceRefused, 409, 'case_closed');
    const after = await request(url(`/api/cases/${c.id}`), { headers });
    assert.equal(after.body.jobs.length, 3, 'refused jobs are not in the case');
    socket.ws.close();
  });

  test('PLAYE cloudStorage shape on the same paths: array of case objects, upsert with last writer by updatedAt', async () => {
    const headers = await as('eve', 'lab-playe');
    const t0 = Date.parse('2026-01-10T10:00:00.000Z');
    const object = { id: 'case-1700000000000', name: 'Robbery', updatedAt: t0, media: [{ id: 'm1', name: 'cam.jpg' }], notes: 'first' };
    const created = await postJson('/api/cases', object, headers);
    assert.equal(created.status, 201, created.bytes.toString());
    assertSchema('http/case.schema.json', created.body);
    assert.equal(created.body.id, object.id);
    assert.equal(created.body.updatedAt, t0, 'updatedAt answered in the type the client sent');
    assert.deepEqual(created.body.media, object.media);

    const newer = await postJson('/api/cases', { ...object, notes: 'second', updatedAt: t0 + 1000 }, headers);
    assert.equal(newer.status, 200);
    assert.equal(newer.body.notes, 'second');
    const older = await postJson('/api/cases', { ...object, notes: 'stale', updatedAt: t0 + 500 }, headers);
    assert.equal(older.status, 200);
    assert.equal(older.body.notes, 'second', 'an older write loses');
    assert.equal(older.body.updatedAt, t0 + 1000);
    const iso = await postJson('/api/cases', { ...object, notes: 'iso', updatedAt: new Date(t0 + 2000).toISOString() }, headers);
    assert.equal(iso.body.notes, 'iso');
    assert.equal(iso.body.updatedAt, new Date(t0 + 2000).toISOString());

    const list = await request(url('/api/cases'), { headers });
    assert.equal(list.status, 200);
    assert.ok(Array.isArray(list.body));
    const listed = list.body.find((c: any) => c.id === object.id);
    assert.ok(listed && listed.updatedAt && listed.name === 'Robbery' && listed.notes === 'iso');
    // A product case is in the same list, and a PLAYE case takes jobs like any other.
    const product = await createCase('product case', headers);
    const both = await request(url('/api/cases'), { headers });
    assert.deepEqual(new Set(both.body.map((c: any) => c.id)), new Set([object.id, product.id]));
    const job = await submitInCase(object.id, headers);
    assert.equal(job.status, 202, job.bytes.toString());
    assertError(await postJson('/api/cases', { id: 'bad id!', updatedAt: 1 }, headers), 400, 'invalid_request');
    assertError(await postJson('/api/cases', { notes: 'neither name nor id' }, headers), 400, 'invalid_request');
  });

  test('evidence: the original outlives the blob TTL byte-identical, and starts jobs by its hash', async () => {
    const headers = await alice();
    const c = await createCase('evidence', headers);
    const original = readFileSync(fixture('dog.jpg'));
    const uploaded = await request(url(`/api/cases/${c.id}/evidence`), { method: 'POST', body: original, headers: { ...headers, 'content-type': 'image/jpeg' } });
    assert.equal(uploaded.status, 201, uploaded.bytes.toString());
    assertSchema('http/evidence.schema.json', uploaded.body);
    assert.equal(uploaded.body.sha256, sha256(original));
    assert.equal(uploaded.body.bytes, original.length);
    assert.equal(uploaded.body.format, 'jpeg');
    assert.equal(uploaded.body.uploadedBy, 'alice');

    // A job from the kept original by its hash: no second upload.
    const byHash = await submitInCase(c.id, headers, [{ name: 'originalSha256', value: sha256(original) }], null);
    assert.equal(byHash.status, 202, byHash.bytes.toString());
    assert.equal(byHash.body.input.sha256, sha256(original));
    const done = await waitDone(byHash.body.jobId, headers);
    assert.equal(done.status, 'done', JSON.stringify(done));
    assertError(await submitInCase(c.id, headers, [{ name: 'originalSha256', value: 'a'.repeat(64) }], null), 404, 'evidence_not_found');
    // A caller blob (POST /api/blobs) is taken into the case as evidence by its blobId.
    const blob = await request(url('/api/blobs'), { method: 'POST', body: photo, headers: { ...headers, 'content-type': 'image/jpeg' } });
    const fromBlob = await postJson('/api/jobs', { pipeline: DECODE_ENCODE, blobId: blob.body.blobId, caseId: c.id }, headers);
    assert.equal(fromBlob.status, 202, fromBlob.bytes.toString());
    await waitDone(fromBlob.body.jobId, headers);

    // The results expire with the blob TTL (2 s); the originals stay.
    await waitFor(async () => (await request(url(`/api/jobs/${byHash.body.jobId}/result`), { headers })).status === 410, 'the result to expire', 30_000);
    for (const [bytes, type] of [[original, 'image/jpeg'], [photo, 'image/jpeg']] as const) {
      const back = await request(url(`/api/cases/${c.id}/evidence/${sha256(bytes)}`), { headers });
      assert.equal(back.status, 200, back.bytes.toString());
      assert.equal(back.headers['content-type'], type);
      assert.equal(back.headers['x-content-sha256'], sha256(bytes));
      assert.ok(back.bytes.equals(bytes), 'byte-identical original');
    }
    const again = await submitInCase(c.id, headers, [{ name: 'originalSha256', value: sha256(original) }], null);
    assert.equal(again.status, 202, 'an expired result does not take its original with it');
    assertError(await request(url(`/api/cases/${c.id}/evidence/${sha256(original)}`), { headers: await bob() }), 404, 'case_not_found');
  });
});
