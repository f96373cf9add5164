/**
 * The stage runner's retries against a real nats-server, with a fixture step that fails on
 * purpose: a retryable failure is a step.retrying fact and a delayed redelivery; past
 * MAX_ATTEMPTS the job fails (one terminal event, carrying the failing run) and the message is
 * dead-lettered; a bad input fails at once; a bus that stops answering is waited out without
 * spending the step's deliveries. Checked through the stored events and the consumer's state,
 * never by sleeping.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { AckPolicy, type ConsumerMessages } from '@nats-io/jetstream';
import { connectBus, type Bus } from '../../services/lib/bus/bus.js';
import { JobEnds } from '../../services/lib/bus/job-ends.js';
import { STREAMS, stageConsumer, subjects, uploadBlobName } from '../../services/lib/bus/subjects.js';
import { enqueueStep, firstStep } from '../../services/lib/bus/step-queue.js';
import { StageRunner, type ColocatedSteps } from '../../services/lib/pipeline/stage-runner.js';
import type { StageDefinition } from '../../services/lib/pipeline/stage.js';
import type { EncodedImage } from '../../services/lib/pipeline/frame.js';
import { loadConfig, type Config } from '../../services/lib/shared/config.js';
import { AppError } from '../../services/lib/shared/errors.js';
import { newId } from '../../services/lib/shared/ids.js';
import { createLogger } from '../../services/lib/shared/logger.js';
import { registerSchema } from '../../services/lib/shared/schemas.js';
import type { DeadLetter, JobEvent, JobRecord } from '../../services/lib/shared/schema-types.js';
import { startNatsServer, type TestNatsServer } from '../helpers/nats-server.js';
import { waitFor } from '../helpers/system.js';

const STEP = 'flaky';
const owner = { sub: 'retry-tester' };
const failuresOf = new Map<string, { left: number; retryable: boolean; onFirstRun?: () => Promise<void> }>();

/** A one-step pipeline's step: bytes in, the same bytes out, failing as the test says. */
const flaky: StageDefinition = {
  step: STEP,
  version: '1.0.0',
  input: 'encoded',
  output: 'encoded',
  async prepare() {
    return {
      async run(input: { encoded: EncodedImage }, params) {
        const plan = failuresOf.get(String(params.tag));
        const onFirstRun = plan?.onFirstRun;
        if (plan) plan.onFirstRun = undefined;
        await onFirstRun?.();
        if (plan && plan.left > 0) {
          plan.left--;
          throw new AppError(plan.retryable ? 503 : 422, plan.retryable ? 'model_failed' : 'undecodable_image', 'failing on purpose', { retryable: plan.retryable });
        }
        return { encoded: input.encoded! };
      },
    };
  },
};

// A step is a definition and a params schema: this one's schema lives here, not in schemas/.
registerSchema({
  $schema: 'http://json-schema.org/draft-07/schema#', $id: `https://photolab.dev/schemas/steps/${STEP}.schema.json`,
  type: 'object', additionalProperties: false, properties: { tag: { type: 'string' } },
});

let nats: TestNatsServer;
let bus: Bus;
let runner: StageRunner;
let ends: JobEnds;
let config: Config;
let dead: ConsumerMessages;
const deadLetters: DeadLetter[] = [];

before(async () => {
  nats = await startNatsServer();
  config = loadConfig({ NATS_URL: nats.url, MAX_ATTEMPTS: '3', RETRY_DELAY_MS: '150', ACK_WAIT_MS: '5000', NATS_REQUEST_TIMEOUT_MS: '1000', LOG_LEVEL: 'silent' });
  const log = createLogger('runner-retries');
  bus = await connectBus(config, log, 'runner-retries', { steps: [STEP] });
  ends = new JobEnds(bus.nc, bus.jobs);
  ends.start();
  const hosted: ColocatedSteps = new Map([[STEP, { stage: flaky, prepared: await flaky.prepare({ log, modelsDir: '' }) }]]);
  runner = new StageRunner({ bus, step: STEP, hosted, ends, config, log });
  await runner.start();
  await bus.jsm.consumers.add(STREAMS.deadLetters, { durable_name: 'test-dlq', ack_policy: AckPolicy.None, filter_subject: subjects.deadLetter(STEP) });
  dead = await (await bus.js.consumers.get(STREAMS.deadLetters, 'test-dlq')).consume();
  void (async () => {
    for await (const m of dead) deadLetters.push(m.json<DeadLetter>());
  })();
});
after(async () => {
  await dead?.close();
  await runner?.stop();
  ends?.stop();
  await bus?.close();
  await nats?.stop();
});

/** Submits a one-step job the way the edge does (record, upload, first step message). */
async function submit(tag: string): Promise<string> {
  const jobId = newId();
  const now = Date.now();
  const pipeline = [{ step: STEP, params: { tag } }];
  const input = await bus.blobs.put(uploadBlobName(jobId), Buffer.from(`image of ${tag}`), 'application/octet-stream');
  const record: JobRecord = { jobId, owner, status: 'pending', pipeline, createdAt: now, deadline: now + 60_000, input, steps: [{ index: 0, step: STEP, status: 'pending' }] };
  await bus.jobs.create(record);
  await enqueueStep(bus.js, firstStep(record, { now }));
  return jobId;
}

