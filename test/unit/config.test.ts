import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { loadConfig, settings } from '../../services/lib/shared/config.js';
import { REPO_ROOT } from '../helpers/paths.js';

test('defaults apply when the environment is empty', () => {
  const config = loadConfig({});
  assert.equal(config.natsUrl, '');
  assert.equal(config.httpPort, 8080);
  assert.equal(config.frameTransport, 'auto');
  assert.deepEqual(config.onnxProviders, ['cpu']);
});

test('frames live at least as long as the longest job deadline', () => {
  assert.equal(loadConfig({}).frameTtlS, 3600 + 300, 'by default the 60 min deadline and 5 min more');
  assert.equal(loadConfig({ JOB_MAX_DEADLINE_MS: '600000' }).frameTtlS, 900, 'it follows JOB_MAX_DEADLINE_MS');
  assert.equal(loadConfig({ FRAME_TTL_S: '7200' }).frameTtlS, 7200, 'a longer time is kept');
  assert.throws(() => loadConfig({ FRAME_TTL_S: '900' }), /FRAME_TTL_S \(900 s\) is shorter than the longest job deadline \(JOB_MAX_DEADLINE_MS, 3600 s\)/);
  assert.throws(() => loadConfig({ FRAME_TTL_S: '-1' }), /FRAME_TTL_S/);
});

test('values are parsed and malformed ones refused with the variable named', () => {
  const config = loadConfig({ HTTP_PORT: '9000', CORS_ORIGINS: 'https://a.example, https://b.example', FRAME_TRANSPORT: 'bus' });
  assert.equal(config.httpPort, 9000);
  assert.deepEqual(config.corsOrigins, ['https://a.example', 'https://b.example']);
  assert.equal(config.frameTransport, 'bus');
  assert.throws(() => loadConfig({ HTTP_PORT: 'eighty' }), /HTTP_PORT must be an integer/);
  assert.throws(() => loadConfig({ FRAME_TRANSPORT: 'pigeon' }), /FRAME_TRANSPORT must be one of auto, bus, local/);
});

test('heap growth: 300 percent unless set, 0 leaves it to V8, a negative value is refused', () => {
  assert.equal(loadConfig({}).heapGrowthPercent, 300);
  assert.equal(loadConfig({ HEAP_GROWTH_PERCENT: '0' }).heapGrowthPercent, 0);
  assert.throws(() => loadConfig({ HEAP_GROWTH_PERCENT: '-5' }), /HEAP_GROWTH_PERCENT must be between 0 and 10000, got -5/);
});

test('the README documents every setting', () => {
  const readme = readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
  const missing = Object.values(settings).map((s) => s.env).filter((env) => !readme.includes(`\`${env}\``));
  assert.deepEqual(missing, [], 'run `node scripts/config-table.mjs --write` after a build');
});

test('idle collection: after 5 ms of nothing in progress unless set, 0 turns it off, a negative value is refused', () => {
  assert.equal(loadConfig({}).idleGcMs, 5);
  assert.equal(loadConfig({ IDLE_GC_MS: '0' }).idleGcMs, 0);
  assert.throws(() => loadConfig({ IDLE_GC_MS: '-1' }), /IDLE_GC_MS/);
});
