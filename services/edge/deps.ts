/** What the edge's HTTP routes and WebSocket gateway both work with. */
import type { Bus } from '../lib/bus/bus.js';
import type { Config } from '../lib/shared/config.js';
import type { Logger } from '../lib/shared/logger.js';
import type { Authenticator } from './auth.js';
import type { CallerBlobs } from './blobs.js';
import type { JobsService } from './jobs.js';
import type { CasesService } from './cases.js';
import type { Custody } from '../lib/forensics/custody.js';
import type { ForensicsService } from './forensics.js';
import type { RateLimiter } from './limits.js';

export interface EdgeDeps {
  bus: Bus;
  jobs: JobsService;
  cases: CasesService;
  custody: Custody;
  forensics: ForensicsService;
  blobs: CallerBlobs;
  auth: Authenticator;
  rateLimiter: RateLimiter;
  config: Config;
  log: Logger;
}
