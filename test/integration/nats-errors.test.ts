/**
 * isBusOutage tells "the bus is away, try again later" from "the bus said no", on the errors a
 * real nats-server 2.9 and the client give (not on errors built by hand): the stage runner waits
 * out the first kind in the same delivery and treats the second as the step's failure.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { isBusOutage, isWrongLastSequence } from '../../services/lib/bus/nats-errors.js';
import { appError } from '../../services/lib/shared/errors.js';
import { startNatsServer, type TestNatsServer } from '../helpers/nats-server.js';

let nats: TestNatsServer;
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;

before(async () => {
  nats = await startNatsServer();
  nc = await connect({ servers: nats.url });
  jsm = await jetstreamManager(nc);
  js = jetstream(nc, { timeout: 500 });
  await jsm.streams.add({ name: 'ERRS', subjects: ['errs.>'] });
  await jsm.streams.add({ name: 'SILENT', subjects: ['silent.>'], no_ack: true });
});
after(async () => {
  await nc?.close();
  await nats?.stop();
});

const thrown = async (p: Promise<unknown>): Promise<unknown> => p.then(() => assert.fail('expected a failure'), (e: unknown) => e);

test('outages: no stream answering a subject (JetStream starting, a stream without a leader), an ack that never comes, a lost ack', async () => {
  const noResponders = await thrown(js.publish('nowhere.x', 'x'));
  assert.equal((noResponders as Error).name, 'JetStreamNotEnabled', 'what the client makes of the 503');
  assert.ok(isBusOutage(noResponders));
  const timeout = await thrown(js.publish('silent.x', 'x'));
  assert.ok(isBusOutage(timeout), String(timeout));
  const wrapped = appError('internal_error', 'storing the result failed', { cause: timeout });
  assert.ok(isBusOutage(wrapped), 'seen through the error it was made from');
  assert.ok(isBusOutage(appError('bus_unavailable', 'ack lost with the connection')));
});

test('refusals are not outages: a lost compare-and-set, a missing stream asked by name, a step error', async () => {
  await js.publish('errs.end', 'first', { expect: { lastSubjectSequence: 0 } });
  const lost = await thrown(js.publish('errs.end', 'second', { expect: { lastSubjectSequence: 0 } }));
  assert.ok(isWrongLastSequence(lost));
  assert.equal(isBusOutage(lost), false);
  assert.equal(isBusOutage(await thrown(jsm.streams.info('NO_SUCH_STREAM'))), false);
  assert.equal(isBusOutage(appError('no_output', 'the step returned no frame')), false);
  assert.equal(isBusOutage(appError('internal_error', 'a bug')), false, 'retryable, but no outage: it spends a try');
  assert.equal(isBusOutage(undefined), false);
});
