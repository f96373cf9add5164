/**
 * The web playground in a real headless Chromium (Debian's chromium driven by playwright-core)
 * against the real system: nats-server, the edge serving dist/web, stage workers with the real
 * models, the metrics sink on chDB. The edge runs as `npm start` runs it with no configuration
 * (JWT_DEV_SECRET, no JWT_SECRET), so the page signs in with a development token.
 *
 * Screenshots go to test-output/web-playground/ (git-ignored); each is taken after the page
 * showed what is checked just before it.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { openMetricsStore, type MetricsStore } from '../../services/lib/metrics/clickhouse.js';
import { migrate } from '../../services/lib/metrics/migrations.js';
import { MetricsSink } from '../../services/metrics-sink/sink.js';
import { serveStats } from '../../services/lib/metrics/stats.js';
import { startEdge } from '../../services/edge/server.js';
import { freePort } from '../../services/launcher/nats-server.js';
import { loadConfig } from '../../services/lib/shared/config.js';
import { createLogger } from '../../services/lib/shared/logger.js';
import { SignJWT } from 'jose';
import type { DevTokenResponse, JobView, StepsResponse } from '../../services/lib/shared/schema-types.js';
import { assertSchema } from '../helpers/edge-client.js';
import { REPO_ROOT, fixture } from '../helpers/paths.js';
import { startSystem, type TestSystem } from '../helpers/system.js';

const CHROMIUM = '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
const SHOTS = path.join(REPO_ROOT, 'test-output', 'web-playground');

let system: TestSystem;
let browser: Browser;
let page: Page;
let store: MetricsStore;
let sink: MetricsSink;
let stopStats: () => void;
let metricsDir: string;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: run scripts/setup.sh --test`);
  mkdirSync(SHOTS, { recursive: true });
  system = await startSystem({
    steps: ['decode', 'detect_objects', 'encode'],
    // As `npm start` passes its generated secret: development tokens exist.
    env: { JWT_SECRET: '', JWT_DEV_SECRET: 'web-playground-test-session-secret' },
  });
  // Its own process: seconds of model work in this one would stall the edge's event loop, and
  // with it the progress events the page is waiting for.
  system.spawnWorker('upscale');
  metricsDir = mkdtempSync(path.join(os.tmpdir(), 'web-playground-metrics-'));
  store = await openMetricsStore({ dataDir: metricsDir, database: 'photolab_web' });
  await migrate(store);
  sink = new MetricsSink({ nc: system.nc, store, batchRows: 50, batchMs: 200 });
  await sink.start();
  stopStats = serveStats(system.nc, store);
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  // Generous for a loaded 2-core CI machine; each wait ends as soon as the page shows the state.
  page.setDefaultTimeout(60_000);
  page.on('pageerror', (error) => console.error('page error:', error));
});

after(async () => {
  await browser?.close();
  stopStats?.();
  await sink?.stop();
  await store?.close();
  await system?.stop();
  if (metricsDir) rmSync(metricsDir, { recursive: true, force: true });
});

const shot = (name: string) => page.screenshot({ path: path.join(SHOTS, name), fullPage: true });

async function apiJob(jobId: string): Promise<JobView> {
  // Expressions as strings: this file is compiled without the DOM's types.
  const token = await page.evaluate('localStorage.getItem("photolab.token")');
  const response = await fetch(`${system.baseUrl}/api/jobs/${jobId}`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(response.status, 200);
  return response.json() as Promise<JobView>;
}

const started = Date.now();
/** Where the time goes (CI has 2 cores): printed, never asserted. */
const phase = (name: string) => console.log(`# ${((Date.now() - started) / 1000).toFixed(1)} s: ${name}`);

