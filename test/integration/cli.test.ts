/**
 * The `photolab` CLI as a user runs it: a child process against the real system (nats-server,
 * the edge and stage workers; nothing mocked). submit --watch shows every step and writes a
 * valid image; result on an unfinished job waits for it; jobs, show, cancel, tap and stages;
 * bad arguments print the usage and exit 2.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { startCli } from '../helpers/cli.js';
import { fixture } from '../helpers/paths.js';
import { JWT_SECRET, startSystem, waitFor, type TestSystem } from '../helpers/system.js';


describe('photolab CLI', () => {
  let system: TestSystem;
  let dir: string;
  let photo: string;
  let cliEnv: Record<string, string>;

  const cli = (args: string[], onStderr?: (text: string) => void) => startCli(args, cliEnv, onStderr);
  const run = (...args: string[]) => cli(args).done;

  before(async () => {
    // encode is started by the "result waits" test, so that a job can be left unfinished first.
    system = await startSystem({ steps: ['decode'] });
    dir = mkdtempSync(path.join(os.tmpdir(), 'photolab-cli-'));
    photo = path.join(dir, 'photo.jpg');
    writeFileSync(photo, await sharp(readFileSync(fixture('dog.jpg'))).resize(256, 192).jpeg().toBuffer());
    cliEnv = { PHOTOLAB_URL: system.baseUrl, NATS_URL: system.env.NATS_URL!, JWT_SECRET, PHOTOLAB_TOKEN: '', DATA_DIR: dir, LOG_LEVEL: 'warn' };
  });
  after(async () => {
    await system?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('bad arguments print the usage and exit 2', async () => {
    for (const args of [[], ['frobnicate'], ['submit', photo], ['submit', '--steps', 'decode'], ['result', 'x'], ['jobs', '--bogus'], ['submit', photo, '--steps', 'upscale:factor']]) {
      const r = await run(...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /usage: photolab/, args.join(' '));
      assert.equal(r.stdout, '');
    }
    const help = await run('--help');
    assert.equal(help.code, 0);
    assert.match(help.stdout, /submit <file> --steps/);
  });

  test('sample writes a photo the pipeline accepts', async () => {
    const file = path.join(dir, 'sample.jpg');
    const r = await run('sample', file);
    assert.equal(r.code, 0, r.stderr);
    const meta = await sharp(readFileSync(file)).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['jpeg', 800, 600]);
  });

  test('token signs a development token that the edge accepts', async () => {
    const r = await run('token', '--json');
    assert.equal(r.code, 0, r.stderr);
    const { token } = JSON.parse(r.stdout);
    const answer = await fetch(`${system.baseUrl}/api/jobs`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(answer.status, 200);
  });

  test('result on an unfinished job waits for it, then writes the image', async () => {
    const job = await system.submit(readFileSync(photo), [{ step: 'decode' }, { step: 'encode', params: { format: 'png' } }], { sub: 'dev' });
    const out = path.join(dir, 'waited.png');
    const waiting = run('result', job.jobId, '-o', out, '--json');
    // decode runs; encode has no worker yet, so the job stays unfinished while the CLI waits.
    await waitFor(async () => (await (await fetch(`${system.baseUrl}/api/jobs/${job.jobId}`, { headers: { authorization: `Bearer ${await system.token('dev')}` } })).json() as any).steps[0].status === 'done', 'decode done');
    await system.startWorker('encode');
    const r = await waiting;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).jobId, job.jobId);
    const meta = await sharp(readFileSync(out)).metadata();
    assert.equal(meta.format, 'png');
    assert.equal(meta.width, 256);
  });

  test('submit --watch shows every step live and writes a valid image', async () => {
    const out = path.join(dir, 'out.png');
    const r = await run('submit', photo, '--steps', 'decode,encode:format=png', '--watch', '-o', out);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^job [0-9A-Z]{26}: decode → encode$/m);
    assert.match(r.stdout, /\[1\/2\] decode started/);
    assert.match(r.stdout, /\[1\/2\] decode done in \d+ ms \(256x192 jpeg\)/);
    assert.match(r.stdout, /\[2\/2\] encode done in/);
    assert.match(r.stdout, /job done in/);
    assert.match(r.stdout, /wrote .*out\.png \(\d+ bytes image\/png\)/);
    assert.equal((await sharp(readFileSync(out)).metadata()).format, 'png');
  });

  test('submit without --watch prints the job id; jobs lists it; show describes it', async () => {
    const submitted = await run('submit', photo, '--steps', 'decode,encode:format=webp:quality=80');
    assert.equal(submitted.code, 0, submitted.stderr);
    const jobId = submitted.stdout.trim();
    assert.match(jobId, /^[0-9A-Z]{26}$/);
    const saved = await run('result', jobId, '-o', path.join(dir, 'r.webp'));
    assert.equal(saved.code, 0, saved.stderr);
    const jobs = await run('jobs', '--status', 'done');
    assert.equal(jobs.code, 0, jobs.stderr);
    assert.match(jobs.stdout, /^ID\s+STATUS\s+PIPELINE/);
    assert.match(jobs.stdout, new RegExp(`${jobId}\\s+done\\s+decode,encode`));
    const shown = await run('show', jobId);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, new RegExp(`^job ${jobId}  done`));
    assert.match(shown.stdout, /1\. decode\s+done/);
    assert.match(shown.stdout, /2\. encode\s+done .*\{"format":"webp","quality":80\}/);
    assert.match(shown.stdout, /result image\/webp \d+ bytes sha256 [0-9a-f]{64}/);
    const json = JSON.parse((await run('show', jobId, '--json')).stdout);
    assert.equal(json.jobId, jobId);
    const missing = await run('show', '01ARZ3NDEKTSV4RRFFQ69G5FAV');
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /job_not_found/);
  });

  test('cancel ends an unfinished job; a finished one cannot be canceled; its result is never written', async () => {
    // upscale has no worker here: the job waits at that step until canceled.
    const submitted = await run('submit', photo, '--steps', 'decode,upscale:factor=2,encode');
    assert.equal(submitted.code, 0, submitted.stderr);
    const jobId = submitted.stdout.trim();
    const canceled = await run('cancel', jobId);
    assert.equal(canceled.code, 0, canceled.stderr);
    assert.equal(canceled.stdout.trim(), `${jobId}: canceled`);
    const again = await run('cancel', jobId);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /job_not_cancelable/);
    const out = path.join(dir, 'never.jpg');
    const result = await run('result', jobId, '-o', out);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /job_canceled/);
    assert.throws(() => readFileSync(out), /ENOENT/);
  });

  test('tap prints the bus traffic of a job, decoded', async () => {
    let listening!: () => void;
    const ready = new Promise<void>((resolve) => { listening = resolve; });
    const tapping = cli(['tap', 'photolab.events.>', 'photolab.progress.>', 'photolab.stage.>', '--count', '8'], (text) => text.includes('listening on') && listening());
    await ready;
    const r0 = await run('submit', photo, '--steps', 'decode,encode');
    assert.equal(r0.code, 0, r0.stderr);
    const r = await tapping.done;
    assert.equal(r.code, 0, r.stderr);
    const jobId = r0.stdout.trim();
    assert.match(r.stdout, new RegExp(`photolab\\.progress\\.${jobId}  job\\.accepted`));
    assert.match(r.stdout, new RegExp(`photolab\\.events\\.${jobId}\\.step  step\\.finished decode`));
    assert.match(r.stdout, new RegExp(`photolab\\.stage\\.decode  job ${jobId} step 1/2 decode→encode`));
    assert.match(r.stdout, /step\.started decode \[1\/2\]/);
  });

  test('submit --case puts the job in the case (its image kept as evidence)', async () => {
    const token = await system.token('dev'); // the CLI's own development token is for user dev
    const created = await fetch(`${system.baseUrl}/api/cases`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'CLI case' }) });
    assert.equal(created.status, 201);
    const caseId = (await created.json() as { id: string }).id;
    const r = await run('submit', photo, '--steps', 'decode', '--case', caseId);
    assert.equal(r.code, 0, r.stderr);
    const jobId = r.stdout.trim();
    const view = await (await fetch(`${system.baseUrl}/api/cases/${caseId}`, { headers: { authorization: `Bearer ${token}` } })).json() as { jobs: { jobId: string }[]; evidence: unknown[] };
    assert.deepEqual(view.jobs.map((j) => j.jobId), [jobId]);
    assert.equal(view.evidence.length, 1);
    const missing = await run('submit', photo, '--steps', 'decode', '--case', 'no-such-case');
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /case_not_found/);
  });

  test('stages lists the stage services with their statistics', async () => {
    const r = await run('stages', '--json');
    assert.equal(r.code, 0, r.stderr);
    const services = JSON.parse(r.stdout) as any[];
    const names = services.map((s) => s.name).sort();
    assert.deepEqual(names, ['photolab-decode', 'photolab-encode']);
    const decode = services.find((s) => s.name === 'photolab-decode');
    assert.equal(decode.endpoints[0].subject, 'photolab.stage.decode');
    assert.ok(decode.stats.endpoints[0].num_requests >= 4, JSON.stringify(decode.stats));
    const text = await run('stages');
    assert.match(text.stdout, /^NAME\s+ID\s+VERSION\s+SUBJECT/);
    assert.match(text.stdout, /photolab-encode\s+\w+\s+0\.1\.0\s+photolab\.stage\.encode/);
  });
});
