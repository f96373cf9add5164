#!/usr/bin/env node
// Container HEALTHCHECK for every service of the one image. Which service this container runs
// is read from PID 1's command line (the image's CMD or compose's `command`), so one
// HEALTHCHECK line serves them all:
//   edge       GET /api/health on HTTP_PORT: 503 only when NATS is down or a stream is missing
//   stage      GET /healthz on STAGE_METRICS_PORT (alive; /readyz is for orchestrators' readiness)
//   metrics-sink no HTTP port: healthy while the process runs (it exits when it cannot continue)
// Exit 0 healthy, 1 not. Nothing here is a setting of its own: the ports are the services'.
import { readFileSync } from 'node:fs';

const cmdline = (() => {
  try { return readFileSync('/proc/1/cmdline', 'utf8').split('\0').join(' '); } catch { return ''; }
})();
const get = async (url) => {
  const response = await fetch(url, { signal: AbortSignal.timeout(4000) });
  if (!response.ok) throw new Error(`${url} answered ${response.status}`);
};
try {
  if (/stage-worker\/main\.js/.test(cmdline)) {
    const port = Number(process.env.STAGE_METRICS_PORT ?? 0);
    if (port > 0) await get(`http://127.0.0.1:${port}/healthz`);
  } else if (/edge\/main\.js/.test(cmdline)) {
    await get(`http://127.0.0.1:${process.env.HTTP_PORT || 8080}/api/health`);
  }
  process.exit(0);
} catch (error) {
  console.error(String(error?.message ?? error));
  process.exit(1);
}