async function run(photo: string, preset: string, params: Record<string, string> = {}): Promise<string> {
  phase(`run ${preset} on ${photo}`);
  await page.setInputFiles('#file-input', fixture(photo));
  await page.waitForFunction(`document.getElementById('photo-info').textContent.startsWith(${JSON.stringify(photo)})`);
  await page.click(`[data-preset="${preset}"]`);
  for (const [selector, value] of Object.entries(params)) {
    const control = page.locator(selector);
    if (await control.evaluate((el) => el.tagName) === 'SELECT') await control.selectOption(value);
    else await control.fill(value);
  }
  const previous = await page.textContent('#job-id');
  await page.click('#submit');
  await page.waitForFunction(`(() => { const id = document.getElementById('job-id').textContent; return !!id && id !== ${JSON.stringify(previous ?? '')}; })()`);
  return (await page.textContent('#job-id'))!;
}

const waitStatus = (status: string) => page.waitForSelector(`#job-status[data-status="${status}"]`);

test('the playground: dev token, detections, upscale, cancel, reload mid-job, my jobs, stats, errors, 360 px', { timeout: 240_000 }, async () => {
  await page.goto(`${system.baseUrl}/`);
  await page.waitForSelector('#signin:not([hidden])');
  await shot('01-sign-in.png');
  await page.click('#dev-token');
  await page.waitForSelector('#whoami:not([hidden])');
  assert.equal(await page.textContent('#signed-in'), 'signed in as dev');

  // The forms come from the step schemas the edge serves; a value the API would refuse is shown
  // with the API's path and the Run button stays off.
  await page.setInputFiles('#file-input', fixture('HappyFish.jpg'));
  await page.click('[data-preset="upscale"]');
  await page.fill('#steps li[data-step="upscale"] [data-param="factor"]', '9');
  await page.waitForSelector('#pipeline-errors li');
  assert.match((await page.textContent('#pipeline-errors'))!, /\/pipeline\/1\/params\/factor: must be <= 8/);
  assert.equal(await page.isDisabled('#submit'), true);
  await shot('02-invalid-param.png');
  await page.fill('#steps li[data-step="upscale"] [data-param="factor"]', '2');
  // Reordering is checked as the edge checks it: upscale before decode is refused at its path.
  await page.click('#steps li[data-step="upscale"] .move-up');
  await page.waitForSelector('#steps li[data-index="0"][data-step="upscale"]');
  assert.match((await page.textContent('#pipeline-errors'))!, /\/pipeline\/0\/step: a pipeline starts with decode/);
  await page.click('#steps li[data-step="upscale"] .move-down');
  await page.waitForSelector('#steps li[data-index="1"][data-step="upscale"]');
  await page.click('#steps li[data-step="encode"] .remove');
  await page.waitForSelector('#steps li[data-step="encode"]', { state: 'detached' });
  assert.equal(await page.$$eval('#pipeline-errors li', (items) => items.length), 0, 'decode -> upscale is a valid pipeline');
  assert.equal(await page.isDisabled('#submit'), false);

  // decode -> detect_objects: a box for every object the API returned, with its label.
  const detectId = await run('dog.jpg', 'detect-objects');
  await waitStatus('done');
  await page.waitForSelector('#overlay g.box');
  const apiObjects = (await apiJob(detectId)).result!.findings!.objects!;
  assert.ok(apiObjects.length > 0, 'the API found objects in dog.jpg');
  const drawn = await page.$$eval('#overlay g.box.object', (boxes) => boxes.map((b) => b.getAttribute('data-label')!));
  assert.deepEqual([...drawn].sort(), apiObjects.map((o) => o.label).sort());
  assert.ok(drawn.includes('dog'));
  assert.equal(await page.$$eval('#overlay g.box rect', (r) => r.length), apiObjects.length);
  await shot('03-detect-objects.png');

  // decode -> upscale x2 -> encode: the result's dimensions in the page are twice the input's.
  await run('HappyFish.jpg', 'upscale');
  await waitStatus('done');
  await page.waitForSelector('#result-info[data-width]');
  assert.deepEqual(await page.$eval('#result-info', (el) => [el.dataset.width, el.dataset.height]), ['518', '388']);
  assert.match((await page.textContent('#timeline li[data-step="upscale"] .ms'))!, /\d+(\.\d+)? m?s/);
  assert.equal(await page.getAttribute('#download-result', 'download') !== null, true);
  await page.fill('#compare-range', '30');
  await shot('04-upscale-x2.png');

  // A long job, canceled while its upscale runs.
  const cancelId = await run('dog.jpg', 'upscale');
  await page.waitForSelector('#timeline li[data-step="upscale"][data-status="running"]');
  await page.click('#cancel');
  await waitStatus('canceled');
  assert.equal((await apiJob(cancelId)).status, 'canceled');
  await shot('05-canceled.png');

  // Reload while a job runs: the page re-attaches from the URL and sees it finish live.
  const reloadId = await run('dog.jpg', 'upscale');
  await page.waitForSelector('#timeline li[data-step="upscale"][data-status="running"]');
  phase('upscale running');
  assert.equal((await apiJob(reloadId)).status, 'running');
  phase('reload');
  await page.reload();
  assert.equal(new URL(page.url()).searchParams.get('job'), reloadId);
  await waitStatus('done');
  phase('done after reload');
  assert.equal(await page.textContent('#job-id'), reloadId);
  assert.deepEqual(await page.$$eval('#steps li', (items) => items.map((li) => li.getAttribute('data-step'))), ['decode', 'upscale', 'encode'], 'the editor shows the job\'s pipeline');
  const live = Number(await page.$eval('#timeline', (el) => el.dataset.live ?? '0'));
  assert.ok(live >= 1, `events arrived live after the reload (${live})`);
  await page.waitForSelector('#result-info[data-width]');
  assert.deepEqual(await page.$eval('#result-info', (el) => [el.dataset.width, el.dataset.height]), ['1536', '1152']);
  phase('reloaded job done');
  await shot('06-reloaded-done.png');

  phase('my jobs');
  // My jobs: the four jobs, newest first; open one again.
  await page.click('#tab-jobs');
  await page.waitForSelector(`#jobs-table tr[data-job-id="${detectId}"]`);
  const listed = await page.$$eval('#jobs-table tbody tr[data-job-id]', (rows) => rows.map((r) => [r.getAttribute('data-job-id'), r.getAttribute('data-status')]));
  assert.deepEqual(listed.slice(0, 2), [[reloadId, 'done'], [cancelId, 'canceled']]);
  await shot('07-my-jobs.png');
  await page.click(`#jobs-table tr[data-job-id="${detectId}"] .open-job`);
  await waitStatus('done');
  await page.waitForSelector('#overlay g.box');
  assert.equal(await page.textContent('#job-id'), detectId);

  phase('stats');
  // Stats from /api/stats (chDB through the metrics service) and stage health.
  await page.focus('#tab-jobs');
  await page.keyboard.press('ArrowRight'); // keyboard-accessible tabs
  await page.waitForSelector('#tab-stats[aria-selected="true"]');
  await page.waitForSelector('#latency-chart rect[data-key="upscale"][data-series="p95"]');
  await page.waitForSelector('#health-table tr[data-step="detect_objects"][data-replicas="1"]');
  await page.waitForSelector('#health-table tr[data-step="upscale"][data-replicas="1"]');
  await shot('08-stats.png');

  // An API error is shown with its code and message (someone else's or an unknown job: 404).
  await page.goto(`${system.baseUrl}/?job=job_does_not_exist`);
  await page.waitForSelector('#error[data-code="job_not_found"]');
  assert.match((await page.textContent('#error'))!, /job_not_found/);
  assert.equal(await page.isHidden('#signin'), true, 'still signed in: the error is about the job');
  await shot('09-error.png');

  // 360 px wide: nothing sticks out sideways.
  await page.setViewportSize({ width: 360, height: 780 });
  await page.goto(`${system.baseUrl}/?job=${detectId}`);
  await waitStatus('done');
  await page.waitForSelector('#overlay g.box');
  const overflow = await page.evaluate('document.documentElement.scrollWidth') as number;
  assert.ok(overflow <= 360, `page is ${overflow} px wide at 360`);
  await shot('10-mobile-360.png');
});

