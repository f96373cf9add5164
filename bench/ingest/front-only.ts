/**
 * "Front only" mode of the ingest bench: everything POST /api/jobs does before the bus (token,
 * rate limit, body, multipart, schema and pipeline validation, pixel limit from the header),
 * then a 202 without storing or publishing anything. Both comparison servers run this same
 * handler, so the pair measures the HTTP layer itself: the part where uWebSockets.js and
 * node:http differ, without the NATS work that both share.
 */
import type { Bus } from '../../services/lib/bus/bus.js';
import { ownerHash } from '../../services/lib/bus/job-store.js';
import { bearerToken, type Authenticator } from '../../services/edge/auth.js';
import type { CallerBlobs } from '../../services/edge/blobs.js';
import { readJobSubmission } from '../../services/edge/http/body.js';
import { json, type Handler } from '../../services/edge/http/uws-http.js';
import { assertPixelLimit } from '../../services/lib/imaging/image-size.js';
import type { RateLimiter } from '../../services/edge/limits.js';
import { validatePipeline } from '../../services/lib/pipeline/pipeline.js';
import type { StageDefinition } from '../../services/lib/pipeline/stage.js';
import type { Config } from '../../services/lib/shared/config.js';
import { newId } from '../../services/lib/shared/ids.js';

export interface FrontDeps {
  bus: Bus;
  auth: Authenticator;
  rateLimiter: RateLimiter;
  blobs: CallerBlobs;
  stages: Map<string, StageDefinition>;
  config: Config;
}

export const frontOnlyHandler = (deps: FrontDeps): Handler => async (req) => {
  const caller = await deps.auth.verify(bearerToken(req.headers.authorization));
  deps.rateLimiter.take(ownerHash(caller));
  const submission = await readJobSubmission(req, caller, deps.config, deps.blobs);
  const pipeline = validatePipeline(submission.pipeline, deps.stages);
  // The bench sends the image itself (no case original by hash): it is always there.
  const image = submission.image!;
  await assertPixelLimit(image, deps.config.maxInputPixels);
  return json(202, { jobId: newId(), status: 'pending', steps: pipeline.length, bytes: image.length });
};
