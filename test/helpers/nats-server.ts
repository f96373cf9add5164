/** A real nats-server for integration tests: free loopback port, temporary store. */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startNatsServer as start, type RunningNatsServer } from '../../services/launcher/nats-server.js';

export interface TestNatsServer extends RunningNatsServer {
  storeDir: string;
}

export async function startNatsServer(): Promise<TestNatsServer> {
  const storeDir = mkdtempSync(path.join(os.tmpdir(), 'photolab-nats-'));
  const server = await start({ storeDir, logFile: path.join(storeDir, 'nats.log') });
  return {
    ...server,
    storeDir,
    async stop() {
      await server.stop();
      rmSync(storeDir, { recursive: true, force: true });
    },
  };
}
