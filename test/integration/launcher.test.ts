/**
 * `npm start` as a user runs it (dist/services/launcher/main.js, nothing configured but the data
 * folder, the ports and two steps): it starts its own nats-server and the services, a job runs,
 * and when its nats-server dies it is started again on the same port and store, the services
 * reconnect, and jobs run again. Ctrl-C (SIGINT) then stops everything, nats-server included.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { freePort } from '../../services/launcher/nats-server.js';
import { bearer, multipart, request } from '../helpers/edge-client.js';
import { fixture, MODELS_DIR, REPO_ROOT } from '../helpers/paths.js';
import { waitFor } from '../helpers/wait.js';

const dataDir = mkdtempSync(path.join(os.tmpdir(), 'photolab-launcher-'));
let launcher: ChildProcess | undefined;
let output = '';

after(async () => {
  if (launcher && launcher.exitCode === null) {
    launcher.kill('SIGKILL');
    for (const pid of natsServerPids()) process.kill(pid, 'SIGKILL');
  }
  rmSync(dataDir, { recursive: true, force: true });
});

/** The nats-server processes started with this test's store (found by their config file). */
function natsServerPids(): number[] {
  const config = path.join(dataDir, 'nats', 'nats-server.conf');
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').includes(config)) pids.push(Number(name));
    } catch { /* gone meanwhile */ }
  }
  return pids;
}

async function runJob(baseUrl: string, token: string): Promise<void> {
  const { body, contentType } = multipart([
    { name: 'file', filename: 'dog.jpg', contentType: 'image/jpeg', value: readFileSync(fixture('dog.jpg')) },
    { name: 'pipeline', value: JSON.stringify([{ step: 'decode' }, { step: 'encode' }]) },
  ]);
  const submitted = await waitFor(async () => {
    const answer = await request(`${baseUrl}/api/jobs`, { method: 'POST', headers: { ...bearer(token), 'content-type': contentType }, body });
    return answer.status === 202 ? answer : undefined; // 503 while the bus comes back: asked again
  }, 'the job accepted', 60_000);
  const jobId = submitted.body.jobId as string;
  const job = await waitFor(async () => {
    const answer = await request(`${baseUrl}/api/jobs/${jobId}`, { headers: bearer(token) });
    return ['done', 'failed', 'canceled', 'timeout'].includes(answer.body?.status) ? answer.body : undefined;
  }, `job ${jobId} ended`, 60_000);
  assert.equal(job.status, 'done', JSON.stringify(job.error ?? job));
}

test('npm start runs the system on its own nats-server, restarts that server when it dies, and stops everything on Ctrl-C', async () => {
  const httpPort = await freePort();
  const env: Record<string, string | undefined> = {
    ...process.env,
    DATA_DIR: dataDir, NATS_PORT: String(await freePort()), HTTP_PORT: String(httpPort), HTTP_HOST: '127.0.0.1',
    STAGES: 'decode,encode', MODELS_DIR, FRAME_CACHE_DIR: path.join(dataDir, 'frames'), STAGE_METRICS_PORT: '0',
  };
  for (const name of ['NATS_URL', 'JWT_SECRET', 'JWKS_FILE', 'JWKS_URL', 'CLICKHOUSE_URL', 'FRAME_TRANSPORT']) delete env[name];
  launcher = spawn(process.execPath, [path.join(REPO_ROOT, 'dist/services/launcher/main.js')], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  launcher.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  launcher.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const baseUrl = `http://127.0.0.1:${httpPort}`;
  await waitFor(() => output.includes(`ready: ${baseUrl}`), 'the launcher saying it is ready', 120_000, () => output.slice(-3000));
  const token = /export TOKEN=(\S+)/.exec(output)?.[1];
  assert.ok(token, 'a development token printed');
  await runJob(baseUrl, token);

  const [first] = natsServerPids();
  assert.ok(first, 'the embedded nats-server runs');
  process.kill(first, 'SIGKILL');
  await waitFor(() => output.includes('embedded nats-server restarted'), 'the launcher restarting nats-server', 60_000, () => output.slice(-3000));
  const [second] = natsServerPids();
  assert.ok(second && second !== first, 'a new nats-server on the same store');
  await runJob(baseUrl, token);

  const exited = new Promise<number | null>((resolve) => launcher!.once('exit', (code) => resolve(code)));
  launcher.kill('SIGINT');
  assert.equal(await exited, 0);
  assert.match(output, /all stopped/);
  assert.deepEqual(natsServerPids(), [], 'no nats-server left');
});
