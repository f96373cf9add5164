/** What the edge's HTTP routes and WebSocket gateway both work with. */
import type { Bus } from '../bus/bus.js';
import type { Config } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';
import type { Authenticator } from './auth.js';
import type { CallerBlobs } from './blobs.js';
import type { JobsService } from './jobs.js';
import type { CasesService } from './cases.js';
import type { Custody } from '../forensics/custody.js';
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