async function endOf(jobId: string): Promise<JobEvent> {
  return waitFor(() => bus.jobs.terminal(jobId), `job ${jobId} to end`, 20_000);
}

async function settled(): Promise<void> {
  await waitFor(async () => {
    const info = await bus.jsm.consumers.info(STREAMS.stages, stageConsumer(STEP));
    return info.num_pending === 0 && info.num_ack_pending === 0;
  }, 'the step consumer to have nothing pending', 20_000);
}

test('two retryable failures, then success: two step.retrying facts, redelivered after the growing delay, one result', async () => {
  failuresOf.set('twice', { left: 2, retryable: true });
  const jobId = await submit('twice');
  const end = await endOf(jobId);
  assert.equal(end.type, 'job.done');
  const events = await bus.jobs.stepEvents(jobId);
  assert.deepEqual(events.map((e) => `${e.type}:${e.attempt}`), ['step.retrying:1', 'step.retrying:2', 'step.finished:3']);
  assert.deepEqual(events.map((e) => e.run?.status), ['error', 'error', 'ok'], 'each attempt is a stage_runs row');
  assert.equal(events[0]!.error?.code, 'model_failed');
  // Redelivered no sooner than RETRY_DELAY_MS, then twice that (the nak's delay).
  const [first, second, third] = events.map((e) => e.run!);
  assert.ok(second!.startedAt - first!.finishedAt >= 150, `second try ${second!.startedAt - first!.finishedAt} ms after the first`);
  assert.ok(third!.startedAt - second!.finishedAt >= 300, `third try ${third!.startedAt - second!.finishedAt} ms after the second`);
  const job = await bus.jobs.get(owner, jobId);
  assert.equal(job?.status, 'done');
  assert.equal(job?.steps[0]?.attempt, 3);
  await settled();
});

test('failing every time: after MAX_ATTEMPTS the job fails once, with the failing run, and the message is dead-lettered', async () => {
  failuresOf.set('always', { left: 99, retryable: true });
  const jobId = await submit('always');
  const end = await endOf(jobId);
  assert.equal(end.type, 'job.failed');
  assert.equal(end.error?.code, 'model_failed');
  assert.equal(end.run?.attempt, 3, 'the last attempt travels with the end (its stage_runs row)');
  assert.equal(end.summary?.status, 'failed');
  assert.deepEqual((await bus.jobs.stepEvents(jobId)).map((e) => e.type), ['step.retrying', 'step.retrying']);
  const letter = await waitFor(() => deadLetters.find((d) => d.jobId === jobId), 'the dead letter');
  assert.equal(letter.attempts, 3);
  assert.equal(letter.error.code, 'model_failed');
  const job = await bus.jobs.get(owner, jobId);
  assert.deepEqual([job?.status, job?.steps[0]?.status], ['failed', 'failed']);
  await settled();
});

test('a bad input fails at once: no retry, one terminal event', async () => {
  failuresOf.set('bad', { left: 99, retryable: false });
  const jobId = await submit('bad');
  const end = await endOf(jobId);
  assert.equal(end.type, 'job.failed');
  assert.equal(end.error?.code, 'undecodable_image');
  assert.equal(end.run?.attempt, 1);
  assert.deepEqual(await bus.jobs.stepEvents(jobId), []);
  await waitFor(() => deadLetters.find((d) => d.jobId === jobId), 'the dead letter');
  await settled();
});

test('a canceled job\'s queued step is skipped, and a second end for it is refused', async () => {
  failuresOf.set('slow-start', { left: 0, retryable: true });
  await runner.stop(); // nobody takes the step while it is canceled
  const jobId = await submit('slow-start');
  const record = (await bus.jobs.submitted(owner, jobId))!;
  const { finishJob } = await import('../../services/lib/pipeline/job-lifecycle.js');
  const facts = { jobId, owner, pipeline: record.pipeline, createdAt: record.createdAt, inputBytes: record.input.bytes };
  assert.ok(await finishJob(bus, facts, { status: 'canceled' }, 'test'));
  assert.equal(await finishJob(bus, facts, { status: 'done' }, 'test'), null, 'exactly one end per job');
  const log = createLogger('runner-retries');
  const hosted: ColocatedSteps = new Map([[STEP, { stage: flaky, prepared: await flaky.prepare({ log, modelsDir: '' }) }]]);
  runner = new StageRunner({ bus, step: STEP, hosted, ends, config, log });
  await runner.start();
  await settled();
  assert.equal((await bus.jobs.terminal(jobId))?.type, 'job.canceled');
  assert.deepEqual(await bus.jobs.stepEvents(jobId), [], 'the step never ran');
});

/**
 * The events stream stops acknowledging (no_ack: what it is sent is stored, no answer comes), as
 * when a publish's ack is lost with a connection or a cluster has no stream leader yet. Returns
 * the function that makes it answer again.
 */
