/**
 * Load from wrk (Debian's `wrk`, C, epoll) when it is installed. The ingest bench's own Node
 * load generator tops out near 4,000 requests/s on these 2 cores, below what the servers can
 * take once the bus is out of the path; wrk needs a fraction of that CPU, so the servers, not
 * the client, set the figure. One wrk thread: the other core is left to the server under test.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const wrkAvailable = (): boolean => process.env.BENCH_LOADGEN !== 'node' && spawnSync('wrk', ['--version']).error === undefined;

const SCRIPT = `
local f = io.open(os.getenv("WRK_BODY_FILE"), "rb"); wrk.body = f:read("*a"); f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = os.getenv("WRK_CONTENT_TYPE")
wrk.headers["Authorization"] = "Bearer " .. os.getenv("WRK_TOKEN")
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_RESULT {"requests":%d,"durationUs":%d,"status":%d,"socket":%d,"p50Us":%d,"p95Us":%d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(95)))
end
`;

/** One load run: accepted (202) and failed requests over `seconds`, latency in ms. */
export interface LoadResult {
  ok: number;
  failed: number;
  firstError: string;
  seconds: number;
  latency: { p50: number; p95: number };
}

export async function wrkLoad(url: string, body: { body: Buffer; contentType: string }, token: string, connections: number, seconds: number): Promise<LoadResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'photolab-wrk-'));
  try {
    writeFileSync(path.join(dir, 'body'), body.body);
    writeFileSync(path.join(dir, 'post.lua'), SCRIPT);
    const output = await new Promise<string>((resolve, reject) => {
      const child = spawn('wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, '--timeout', '30s', '-s', path.join(dir, 'post.lua'), url], {
        env: { ...process.env, WRK_BODY_FILE: path.join(dir, 'body'), WRK_CONTENT_TYPE: body.contentType, WRK_TOKEN: token },
      });
      let text = '';
      child.stdout.on('data', (c: Buffer) => { text += c.toString(); });
      child.stderr.on('data', (c: Buffer) => { text += c.toString(); });
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve(text) : reject(new Error(`wrk exited ${code}: ${text.slice(-500)}`))));
    });
    const line = /WRK_RESULT (\{.*\})/.exec(output);
    if (!line) throw new Error(`wrk printed no result: ${output.slice(-500)}`);
    const r = JSON.parse(line[1]!) as { requests: number; durationUs: number; status: number; socket: number; p50Us: number; p95Us: number };
    const failed = r.status + r.socket;
    const ok = r.requests - r.status;
    return {
      ok, failed, firstError: failed ? `${r.status} answers not 2xx/3xx, ${r.socket} socket errors` : '',
      seconds: r.durationUs / 1e6, latency: { p50: r.p50Us / 1000, p95: r.p95Us / 1000 },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