test('the edge serves the page with its content types, revalidation and no path traversal', async () => {
  const index = await fetch(`${system.baseUrl}/`);
  assert.equal(index.status, 200);
  assert.equal(index.headers.get('content-type'), 'text/html; charset=utf-8');
  assert.equal(index.headers.get('cache-control'), 'no-cache');
  assert.match(index.headers.get('content-security-policy') ?? '', /default-src 'self'/);
  const etag = index.headers.get('etag')!;
  assert.equal((await fetch(`${system.baseUrl}/`, { headers: { 'if-none-match': etag } })).status, 304);
  const script = await fetch(`${system.baseUrl}/app.js`);
  assert.equal(script.headers.get('content-type'), 'text/javascript; charset=utf-8');
  // A malformed escape is a bad request (400 invalid_path, the edge stays up); the rest are no file of the page.
  for (const probe of ['/%', '/%E0%A4%A']) {
    const response = await fetch(`${system.baseUrl}${probe}`);
    assert.equal(response.status, 400, probe);
    assert.equal((await response.json() as { code: string }).code, 'invalid_path', probe);
  }
  for (const probe of ['/..%2fpackage.json', '/%2e%2e/%2e%2e/package.json', '/../package.json', '/tsconfig.json', '/web/app.ts']) {
    const response = await fetch(`${system.baseUrl}${probe}`);
    assert.equal(response.status, 404, probe);
    assert.equal((await response.json() as { code: string }).code, 'route_not_found', probe);
  }
  assert.equal((await fetch(`${system.baseUrl}/api/jobs/%E0%A4%A`, { headers: { authorization: 'Bearer x' } })).status, 400, 'a malformed escape in an API path parameter is a bad request');
  assert.equal((await fetch(`${system.baseUrl}/api/hello`)).status, 200, 'the edge is still up');
});

