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
import { BUCKETS, STREAMS } from '../../services/bus/subjects.js';
import { schemaValidator } from '../../services/shared/schemas.js';
import { fixture } from '../helpers/paths.js';
import { startSystem, type TestSystem } from '../helpers/system.js';

let system: TestSystem;
before(async () => {
  system = await startSystem({ steps: ['decode', 'encode'] });
});
after(async () => system?.stop());

test('live events on photolab.events.> are JSON job events; the KV record and step messages are readable', async () => {
  const seen: unknown[] = [];
  const sub = system.nc.subscribe('photolab.events.>');
  void (async () => {
    for await (const m of sub) seen.push(JSON.parse(m.string()));
  })();
  const stepMessages: unknown[] = [];
  const stageSub = system.nc.subscribe('photolab.stage.>');
  void (async () => {
    for await (const m of stageSub) stepMessages.push(JSON.parse(m.string()));
  })();

  const job = await system.waitForJob((await system.submit(readFileSync(fixture('dog.jpg')), [{ step: 'decode' }, { step: 'encode' }])).jobId);
  assert.equal(job.status, 'done');
  await new Promise((r) => setTimeout(r, 200));
  sub.unsubscribe();
  stageSub.unsubscribe();

  const validEvent = schemaValidator('messages/job-event.schema.json');
  assert.equal(seen.length, 6);
  for (const event of seen) assert.ok(validEvent(event), JSON.stringify(validEvent.errors));
  const validStep = schemaValidator('messages/job-message.schema.json');
  assert.equal(stepMessages.length, 2, 'one routing slip per step');
  for (const message of stepMessages) assert.ok(validStep(message), JSON.stringify(validStep.errors));

  const kv = await new Kvm(system.nc).open(BUCKETS.jobs);
  const record = (await kv.get(job.jobId))!.json();
  assert.ok(schemaValidator('messages/job-record.schema.json')(record));

  // `nats stream get PHOTOLAB_BLOBS --last-for photolab.blobs.results.<jobId>.meta`: the result's description, JSON.
  const jsmBlobs = await jetstreamManager(system.nc);
  for (const kind of ['uploads', 'results']) {
    const meta = await jsmBlobs.streams.getMessage(STREAMS.blobs, { last_by_subj: `photolab.blobs.${kind}.${job.jobId}.meta` });
    assert.ok(schemaValidator('common.schema.json#/definitions/BlobRef')(meta!.json()), `${kind} description is a BlobRef`);
  }

  const jsm = await jetstreamManager(system.nc);
  const streams: string[] = [];
  for await (const info of jsm.streams.list()) streams.push(info.config.name);
  for (const name of Object.values(STREAMS)) assert.ok(streams.includes(name), `${name} exists`);
  assert.ok(streams.includes(`KV_${BUCKETS.jobs}`));
  const consumers: string[] = [];
  for await (const info of jsm.consumers.list(STREAMS.stages)) consumers.push(info.name);
  assert.ok(consumers.includes('stage-decode') && consumers.includes('stage-encode'));
});
