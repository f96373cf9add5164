/**
 * One nats-server (as `npm start` and a single-server deployment run it) SIGKILLed and restarted
 * on the same port and store, with the edge and one process per step left running. A restarted
 * server keeps its file streams but not its memory ones (PHOTOLAB_FRAMES with the default
 * FRAME_STORAGE=memory, the presence bucket): the services must make them again by themselves
 * (topology-keeper.ts), so that jobs of several steps run again (their frames go through the
 * frames stream with the default FRAME_TRANSPORT=auto) and the edge sees its stages again.
 * Before the keeper, every such job failed and GET /api/health said "down" until the services
 * were restarted. Then the same with a server that starts on an empty store.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { freePort, startNatsServer, stopProcess, type RunningNatsServer } from '../../services/launcher/nats-server.js';
import type { HealthResponse } from '../../services/lib/shared/schema-types.js';
import { runLoad, startServices, type RunningServices } from '../helpers/cluster-system.js';
import { request } from '../helpers/edge-client.js';
import { fixture } from '../helpers/paths.js';
import { waitFor } from '../helpers/wait.js';

const STEPS = ['decode', 'encode'];
const PIPELINE = STEPS.map((step) => ({ step }));

let storeDir: string;
let wipedStoreDir: string | undefined;
let port: number;
let nats: RunningNatsServer;
let services: RunningServices;

before(async () => {
  storeDir = mkdtempSync(path.join(os.tmpdir(), 'photolab-nats-restart-'));
  port = await freePort();
  nats = await startNatsServer({ storeDir, port, logFile: path.join(storeDir, 'nats-1.log') });
  services = await startServices({ natsUrls: nats.url, replicas: 1, steps: STEPS, env: { FRAME_TRANSPORT: 'auto' } });
}, { timeout: 180_000 });

after(async () => {
  await services?.stop();
  await nats?.stop();
  rmSync(storeDir, { recursive: true, force: true });
}, { timeout: 60_000 });

async function health(): Promise<HealthResponse> {
  return (await request(`${services.baseUrl}/api/health`)).body as HealthResponse;
}

/** Every stream there and every step with a live stage process in the edge's view. */
const whole = (h: HealthResponse) => Object.values(h.streams).every(Boolean) && STEPS.every((step) => (h.stages[step]?.replicas?.length ?? 0) > 0);

async function runJobs(jobs: number): Promise<void> {
  const load = await runLoad(services, { jobs, inFlight: 1, image: readFileSync(fixture('dog.jpg')), pipeline: PIPELINE, timeoutMs: 120_000 });
  try {
    const figures = await load.finished;
    assert.equal(figures.completed, jobs, `every job done: ${JSON.stringify([...load.statuses()])}`);
    assert.equal(figures.duplicated, 0);
  } finally {
    await load.close();
  }
}

/** SIGKILL, then a new nats-server on the same port with `store`; resolves once the edge sees every stream and both stages again. */
async function restartNats(store: string, logName: string): Promise<void> {
  nats.process.kill('SIGKILL');
  await stopProcess(nats.process);
  nats = await startNatsServer({ storeDir: store, port, logFile: path.join(store, logName) });
  // Bounded by the reconnect (0.5 s apart) and the stages' next presence refresh (keeper, or 5 s at the latest).
  const restored = await waitFor(async () => {
    const h = await health();
    return whole(h) ? h : undefined;
  }, 'every stream back and both stages seen again after the restart', 60_000, async () => JSON.stringify(await health().catch((e) => String(e))));
  assert.notEqual(restored.status, 'down', 'every stream there again'); // 'degraded': the steps without a stage here
}

test('after a nats-server restart the services make its memory streams again: jobs of two steps run and the edge sees its stages', async () => {
  await waitFor(async () => whole(await health()), 'the edge seeing both stages before the restart', 30_000, async () => JSON.stringify(await health()));
  await runJobs(2);
  await restartNats(storeDir, 'nats-2.log');
  await runJobs(3);
  for (const name of ['edge', ...STEPS]) assert.ok(services.reconnects()[name]! >= 1, `${name} reconnected by itself`);
  assert.match(services.tail('edge', 400), /streams and buckets (made again|all present)/, 'the edge checked the topology after its reconnect');
});

test('a nats-server that lost its store (a container without its volume): the services make every stream, consumer and bucket again, and new jobs run', async () => {
  wipedStoreDir = mkdtempSync(path.join(os.tmpdir(), 'photolab-nats-wiped-'));
  await restartNats(wipedStoreDir, 'nats-3.log');
  await runJobs(3);
  // Whichever service checked first made them; the others found them there.
  const logs = ['edge', ...STEPS].map((name) => services.tail(name, 400)).join('\n');
  assert.match(logs, /"made":\[[^\]]*"PHOTOLAB_STAGES"[^\]]*\].*streams and buckets made again/, 'the file streams made again too');
});
