/**
 * The stage runner's retries against a real nats-server, with a fixture step that fails on
 * purpose: a retryable failure is a step.retrying fact and a delayed redelivery; past
 * MAX_ATTEMPTS the job fails (one terminal event, carrying the failing run) and the message is
 * dead-lettered; a bad input fails at once. Checked through the stored events and the
 * consumer's state, never by sleeping.
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
const failuresOf = new Map<string, { left: number; retryable: boolean }>();

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
  config = loadConfig({ NATS_URL: nats.url, MAX_ATTEMPTS: '3', RETRY_DELAY_MS: '150', ACK_WAIT_MS: '5000', LOG_LEVEL: 'silent' });
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
