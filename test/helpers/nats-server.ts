/** A real nats-server for integration tests: free loopback port, temporary store. */
import { startTemporaryNatsServer, type RunningNatsServer } from '../../services/launcher/nats-server.js';

export type TestNatsServer = RunningNatsServer & { storeDir: string };

export const startNatsServer = (): Promise<TestNatsServer> => startTemporaryNatsServer('photolab-nats-');
