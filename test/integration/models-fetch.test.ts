/**
 * The `models` CLI against a local HTTP server (127.0.0.1, never the network): progress,
 * resume after the server drops the connection, checksum mismatch refused, unpinned refused,
 * list showing installed / missing / corrupt.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../helpers/paths.js';

const CLI = path.join(REPO_ROOT, 'dist', 'services', 'cli', 'models.js');
const SIZE = 3 * 1024 * 1024 + 123;
const payload = randomBytes(SIZE);
const other = randomBytes(4096);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface RequestLog { url: string; range?: string }
let server: http.Server;
let baseUrl = '';
const requests: RequestLog[] = [];
/** How many of the next full-file responses to cut off half-way. */
let dropsLeft = 0;
let tmp = '';

function contract() {
  return { inputs: [{ name: 'input', shape: [1, 3, 8, 8] }], outputs: [{ name: 'output', shape: [1, 3, 8, 8] }], layout: 'NCHW', colourOrder: 'RGB', scale: 1, mean: [0], std: [1], size: { kind: 'fixed', width: 8, height: 8 } };
}

function entry(id: string, file: string, bytes: Buffer | null, extra: Record<string, unknown> = {}) {
  return {
    id, task: 'denoise', file, bytes: bytes ? bytes.length : null, sha256: bytes ? sha(bytes) : null, pinned: bytes !== null,
    urls: [`${baseUrl}/files/${path.basename(file)}`], licence: 'test', commercialUse: true, contract: contract(), ...extra,
  };
}

function writeManifest(models: unknown[]): string {
  const file = path.join(tmp, `manifest-${randomBytes(4).toString('hex')}.json`);
  writeFileSync(file, JSON.stringify({ version: 1, models }));
  return file;
}

function runCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, MODELS_BASE_URL: '', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