test('GET /api/steps gives each step its kinds and the parameter schema the edge validates with', async () => {
  const dev = await (await fetch(`${system.baseUrl}/api/dev/token`, { method: 'POST' })).json() as DevTokenResponse;
  assertSchema('http/dev-token.schema.json', dev);
  assert.equal((await fetch(`${system.baseUrl}/api/steps`)).status, 401);
  const response = await fetch(`${system.baseUrl}/api/steps`, { headers: { authorization: `Bearer ${dev.token}` } });
  assert.equal(response.status, 200);
  const body = await response.json() as StepsResponse;
  assertSchema('http/steps.schema.json', body);
  assert.equal(body.steps[0]!.step, 'decode');
  assert.equal(body.steps.at(-1)!.step, 'encode');
  const upscale = body.steps.find((st) => st.step === 'upscale')!;
  assert.deepEqual([upscale.input, upscale.output, upscale.conditional], ['frame', 'frame', true]);
  assert.equal((upscale.params as { $id: string }).$id, 'https://photolab.dev/schemas/steps/upscale.schema.json');
});

test('no development tokens when JWT_SECRET is configured, even with JWT_DEV_SECRET set', async () => {
  const devSecret = 'web-playground-test-session-secret';
  const config = loadConfig({ ...process.env, ...system.env, JWT_SECRET: 'operator-secret', JWT_DEV_SECRET: devSecret, HTTP_PORT: String(await freePort()) });
  const edge = await startEdge(config, createLogger('test-edge-configured'));
  try {
    const base = `http://127.0.0.1:${edge.port}`;
    const response = await fetch(`${base}/api/dev/token`, { method: 'POST' });
    assert.equal(response.status, 404);
    assert.equal((await response.json() as { code: string }).code, 'route_not_found');
    // And the session secret is not accepted beside the operator's.
    const forged = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('dev').setExpirationTime('1h').sign(new TextEncoder().encode(devSecret));
    assert.equal((await fetch(`${base}/api/steps`, { headers: { authorization: `Bearer ${forged}` } })).status, 401);
  } finally {
    await edge.close();
  }
});
