/**
 * The comparison server for the ingest bench: the same upload endpoint as the edge
 * (POST /api/jobs, multipart or JSON), on plain node:http, with a `ws` WebSocketServer on /ws
 * beside it as a plain-Node edge would have. Everything after the HTTP layer is the edge's
 * own code: the same authenticator, rate limiter, body reading and validation
 * (readJobSubmission, which parses multipart with the same parser), the same JobsService
 * (pipeline validation, pixel check, blob put, job record, first publish) and the same
 * reply. Only the HTTP server differs.
 *
 *   node dist/bench/ingest/node-edge.js [--front-only]   (same environment variables as the edge)
 *
 * --front-only answers with frontOnlyHandler (front-only.ts): the HTTP layer without the bus.
 */
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { WebSocketServer } from 'ws';
import { connectBus } from '../../services/lib/bus/bus.js';
import { ownerHash } from '../../services/lib/bus/job-store.js';
import { bearerToken, createAuthenticator } from '../../services/edge/auth.js';
import { CallerBlobs } from '../../services/edge/blobs.js';
import { readJobSubmission } from '../../services/edge/http/body.js';
import { errorReply, json, type Reply, type Request } from '../../services/edge/http/uws-http.js';
import { JobsService } from '../../services/edge/jobs.js';
import { BacklogGate, RateLimiter } from '../../services/edge/limits.js';
import { jobView } from '../../services/edge/views.js';
import { OpenJobsView } from '../../services/lib/bus/open-jobs-view.js';
import { loadStages } from '../../services/lib/steps/registry.js';
import { frontOnlyHandler } from './front-only.js';
import { loadConfig } from '../../services/lib/shared/config.js';
import { AppError, toAppError } from '../../services/lib/shared/errors.js';
import { createLogger } from '../../services/lib/shared/logger.js';

const config = loadConfig();

const log = createLogger('node-edge');
const stages = await loadStages();
const steps = [...stages.keys()];
const bus = await connectBus(config, log, 'photolab-node-edge', { steps });
const auth = createAuthenticator(config);
const backlog = new BacklogGate(bus.jsm, steps, config.maxBacklog);
const open = await OpenJobsView.start(bus.js, config.jobMaxDeadlineMs, log);
const jobs = new JobsService(bus, stages, config, log, backlog, { open });
const blobs = await CallerBlobs.open(bus, bus.nc, config.maxUploadBytes);
const rateLimiter = new RateLimiter(config.rateLimitPerMinute);
const frontOnly = process.argv.includes('--front-only') ? frontOnlyHandler({ bus, auth, rateLimiter, blobs, stages, config }) : undefined;
const maxBody = (contentType: string) => (contentType.startsWith('application/json')
  ? Math.ceil((config.maxUploadBytes * 4) / 3) + config.maxJsonBytes + 1024
  : config.maxUploadBytes + 64 * 1024);

function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) return Promise.reject(new AppError(413, 'payload_too_large', `body is ${declared} bytes; the limit is ${limit}`, { details: { limit } }));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(new AppError(413, 'payload_too_large', `body is over the limit of ${limit} bytes`, { details: { limit } }));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)));
    req.on('error', reject);
  });
}

async function handle(incoming: http.IncomingMessage, requestId: string): Promise<Reply> {
  const url = new URL(incoming.url ?? '/', 'http://localhost');
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(incoming.headers)) if (typeof v === 'string') headers[k] = v;
  const bodyPromise = incoming.method === 'GET' ? Promise.resolve(Buffer.alloc(0)) : readBody(incoming, maxBody(headers['content-type'] ?? ''));
  bodyPromise.catch(() => undefined);
  const req: Request = {
    method: incoming.method ?? 'GET', path: url.pathname, query: url.searchParams, headers, params: {}, requestId,
    remoteAddress: incoming.socket.remoteAddress ?? '', body: () => bodyPromise,
  } as Request;
  if (req.method === 'POST' && url.pathname === '/api/jobs') {
    if (frontOnly) return frontOnly(req);
    const caller = await auth.verify(bearerToken(headers.authorization));
    rateLimiter.take(ownerHash(caller));
    const submission = await readJobSubmission(req, caller, config, blobs);
    const { job, created } = await jobs.submit(caller, { ...submission, idempotencyKey: headers['idempotency-key'] || undefined, requestId });
    return json(created ? 202 : 200, { ...jobView(job), ...(created ? {} : { idempotent: true }) }, { location: `/api/jobs/${job.jobId}` });
  }
  throw new AppError(404, 'route_not_found', `no route ${req.method} ${req.path}`);
}

const server = http.createServer((incoming, res) => {
  const requestId = /^[\w.-]{1,64}$/.test(String(incoming.headers['x-request-id'] ?? '')) ? String(incoming.headers['x-request-id']) : randomUUID();
  handle(incoming, requestId)
    .catch((error: unknown) => errorReply(toAppError(error), requestId))
    .then((reply) => {
      res.writeHead(reply.status, { 'x-request-id': requestId, ...reply.headers });
      res.end(reply.body ?? '');
    });
});
server.keepAliveTimeout = 30_000;
const wss = new WebSocketServer({ server, path: '/ws', maxPayload: config.maxUploadBytes + 64 * 1024 });
wss.on('connection', (socket) => socket.close(1013, 'the comparison server benchmarks HTTP uploads only'));
server.listen(config.httpPort, config.httpHost, () => log.info({ port: config.httpPort }, 'edge listening'));
const stop = () => {
  server.close();
  wss.close();
  void bus.close().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
