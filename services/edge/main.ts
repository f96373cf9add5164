/** The edge service process: `node dist/services/edge/main.js`. */
import { config } from '../shared/config.js';
import { runUntilStopped } from '../shared/lifecycle.js';
import { createLogger } from '../shared/logger.js';
import { startEdge } from './server.js';

const log = createLogger('edge');
startEdge(config, log).then((edge) => runUntilStopped(log, () => edge.close()), (error) => {
  log.fatal({ err: error }, 'edge failed to start');
  process.exit(1);
});
