/** The edge service process: `node dist/services/edge/main.js`. */
import { applyCollectorSettings, loadConfig } from '../lib/shared/config.js';
import { runUntilStopped } from '../lib/shared/lifecycle.js';
import { createLogger } from '../lib/shared/logger.js';
import { startEdge } from './server.js';

const config = loadConfig();
applyCollectorSettings(config);
const log = createLogger('edge', { config });
startEdge(config, log).then((edge) => {
  // Tell the launcher (when it started us with an IPC channel) that the edge now listens, so
  // its "ready" line comes only when the URL answers.
  process.send?.({ type: 'edge.listening', port: edge.port });
  process.channel?.unref(); // the channel must not keep the process alive at shutdown
  runUntilStopped(log, () => edge.close());
}, (error) => {
  log.fatal({ err: error }, 'edge failed to start');
  process.exit(1);
});