async function eventsStopAnswering(): Promise<() => Promise<void>> {
  const { config: stream } = await bus.jsm.streams.info(STREAMS.events);
  await bus.jsm.streams.update(STREAMS.events, { ...stream, no_ack: true });
  return async () => {
    await bus.jsm.streams.update(STREAMS.events, { ...stream, no_ack: false });
  };
}

async function endEventsOf(jobId: string): Promise<number> {
  const info = await bus.jsm.streams.info(STREAMS.events, { subjects_filter: subjects.endEvent(jobId) });
  return info.state.subjects?.[subjects.endEvent(jobId)] ?? 0;
}

/**
 * Submits a job whose first run makes the events stream stop answering, and makes it answer
 * again once the runner has waited for the bus `waits` times. Returns the job's id.
 */
async function submitIntoSilence(tag: string, plan: { left: number; retryable: boolean }, waits: number): Promise<string> {
  let answerAgain: (() => Promise<void>) | undefined;
  const waitsBefore = runner.waitsForBus;
  failuresOf.set(tag, { ...plan, onFirstRun: async () => { answerAgain = await eventsStopAnswering(); } });
  const jobId = await submit(tag);
  try {
    await waitFor(() => runner.waitsForBus - waitsBefore >= waits || undefined, `${waits} waits for the bus`, 30_000);
  } finally {
    await answerAgain?.();
  }
  return jobId;
}

test('a bus that stops answering is waited out in the same delivery: more waits than max_deliver allows, then one result, attempt 1', async () => {
  // Each wait follows a publish that timed out; before, each was a retry that spent a delivery
  // (max_deliver = MAX_ATTEMPTS + 2 = 5), and the job failed at its third.
  const jobId = await submitIntoSilence('outage', { left: 0, retryable: true }, 5);
  const end = await endOf(jobId);
  assert.equal(end.type, 'job.done', JSON.stringify(end.error));
  assert.equal(end.result?.provenance[0]?.attempt, 1, 'no delivery spent on the outage');
  const events = await bus.jobs.stepEvents(jobId);
  assert.deepEqual(events.map((e) => `${e.type}:${e.attempt}`), ['step.finished:1'], 'the facts stored while nobody answered came back as duplicates');
  assert.equal(await endEventsOf(jobId), 1);
  assert.equal((await bus.blobs.get(end.result!.image!)).toString(), 'image of outage', 'the result the end points to is there');
  await settled();
});

test('a failure whose recording meets a bus that stops answering is recorded once, dead letter included, when it answers again', async () => {
  const jobId = await submitIntoSilence('bad-outage', { left: 99, retryable: false }, 3);
  const end = await endOf(jobId);
  assert.equal(end.type, 'job.failed');
  assert.equal(end.error?.code, 'undecodable_image');
  assert.equal(end.run?.attempt, 1);
  // Before, the delivery was handed back after the first timeout, and the next one found the
  // job ended (its end had been stored unanswered): the dead letter was never written.
  const letter = await waitFor(() => deadLetters.find((d) => d.jobId === jobId), 'the dead letter');
  assert.equal(letter.attempts, 1);
  assert.equal(await endEventsOf(jobId), 1);
  await settled();
});


test('two runs of a last step (the first stalled past ack_wait, redelivered to another process): the late one leaves the winner\'s result alone', async () => {
  await runner.stop();
  const log = createLogger('runner-retries');
  const hosted: ColocatedSteps = new Map([[STEP, { stage: flaky, prepared: await flaky.prepare({ log, modelsDir: '' }) }]]);
  let stalled!: () => void;
  const inStall = new Promise<void>((resolve) => (stalled = resolve));
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  // The stalled process, frozen between its step and storing the result, also misses the end
  // (its own view of ended jobs hears nothing, as a frozen process's would not).
  const late = new StageRunner({ bus, step: STEP, hosted, ends: new JobEnds(bus.nc, bus.jobs), config, log, hooks: {
    beforeStore: async (message) => {
      if ((message.pipeline[0]?.params as { tag?: string } | undefined)?.tag !== 'race') return;
      stalled();
      await released;
    },
  } });
  await late.start();
  failuresOf.set('race', { left: 0, retryable: true });
  const jobId = await submit('race');
  await inStall;
  // Another process gets the redelivery once ack_wait (5 s) has passed, and ends the job.
  runner = new StageRunner({ bus, step: STEP, hosted, ends, config, log });
  await runner.start();
  const end = await endOf(jobId);
  assert.equal(end.type, 'job.done');
  assert.equal(end.result?.provenance[0]?.attempt, 2, 'the redelivery won');
  // The late run goes on: it stores the same result again and loses the end. Before, it then
  // deleted the result blob, which the stored end points to (one name per job).
  release();
  await late.stop();
  assert.equal((await bus.blobs.get(end.result!.image!)).toString(), 'image of race', 'the winner\'s result is still there');
  assert.equal(await endEventsOf(jobId), 1);
  await settled();
});