before(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'models-fetch-'));
  server = http.createServer((req, res) => {
    requests.push({ url: req.url ?? '', range: req.headers.range });
    const name = path.basename(req.url ?? '');
    if (name === 'slow.onnx') {
      // A slow server: the file in small pieces, each sent when the previous one drained.
      res.writeHead(200, { 'content-length': String(payload.length) });
      let offset = 0;
      const next = () => {
        if (offset >= payload.length) return void res.end();
        const piece = payload.subarray(offset, offset + 256 * 1024);
        offset += piece.length;
        res.write(piece, () => setImmediate(next));
      };
      next();
      return;
    }
    const body = name === 'good.onnx' ? payload : name === 'other.onnx' ? other : null;
    if (!body) {
      res.writeHead(404).end('not found');
      return;
    }
    const match = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = match ? Number(match[1]) : 0;
    if (start >= body.length) {
      res.writeHead(416).end();
      return;
    }
    const slice = body.subarray(start);
    res.writeHead(match ? 206 : 200, {
      'content-length': String(slice.length),
      ...(match ? { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` } : {}),
    });
    if (!match && dropsLeft > 0) {
      dropsLeft--;
      // Send about 40%, then kill the socket: an interrupted transfer.
      res.write(slice.subarray(0, Math.floor(slice.length * 0.4)), () => setTimeout(() => res.socket?.destroy(), 50));
      return;
    }
    res.end(slice);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  await new Promise((resolve) => server.close(resolve));
  rmSync(tmp, { recursive: true, force: true });
});

test('fetch downloads, shows progress, verifies and then skips the installed copy', async () => {
  const dir = path.join(tmp, 'plain');
  const manifest = writeManifest([entry('good', 'denoising/good.onnx', payload)]);
  const first = await runCli(['fetch', 'good', '--manifest', manifest, '--models-dir', dir]);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /^good\s+installed\s*$/m);
  assert.match(first.stdout, /^1 of 1 installed in /m);
  // stderr is not a TTY here: progress comes as lines every 10 %
  const steps = [...first.stderr.matchAll(/^good: (\d+)% \(\d+\/3145851 bytes\)$/gm)].map((m) => Number(m[1]));
  assert.ok(steps.length >= 5, `progress lines: ${first.stderr}`);
  assert.deepEqual(steps, [...steps].sort((x, y) => x - y), 'progress only goes up');
  assert.match(first.stderr, /good: 100% \(3145851\/3145851 bytes\)/);
  assert.ok(readFileSync(path.join(dir, 'denoising', 'good.onnx')).equals(payload));
  assert.equal(existsSync(path.join(dir, 'denoising', 'good.onnx.part')), false);
  const before = requests.length;
  const second = await runCli(['fetch', 'good', '--manifest', manifest, '--models-dir', dir]);
  assert.equal(second.code, 0);
  assert.match(second.stdout, /already installed/);
  assert.equal(requests.length, before, 'no request for an installed, verified model');
});

test('an interrupted transfer resumes with a Range request (within one run and across runs)', async () => {
  const manifest = writeManifest([entry('good', 'denoising/good.onnx', payload)]);
  // Within one run: the retry continues from the .part.
  const dirA = path.join(tmp, 'resume-a');
  dropsLeft = 1;
  let mark = requests.length;
  const a = await runCli(['fetch', 'good', '--manifest', manifest, '--models-dir', dirA]);
  assert.equal(a.code, 0, a.stderr);
  assert.match(a.stderr, /resuming from byte \d+/);
  const ranges = requests.slice(mark).filter((r) => r.range);
  assert.equal(ranges.length, 1);
  assert.ok(Number(/bytes=(\d+)-/.exec(ranges[0].range ?? '')?.[1]) > 0);
  assert.ok(readFileSync(path.join(dirA, 'denoising', 'good.onnx')).equals(payload));

  // Across runs: no retries, the first run fails and leaves the .part; the next run resumes it.
  const dirB = path.join(tmp, 'resume-b');
  dropsLeft = 1;
  const failed = await runCli(['fetch', 'good', '--manifest', manifest, '--models-dir', dirB, '--retries', '0']);
  assert.equal(failed.code, 1);
  const part = path.join(dirB, 'denoising', 'good.onnx.part');
  assert.ok(existsSync(part), 'the partial download is kept');
  const partial = readFileSync(part).length;
  assert.ok(partial > 0 && partial < SIZE, `partial ${partial}`);
  mark = requests.length;
  const resumed = await runCli(['fetch', 'good', '--manifest', manifest, '--models-dir', dirB]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, /resuming at/);
  assert.deepEqual(requests.slice(mark).map((r) => r.range), [`bytes=${partial}-`]);
  assert.ok(readFileSync(path.join(dirB, 'denoising', 'good.onnx')).equals(payload));
});

test('a download whose sha256 does not match is refused and deleted', async () => {
  const dir = path.join(tmp, 'mismatch');
  // The manifest pins `payload` but the server's other.onnx has different bytes.
  const manifest = writeManifest([{ ...entry('bad', 'denoising/other.onnx', payload), bytes: null }]);
  const result = await runCli(['fetch', 'bad', '--manifest', manifest, '--models-dir', dir]);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /checksum_mismatch/);
  assert.equal(existsSync(path.join(dir, 'denoising', 'other.onnx')), false);
  assert.equal(existsSync(path.join(dir, 'denoising', 'other.onnx.part')), false);
});

test('unpinned models need --allow-unpinned; missing addresses and 404s fail clearly', async () => {
  const dir = path.join(tmp, 'unpinned');
  const manifest = writeManifest([
    entry('loose', 'denoising/other.onnx', null),
    { ...entry('nowhere', 'denoising/nowhere.onnx', other), urls: [], origin: 'converted by hand' },
    entry('gone', 'denoising/gone.onnx', other),
  ]);
  const refused = await runCli(['fetch', 'loose', '--manifest', manifest, '--models-dir', dir]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /unpinned_model: .*--allow-unpinned/);
  const allowed = await runCli(['fetch', 'loose', '--manifest', manifest, '--models-dir', dir, '--allow-unpinned']);
  assert.equal(allowed.code, 0, allowed.stderr);
  const noUrl = await runCli(['fetch', 'nowhere', '--manifest', manifest, '--models-dir', dir]);
  assert.match(noUrl.stderr, /no_download_url: .*converted by hand/);
  const notFound = await runCli(['fetch', 'gone', '--manifest', manifest, '--models-dir', dir]);
  assert.equal(notFound.code, 1);
  assert.match(notFound.stderr, /HTTP 404/);
  const usage = await runCli(['fetch', 'no-such-model', '--manifest', manifest, '--models-dir', dir]);
  assert.equal(usage.code, 2);
});

test('MODELS_BASE_URL / --base-url replace the manifest addresses', async () => {
  const dir = path.join(tmp, 'mirror');
  const manifest = writeManifest([{ ...entry('good', 'denoising/good.onnx', payload), urls: ['http://127.0.0.1:9/unreachable.onnx'] }]);
  const mark = requests.length;
  const result = await runCli(['fetch', '--all', '--manifest', manifest, '--models-dir', dir], { MODELS_BASE_URL: `${baseUrl}/mirror/` });
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(requests.slice(mark).map((r) => r.url), ['/mirror/denoising/good.onnx']);
});

test('list shows installed, missing and corrupt models; verify fails on a corrupt one', async () => {
  const dir = path.join(tmp, 'list');
  const manifest = writeManifest([
    entry('good', 'denoising/good.onnx', payload),
    entry('other', 'denoising/other.onnx', other),
    entry('absent', 'denoising/absent.onnx', other),
  ]);
  assert.equal((await runCli(['fetch', 'good', 'other', '--manifest', manifest, '--models-dir', dir])).code, 0);
  const target = path.join(dir, 'denoising', 'other.onnx');
  const damaged = Buffer.from(other);
  damaged[10] ^= 0xff;
  writeFileSync(target, damaged);
  const list = await runCli(['list', '--manifest', manifest, '--models-dir', dir]);
  assert.equal(list.code, 0);
  assert.match(list.stdout, /^good\s+installed/m);
  assert.match(list.stdout, /^other\s+corrupt/m);
  assert.match(list.stdout, /^absent\s+missing/m);
  const json = JSON.parse((await runCli(['list', '--json', '--manifest', manifest, '--models-dir', dir])).stdout) as { models: { id: string; status: string }[] };
  assert.deepEqual(json.models.map((m) => [m.id, m.status]), [['good', 'installed'], ['other', 'corrupt'], ['absent', 'missing']]);
  const verify = await runCli(['verify', '--manifest', manifest, '--models-dir', dir]);
  assert.equal(verify.code, 1);
  assert.match(verify.stdout, /other: corrupt/);
  // fetch repairs the corrupt copy
  const repair = await runCli(['fetch', 'other', '--manifest', manifest, '--models-dir', dir]);
  assert.equal(repair.code, 0, repair.stderr);
  assert.match(repair.stderr, /corrupt, downloading it again/);
  assert.ok(readFileSync(target).equals(other));
});

test('fetch of good, corrupt, missing and slow files: progress per file, then a summary with the reasons', async () => {
  const dir = path.join(tmp, 'summary');
  const manifest = writeManifest([
    entry('good', 'denoising/good.onnx', payload),
    { ...entry('corrupt', 'denoising/other.onnx', payload), bytes: null },
    entry('missing', 'object_detection/gone.onnx', other),
    entry('slow', 'denoising/slow.onnx', payload),
  ]);
  const r = await runCli(['fetch', '--all', '--manifest', manifest, '--models-dir', dir]);
  assert.equal(r.code, 1, r.stderr);
  for (const id of ['good', 'slow']) assert.match(r.stderr, new RegExp(`^${id}: 100% \\(3145851/3145851 bytes\\)$`, 'm'), id);
  assert.match(r.stdout, /^MODEL\s+RESULT\s+WHY$/m);
  assert.match(r.stdout, /^good\s+installed\s*$/m);
  assert.match(r.stdout, /^slow\s+installed\s*$/m);
  assert.match(r.stdout, /^corrupt\s+failed\s+checksum_mismatch: /m);
  assert.match(r.stdout, /^missing\s+failed\s+download_failed: .*HTTP 404/m);
  assert.match(r.stdout, /^2 of 4 installed in /m);
  // The 404 left nothing behind: no .part, no empty object_detection folder.
  assert.equal(existsSync(path.join(dir, 'object_detection')), false);
});

test('offline: said once, naming MODELS_DIR and MODELS_BASE_URL, without retries or empty folders', async () => {
  const dir = path.join(tmp, 'offline', 'weights');
  // A loopback port nobody listens on (taken, then freed): connection refused, as on a machine without network.
  const closed = http.createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const port = (closed.address() as AddressInfo).port;
  await new Promise((resolve) => closed.close(resolve));
  const manifest = writeManifest([
    { ...entry('a', 'denoising/a.onnx', payload), urls: [`http://127.0.0.1:${port}/a.onnx`] },
    { ...entry('b', 'face_detection/b.onnx', other), urls: [`http://127.0.0.1:${port}/b.onnx`] },
  ]);
  const r = await runCli(['fetch', '--all', '--manifest', manifest, '--models-dir', dir]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr.match(/cannot reach 127\.0\.0\.1:\d+ \(offline\?\)/g)?.length, 1, r.stderr);
  assert.match(r.stderr, /MODELS_DIR/);
  assert.match(r.stderr, /MODELS_BASE_URL/);
  assert.doesNotMatch(r.stderr, /retrying/);
  assert.match(r.stdout, /^a\s+failed\s+cannot reach 127\.0\.0\.1:\d+ \(ECONNREFUSED\)$/m);
  assert.match(r.stdout, /^0 of 2 installed/m);
  assert.equal(existsSync(dir), false, 'no empty folders left');
});
