/**
 * A real clickhouse-server (Debian's 18.16, the oldest we support) for tests: free loopback
 * ports, a temp dir with a minimal config.xml + users.xml, no systemd. The binary is required:
 * a missing binary fails the test with what to install (CI installs it).
 *
 *   const ch = await startClickHouseServer();
 *   ... CLICKHOUSE_URL = ch.url ...
 *   await ch.kill('SIGKILL'); await ch.restart();   // same data dir, same ports
 *   await ch.stop();
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findBinary, freePort } from './server-binaries.js';

export interface ClickHouseServer {
  url: string;
  httpPort: number;
  dir: string;
  readonly pid: number | undefined;
  /** Sends a signal (SIGSTOP freezes it; SIGKILL kills it; SIGCONT resumes). Waits for exit on SIGKILL/SIGTERM. */
  signal(sig: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same data dir and ports (after a kill). */
  restart(): Promise<void>;
  /** Runs one SQL statement over HTTP; returns the body. */
  query(sql: string): Promise<string>;
  stop(): Promise<void>;
}

export function clickhouseServerBinary(): string {
  const bin = findBinary('clickhouse-server', 'CLICKHOUSE_SERVER_BIN');
  if (!bin) {
    throw new Error('clickhouse-server not found (looked in PATH, /usr/sbin, /usr/bin; or set CLICKHOUSE_SERVER_BIN). '
      + 'The metrics tests need a real ClickHouse server: install it with `apt-get install clickhouse-server` (Debian ships 18.16).');
  }
  return bin;
}

function configXml(dir: string, httpPort: number, tcpPort: number): string {
  return `<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>${dir}/log/server.log</log><errorlog>${dir}/log/server.err.log</errorlog><size>10M</size><count>1</count><console>0</console></logger>
  <http_port>${httpPort}</http_port>
  <tcp_port>${tcpPort}</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>${dir}/data/</path>
  <tmp_path>${dir}/tmp/</tmp_path>
  <user_files_path>${dir}/user_files/</user_files_path>
  <format_schema_path>${dir}/format_schemas/</format_schema_path>
  <users_config>${dir}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>67108864</mark_cache_size>
  <uncompressed_cache_size>67108864</uncompressed_cache_size>
  <max_concurrent_queries>50</max_concurrent_queries>
  <mlock_executable>false</mlock_executable>
</yandex>
`;
}

const USERS_XML = `<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
`;

async function ping(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/ping`, { signal: AbortSignal.timeout(1000) });
    return res.ok;
  } catch {
    return false;
  }
}

export async function startClickHouseServer(): Promise<ClickHouseServer> {
  const bin = clickhouseServerBinary();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'metrics-ch-'));
  for (const sub of ['data', 'tmp', 'log', 'user_files', 'format_schemas']) mkdirSync(path.join(dir, sub), { recursive: true });
  const httpPort = await freePort();
  const tcpPort = await freePort();
  writeFileSync(path.join(dir, 'config.xml'), configXml(dir, httpPort, tcpPort));
  writeFileSync(path.join(dir, 'users.xml'), USERS_XML);
  const url = `http://127.0.0.1:${httpPort}`;
  let child: ChildProcess | undefined;

  const launch = async () => {
    const c = spawn(bin, [`--config-file=${path.join(dir, 'config.xml')}`], { cwd: dir, stdio: ['ignore', 'ignore', 'ignore'] });
    child = c;
    const end = Date.now() + 30_000;
    while (Date.now() < end) {
      if (c.exitCode !== null || c.signalCode !== null) break;
      if (await ping(url)) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    const errLog = path.join(dir, 'log', 'server.err.log');
    const tail = existsSync(errLog) ? readFileSync(errLog, 'utf8').slice(-2000) : '';
    c.kill('SIGKILL');
    throw new Error(`clickhouse-server (${bin}) did not answer on ${url} within 30 s (exit ${c.exitCode ?? c.signalCode}).\n${tail}`);
  };

  const waitExit = (c: ChildProcess, ms: number) =>
    c.exitCode !== null || c.signalCode !== null
      ? Promise.resolve()
      : Promise.race([new Promise<void>((r) => c.once('exit', () => r())), new Promise<void>((r) => setTimeout(r, ms))]);

  await launch();
  return {
    url,
    httpPort,
    dir,
    get pid() {
      return child?.pid;
    },
    async signal(sig) {
      if (!child) return;
      child.kill(sig);
      if (sig === 'SIGKILL' || sig === 'SIGTERM') await waitExit(child, 20_000);
    },
    async restart() {
      if (child && child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await waitExit(child, 20_000);
      }
      await launch();
    },
    async query(sql) {
      const res = await fetch(url, { method: 'POST', body: sql });
      const text = await res.text();
      if (!res.ok) throw new Error(`ClickHouse ${res.status}: ${text}`);
      return text;
    },
    async stop() {
      if (child && child.exitCode === null && child.signalCode === null) {
        child.kill('SIGCONT');
        child.kill('SIGTERM');
        await waitExit(child, 10_000);
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGKILL');
          await waitExit(child, 5000);
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
