/**
 * What an operator sees with the NATS CLI (`nats sub`, `nats kv get`, `nats stream view`),
 * checked with the client library: the documented names exist and every payload is readable
 * JSON that matches its schema.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { BUCKETS, STREAMS } from '../../services/lib/bus/subjects.js';
import { jobKey } from '../../services/lib/bus/job-store.js';
import { schemaValidator } from '../../services/lib/shared/schemas.js';
import { fixture } from '../helpers/paths.js';
import { startSystem, waitFor, type TestSystem } from '../helpers/system.js';

let system: TestSystem;
before(async () => {
  system = await startSystem({ steps: ['decode', 'encode'] });
});
after(async () => system?.stop());

test('live events on photolab.events.> are JSON job events; the KV record and step messages are readable', async () => {
  const seen: unknown[] = [];
  // `nats sub 'photolab.events.>'` (the stored facts) and `nats sub 'photolab.progress.>'` (live progress).
  const subs = ['photolab.events.>', 'photolab.progress.>'].map((subject) => system.nc.subscribe(subject, {
    callback: (_e, m) => { seen.push(JSON.parse(m.string())); },
  }));
  const stepMessages: unknown[] = [];
  const stageSub = system.nc.subscribe('photolab.stage.>');
  void (async () => {
    for await (const m of stageSub) stepMessages.push(JSON.parse(m.string()));
  })();

  const job = await system.waitForJob((await system.submit(readFileSync(fixture('dog.jpg')), [{ step: 'decode' }, { step: 'encode' }])).jobId);
  assert.equal(job.status, 'done');
  // Live messages arrive after the job's end is stored: wait for them, then flush, so that a
  // duplicate would be counted too.
  await waitFor(() => seen.length >= 6 && stepMessages.length >= 2, 'the job\'s live messages');
  await system.nc.flush();
  for (const sub of subs) sub.unsubscribe();
  stageSub.unsubscribe();

  const validEvent = schemaValidator('messages/job-event.schema.json');
  assert.equal(seen.length, 6);
  for (const event of seen) assert.ok(validEvent(event), JSON.stringify(validEvent.errors));
  const validStep = schemaValidator('messages/job-message.schema.json');
  assert.equal(stepMessages.length, 2, 'one routing slip per step');
  for (const message of stepMessages) assert.ok(validStep(message), JSON.stringify(validStep.errors));

  assert.deepEqual((seen as { type: string }[]).map((e) => e.type), ['job.accepted', 'step.started', 'step.finished', 'step.started', 'step.finished', 'job.done']);

  // `nats kv get photolab-jobs <ownerHash>.<jobId>` (`nats kv ls photolab-jobs` lists the keys): the record as submitted.
  const kv = await new Kvm(system.nc).open(BUCKETS.jobs);
  const record = (await kv.get(jobKey({ sub: 'alice' }, job.jobId)))!.json();
  assert.ok(schemaValidator('messages/job-record.schema.json')(record));
  // `nats stream get PHOTOLAB_EVENTS --last-for photolab.events.<jobId>.end`: how it ended, JSON.
  const jsmEvents = await jetstreamManager(system.nc);
  const end = await jsmEvents.streams.getMessage(STREAMS.events, { last_by_subj: `photolab.events.${job.jobId}.end` });
  assert.equal(end!.json<{ type: string }>().type, 'job.done');

  // `nats stream get PHOTOLAB_BLOBS --last-for photolab.blobs.results.<jobId>.0`: the result's bytes, and its description
  // (a BlobRef as JSON) in the header Photolab-Blob.
  for (const kind of ['uploads', 'results']) {
    const chunk = await jsmEvents.streams.getMessage(STREAMS.blobs, { last_by_subj: `photolab.blobs.${kind}.${job.jobId}.0` });
    const description = JSON.parse(chunk!.header!.get('Photolab-Blob')) as { bytes: number };
    assert.ok(schemaValidator('common.schema.json#/definitions/BlobRef')(description), `${kind} description is a BlobRef`);
    assert.equal(description.bytes, chunk!.data.length, 'a small blob is one message');
  }

  // One write per fact: two step events and the end; the upload and the result one message each.
  const stored = async (stream: string, filter: string) => Object.values((await jsmEvents.streams.info(stream, { subjects_filter: filter })).state.subjects ?? {}).reduce((a, b) => a + b, 0);
  assert.equal(await stored(STREAMS.events, `photolab.events.${job.jobId}.*`), 3);
  assert.equal(await stored(STREAMS.blobs, `photolab.blobs.*.${job.jobId}.>`), 2);

  const jsm = await jetstreamManager(system.nc);
  const streams: string[] = [];
  for await (const info of jsm.streams.list()) streams.push(info.config.name);
  for (const name of Object.values(STREAMS)) assert.ok(streams.includes(name), `${name} exists`);
  assert.ok(streams.includes(`KV_${BUCKETS.jobs}`));
  const consumers: string[] = [];
  for await (const info of jsm.consumers.list(STREAMS.stages)) consumers.push(info.name);
  assert.ok(consumers.includes('stage-decode') && consumers.includes('stage-encode'));
});
