/**
 * Starts a local nats-server with JetStream (Debian's 2.9.10 works): used by `npm start`
 * when NATS_URL is not set, and by the tests, which get one on a free loopback port.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { settings } from '../lib/shared/config.js';

export interface NatsServerOptions {
  port?: number;
  host?: string;
  storeDir: string;
  maxPayload?: number;
  maxMemoryStore?: number;
  /** Where nats-server writes its log; inherit to share the caller's stderr. */
  logFile?: string;
  /** GOMAXPROCS of the server (NATS_GOMAXPROCS); 0 leaves Go's default (every core). */
  goMaxProcs?: number;
  /** HTTP monitoring port (/varz, /connz, /jsz); none when unset. */
  monitorPort?: number;
  /** Distinct per server of a cluster (JetStream's peers are named by it). */
  serverName?: string;
  /** Member of a nats-server cluster: its route port and every member's route port (its own may be listed). */
  cluster?: { name: string; port: number; routes: number[] };
}

export interface RunningNatsServer {
  url: string;
  port: number;
  process: ChildProcess;
  stop(): Promise<void>;
}

export function findNatsServer(): string | null {
  const found = spawnSync('sh', ['-c', 'command -v nats-server'], { encoding: 'utf8' });
  return found.status === 0 ? found.stdout.trim() : null;
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function portOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export async function startNatsServer(options: NatsServerOptions): Promise<RunningNatsServer> {
  const binary = findNatsServer();
  if (!binary) {
    throw new Error('nats-server is not installed: run `apt-get install -y nats-server` (the README set-up does), or set NATS_URL to a running server');
  }
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? (await freePort(host));
  if (await portOpen(host, port)) throw new Error(`port ${port} on ${host} is already in use (another nats-server?); set NATS_PORT, or NATS_URL to use that server`);
  mkdirSync(options.storeDir, { recursive: true });
  const configFile = path.join(options.storeDir, 'nats-server.conf');
  const maxPayload = options.maxPayload ?? 8 * 1024 * 1024;
  writeFileSync(configFile, [
    `host: "${host}"`,
    `port: ${port}`,
    `max_payload: ${maxPayload}`,
    ...(options.serverName ? [`server_name: "${options.serverName}"`] : []),
    ...(options.monitorPort ? [`http: "${host}:${options.monitorPort}"`] : []),
    // Routes on the same host; nats-server skips the route to itself.
    ...(options.cluster ? [
      'cluster {',
      `  name: "${options.cluster.name}"`,
      `  listen: "${host}:${options.cluster.port}"`,
      `  routes: [${options.cluster.routes.map((p) => `"nats-route://${host}:${p}"`).join(', ')}]`,
      '}',
    ] : []),
    // A frame chunk plus headers must fit in one write; the default 64 MB pending is plenty.
    'jetstream {',
    `  store_dir: "${path.join(options.storeDir, 'jetstream')}"`,
    `  max_memory_store: ${options.maxMemoryStore ?? 3 * 1024 * 1024 * 1024}`,
    '}',
    '',
  ].join('\n'));
  const args = ['-c', configFile];
  if (options.logFile) args.push('-l', options.logFile);
  // The launcher passes NATS_GOMAXPROCS; servers started by tests and benches get its default.
  const goMaxProcs = options.goMaxProcs ?? settings.natsGoMaxProcs.default;
  const env = goMaxProcs > 0 ? { ...process.env, GOMAXPROCS: String(goMaxProcs) } : process.env;
  const child = spawn(binary, args, { env, stdio: ['ignore', 'ignore', options.logFile ? 'ignore' : 'inherit'] });
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  const until = Date.now() + 15_000;
  while (!(await portOpen(host, port))) {
    if (exited) throw new Error(`nats-server exited at start (see its log${options.logFile ? ` in ${options.logFile}` : ''})`);
    if (Date.now() > until) {
      child.kill('SIGKILL');
      throw new Error('nats-server did not open its port within 15 s');
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `nats://${host}:${port}`,
    port,
    process: child,
    stop: () => stopProcess(child),
  };
}

/** SIGTERM, then SIGKILL after a grace period; resolves when the process is gone. */
export function stopProcess(child: ChildProcess, graceMs = 8000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** A nats-server on a free loopback port with a temporary store that stop() removes (tests, benchmarks). */
export async function startTemporaryNatsServer(prefix: string, options: Partial<NatsServerOptions> = {}): Promise<RunningNatsServer & { storeDir: string }> {
  const storeDir = mkdtempSync(path.join(os.tmpdir(), prefix));
  const server = await startNatsServer({ storeDir, logFile: path.join(storeDir, 'nats.log'), ...options });
  return {
    ...server,
    storeDir,
    async stop() {
      await server.stop();
      rmSync(storeDir, { recursive: true, force: true });
    },
  };
}
