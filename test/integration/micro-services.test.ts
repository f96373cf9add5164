/**
 * Stage processes are NATS micro services: discovered, described and counted through the
 * official micro client (@nats-io/services' ServiceClient, the same requests `nats micro
 * ls|info|stats` sends), on the real system. Processing time covers the whole async step,
 * errors are counted with the last error's code, and the custom data carries the backlog and
 * what the step runs on.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { Svcm } from '@nats-io/services';
import { fixture } from '../helpers/paths.js';
import { startSystem, waitFor, type TestSystem } from '../helpers/system.js';

async function all<T>(iterator: Promise<AsyncIterable<T>>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of await iterator) out.push(item);
  return out;
}

describe('stages as NATS micro services', () => {
  let system: TestSystem;
  // The micro client is typed against its own copy of the NATS core types; the connection is the same protocol.
  let client: ReturnType<Svcm['client']>;

  before(async () => {
    system = await startSystem({ steps: ['decode', 'encode', 'detect_faces'] });
    client = new Svcm(system.nc as never).client({ strategy: 'timer', maxWait: 1000 } as never);
  });
  after(async () => {
    await system?.stop();
  });

  test('ping and info find one service per hosted step, with its endpoint subject', async () => {
    const pings = await all(client.ping());
    assert.deepEqual(pings.map((p) => p.name).sort(), ['photolab-decode', 'photolab-detect_faces', 'photolab-encode']);
    for (const p of pings) {
      assert.equal(p.type, 'io.nats.micro.v1.ping_response');
      assert.equal(p.version, '0.1.0');
      assert.match(p.id, /^\w{22}$/);
    }
    const infos = await all(client.info('photolab-decode'));
    assert.equal(infos.length, 1);
    const info = infos[0]!;
    assert.equal(info.type, 'io.nats.micro.v1.info_response');
    assert.equal(info.metadata?.step, 'decode');
    assert.deepEqual(info.endpoints.map((e) => ({ name: e.name, subject: e.subject, queue_group: e.queue_group })), [{ name: 'decode', subject: 'photolab.stage.decode', queue_group: 'stage-decode' }]);
    // Addressed by name and id, as `nats micro info photolab-decode <id>` does.
    const byId = await all(client.info('photolab-decode', info.id));
    assert.equal(byId[0]?.id, info.id);
  });

  test('stats count each step run, its processing time, and errors with the last error', async () => {
    const photo = await sharp(readFileSync(fixture('dog.jpg'))).resize(128, 96).jpeg().toBuffer();
    const good = await system.submit(photo, [{ step: 'decode' }, { step: 'encode' }]);
    assert.equal((await system.waitForJob(good.jobId)).status, 'done');
    const bad = await system.submit(Buffer.concat([photo.subarray(0, 200), Buffer.alloc(2000, 7)]), [{ step: 'decode' }, { step: 'encode' }]);
    const failed = await system.waitForJob(bad.jobId);
    assert.equal(failed.status, 'failed');

    // A step counts once its message is settled (acked or termed, after the dead letter), which
    // can come a moment after the job's end that waitForJob saw.
    const stats = await waitFor(async () => {
      const all_ = await all(client.stats());
      return all_.find((s) => s.name === 'photolab-decode')?.endpoints?.[0]?.num_requests === 2 ? all_ : undefined;
    }, 'decode to count both runs');
    const decode = stats.find((s) => s.name === 'photolab-decode')!;
    const encode = stats.find((s) => s.name === 'photolab-encode')!;
    assert.equal(decode.type, 'io.nats.micro.v1.stats_response');
    assert.ok(Date.parse(decode.started) > 0);
    const d = decode.endpoints![0]!;
    assert.equal(d.num_requests, 2);
    assert.equal(d.num_errors, 1);
    assert.equal(d.last_error, failed.error!.code);
    assert.ok(d.processing_time > 0);
    assert.equal(d.average_processing_time, Math.round(d.processing_time / 2));
    const e = encode.endpoints![0]!;
    assert.equal(e.num_requests, 1);
    assert.equal(e.num_errors, 0);
    assert.equal(e.last_error, '');
    const data = d.data as { backlog: number; handled: number; models: unknown[]; provider: string | null };
    assert.equal(data.backlog, 0);
    assert.equal(typeof data.handled, 'number');
    assert.deepEqual([data.models, data.provider], [[], null], 'decode runs no model');
    const faces = stats.find((s) => s.name === 'photolab-detect_faces')!.endpoints![0]!.data as { models: { model: string; provider: string }[]; provider: string };
    assert.ok(faces.models.length > 0, JSON.stringify(faces));
    assert.equal(faces.provider, 'cpu');
  });
});
