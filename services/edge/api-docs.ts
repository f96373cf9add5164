/**
 * The machine-readable descriptions of the API, built at start-up from the JSON Schemas in
 * schemas/ (never hand-copied, so they cannot drift from what the edge validates):
 *   - OpenAPI 3.1 for the HTTP API (GET /api/openapi.json),
 *   - AsyncAPI 3.0 for the WebSocket protocol and the NATS subjects (GET /api/asyncapi.json),
 *   - a rendered page for people (GET /api/docs), made from the same OpenAPI document.
 * Every schema file becomes one component (`http/job.schema.json` → `http.job`); its relative
 * $refs are rewritten to point at the components, and $id/$schema are dropped so a
 * component's refs resolve inside the document.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { schemasDir } from '../lib/shared/schemas.js';

type Json = Record<string, any>;

const SCHEMA_SUFFIX = '.schema.json';

/** `http/job.schema.json` → `http.job` (component names allow [A-Za-z0-9._-]). */
export const componentName = (relativePath: string) => relativePath.slice(0, -SCHEMA_SUFFIX.length).replaceAll('/', '.');

function schemaFiles(dir = schemasDir, prefix = ''): string[] {
  return readdirSync(dir).sort().flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return schemaFiles(full, `${prefix}${name}/`);
    return name.endsWith(SCHEMA_SUFFIX) ? [`${prefix}${name}`] : [];
  });
}

const components = new Map<string, Record<string, Json>>();

/**
 * Every schema as a component, refs rewritten to `${base}<component>[/pointer]` (read once per
 * document kind). The schemas' `discriminator` is OpenAPI's (and Ajv's) object
 * `{propertyName}`; AsyncAPI 3.0's schema object wants the property name alone.
 */
function schemaComponents(base: string, dialect: 'openapi' | 'asyncapi'): Record<string, Json> {
  const cacheKey = `${dialect} ${base}`;
  const cached = components.get(cacheKey);
  if (cached) return cached;
  const out: Record<string, Json> = {};
  for (const file of schemaFiles()) {
    const schema = JSON.parse(readFileSync(path.join(schemasDir, file), 'utf8')) as Json;
    delete schema.$schema;
    delete schema.$id;
    out[componentName(file)] = rewriteRefs(schema, file, base, dialect);
  }
  components.set(cacheKey, out);
  return out;
}

function rewriteRefs(value: unknown, file: string, base: string, dialect: 'openapi' | 'asyncapi'): any {
  if (Array.isArray(value)) return value.map((v) => rewriteRefs(v, file, base, dialect));
  if (!value || typeof value !== 'object') return value;
  const out: Json = {};
  for (const [key, v] of Object.entries(value)) {
    if (key === '$ref' && typeof v === 'string') {
      const [target, pointer = ''] = v.split('#');
      const targetFile = target ? path.posix.normalize(path.posix.join(path.posix.dirname(file), target)) : file;
      out.$ref = `${base}${componentName(targetFile)}${pointer}`;
    } else if (key === 'discriminator' && dialect === 'asyncapi' && v && typeof v === 'object' && typeof (v as Json).propertyName === 'string') {
      out.discriminator = (v as Json).propertyName;
    } else {
      out[key] = rewriteRefs(v, file, base, dialect);
    }
  }
  return out;
}

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const jsonBody = (name: string) => ({ 'application/json': { schema: ref(name) } });
const IMAGE = { schema: { type: 'string', contentMediaType: 'image/*' } };

/** The HTTP routes, by OpenAPI path. Kept beside the route files; a test checks every mounted route is here. */
export function openApiDocument(version: string): Json {
  const error = (description: string) => ({ description, content: jsonBody('http.error') });
  const secured = [{ bearer: [] }];
  const id = { name: 'id', in: 'path', required: true, schema: ref('common/definitions/JobId') };
  const errors = { 400: error('the request is wrong; `details` says where'), 401: error('no or bad token'), 404: error('unknown, or another caller\'s'), 429: error('rate limit or job quota; Retry-After'), 503: error('overloaded or model not installed; Retry-After') };
  return {
    openapi: '3.1.0',
    info: {
      title: 'PhotoLab Pipeline HTTP API',
      version,
      description: 'Uploads, jobs, results and health of the PhotoLab edge. The WebSocket protocol and the NATS subjects are in /api/asyncapi.json; docs/api.md explains everything.',
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    servers: [{ url: '/' }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
      schemas: schemaComponents('#/components/schemas/', 'openapi'),
    },
    paths: {
      '/api/health': { get: { operationId: 'health', summary: 'Health of NATS, streams and stages (no token)', responses: { 200: { description: 'ok or degraded', content: jsonBody('http.health') }, 503: { description: 'down', content: jsonBody('http.health') } } } },
      '/api/hello': { get: { operationId: 'hello', summary: 'The PLAYE front end\'s connectivity check (no token)', responses: { 200: { description: 'hello', content: jsonBody('http.hello') } } } },
      '/api/jobs': {
        post: {
          operationId: 'createJob', summary: 'Create a job', security: secured,
          parameters: [{ name: 'Idempotency-Key', in: 'header', schema: { type: 'string' }, description: 'the same key within 24 h returns the same job' }],
          requestBody: { required: true, content: { 'multipart/form-data': { schema: { type: 'object', properties: { file: { type: 'string', contentMediaType: 'application/octet-stream' }, blobId: { type: 'string' }, pipeline: { type: 'string', description: 'JSON: the request object or just the steps array' }, deadlineMs: { type: 'string' } } } }, ...jsonBody('http.create-job') } },
          responses: { 202: { description: 'accepted', content: jsonBody('http.job') }, 200: { description: 'the same Idempotency-Key: the earlier job', content: jsonBody('http.job') }, ...errors, 409: error('idempotency key in use'), 413: error('too large'), 415: error('unsupported media type') },
        },
        get: {
          operationId: 'listJobs', summary: 'The caller\'s jobs, newest first', security: secured,
          parameters: [
            { name: 'status', in: 'query', schema: ref('messages.job-record/definitions/JobStatus') },
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 100, default: 20 } },
            { name: 'cursor', in: 'query', schema: { type: 'string' } },
          ],
          responses: { 200: { description: 'a page', content: jsonBody('http.job-list') }, ...errors },
        },
      },
      '/api/jobs/{id}': { get: { operationId: 'getJob', summary: 'A job: status, steps, provenance', security: secured, parameters: [id], responses: { 200: { description: 'the job', content: jsonBody('http.job') }, ...errors } } },
      '/api/jobs/{id}/result': {
        get: {
          operationId: 'getResult', summary: 'The result image, or the findings of a pipeline without encode', security: secured,
          parameters: [id, { name: 'wait', in: 'query', schema: { type: 'number', minimum: 0 }, description: 'seconds to wait for the job to end before answering (at most SYNC_WAIT_MS)' }],
          responses: { 200: { description: 'the image (its own content type) or findings', content: { 'image/*': IMAGE, 'application/json': { schema: ref('common/definitions/Findings') } } }, ...errors, 409: error('not done: job_not_completed, job_failed, job_canceled, job_timeout') },
        },
      },
      '/api/jobs/{id}/cancel': { post: { operationId: 'cancelJob', summary: 'Cancel a job', security: secured, parameters: [id], responses: { 200: { description: 'the canceled job', content: jsonBody('http.job') }, ...errors, 409: error('job_not_cancelable') } } },
      '/api/blobs': {
        post: {
          operationId: 'uploadBlob', summary: 'Upload an image once; use its blobId in jobs', security: secured,
          requestBody: { required: true, content: { 'image/*': IMAGE, 'multipart/form-data': { schema: { type: 'object', properties: { file: { type: 'string', contentMediaType: 'application/octet-stream' } } } } } },
          responses: { 201: { description: 'stored', content: jsonBody('http.blob') }, ...errors, 413: error('too large') },
        },
      },
      '/api/ai/{name}': {
        post: {
          operationId: 'playe', summary: 'PLAYE endpoints: upscale, denoise, face-enhance, detect-faces, detect-objects (waits up to SYNC_WAIT_MS)', security: secured,
          parameters: [{ name: 'name', in: 'path', required: true, schema: { type: 'string', enum: ['upscale', 'denoise', 'face-enhance', 'detect-faces', 'detect-objects'] } }],
          requestBody: { required: true, content: { 'multipart/form-data': { schema: { type: 'object', properties: { file: { type: 'string', contentMediaType: 'application/octet-stream' } }, additionalProperties: { type: 'string' } } }, 'image/*': IMAGE } },
          responses: { 200: { description: 'the image, or detections', content: { 'image/*': IMAGE, ...jsonBody('http.playe-detections') } }, 202: { description: 'not done in time', content: jsonBody('http.playe-queued') }, ...errors, 409: error('the job was canceled or passed its deadline: job_canceled, job_timeout'), 422: error('undecodable image') },
        },
      },
      '/api/stats': {
        get: {
          operationId: 'stats', summary: 'Stage-run statistics from ClickHouse', security: secured,
          parameters: ['from', 'to', 'groupBy'].map((name) => ({ name, in: 'query', schema: ref(`http.stats-query/properties/${name}`) })),
          responses: { 200: { description: 'statistics', content: jsonBody('http.stats-response') }, ...errors },
        },
      },
      '/': { get: { operationId: 'root', summary: 'The web playground (HTML), or the service description when no playground is served (no token)', responses: { 200: { description: 'the page, or the service', content: { 'text/html': { schema: { type: 'string' } }, ...jsonBody('http.service') } } } } },
      '/{file}': { get: { operationId: 'playgroundFile', summary: 'A file of the web playground (no token)', parameters: [{ name: 'file', in: 'path', required: true, schema: { type: 'string' } }], responses: { 200: { description: 'the file' }, 304: { description: 'not modified (ETag)' }, 404: error('no such file') } } },
      '/api': { get: { operationId: 'service', summary: 'What answers here: name, version, status (no token)', responses: { 200: { description: 'the service', content: jsonBody('http.service') } } } },
      '/api/steps': { get: { operationId: 'steps', summary: 'Every step, its kinds and its parameter schema', security: secured, responses: { 200: { description: 'the steps', content: jsonBody('http.steps') }, ...errors } } },
      '/api/dev/token': { post: { operationId: 'devToken', summary: 'A development token (only on the embedded default, loopback callers; no token)', responses: { 200: { description: 'a token', content: jsonBody('http.dev-token') }, 403: error('dev_token_loopback_only'), 404: error('not on this deployment') } } },
      '/.well-known/jwks.json': { get: { operationId: 'reportKeys', summary: 'The public keys that sign job reports (no token)', responses: { 200: { description: 'JWKS', content: { 'application/json': { schema: { type: 'object' } } } } } } },
      '/api/jobs/{id}/report': { get: { operationId: 'jobReport', summary: 'The signed forensic report of a job (JSON, or ?format=html)', security: secured, parameters: [id, { name: 'format', in: 'query', schema: { type: 'string', enum: ['json', 'html'] } }], responses: { 200: { description: 'the report', content: { ...jsonBody('http.report'), 'text/html': { schema: { type: 'string' } } } }, ...errors, 409: error('job_not_completed') } } },
      '/api/jobs/{id}/replay': { post: { operationId: 'replayJob', summary: 'Re-run a done job on its original and compare per step', security: secured, parameters: [id], responses: { 200: { description: 'the comparison', content: jsonBody('http.replay') }, 202: { description: 'still running', content: jsonBody('http.replay') }, ...errors, 409: error('job_not_completed, case_closed') } } },
      '/api/jobs/{id}/replay/{replay}': { get: { operationId: 'replayComparison', summary: 'The comparison of a replay', security: secured, parameters: [id, { name: 'replay', in: 'path', required: true, schema: ref('common/definitions/JobId') }], responses: { 200: { description: 'the comparison', content: jsonBody('http.replay') }, ...errors } } },
      '/api/cases': {
        get: { operationId: 'listCases', summary: 'The tenant\'s cases (an array; next page in X-Next-Cursor / Link)', security: secured, parameters: [{ name: 'cursor', in: 'query', schema: { type: 'string' } }, { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000 } }], responses: { 200: { description: 'cases', content: { 'application/json': { schema: { type: 'array', items: ref('http.case') } } } }, ...errors } },
        post: { operationId: 'createCase', summary: 'Create a case ({name}), or the PLAYE front end\'s create-or-update ({id, updatedAt, ...}: the later updatedAt wins)', security: secured, requestBody: { required: true, content: jsonBody('http.create-case') }, responses: { 201: { description: 'created', content: jsonBody('http.case') }, 200: { description: 'updated (PLAYE shape)', content: jsonBody('http.case') }, ...errors } },
      },
      '/api/cases/{id}': {
        get: { operationId: 'getCase', summary: 'A case with its jobs and originals', security: secured, parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }], responses: { 200: { description: 'the case', content: jsonBody('http.case') }, ...errors } },
        patch: { operationId: 'renameCase', summary: 'Rename a case', security: secured, parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }], requestBody: { required: true, content: jsonBody('http.rename-case') }, responses: { 200: { description: 'the case', content: jsonBody('http.case') }, ...errors, 409: error('case_closed') } },
      },
      '/api/cases/{id}/close': { post: { operationId: 'closeCase', summary: 'Close a case: it takes no new jobs or evidence', security: secured, parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }], responses: { 200: { description: 'the closed case', content: jsonBody('http.case') }, ...errors, 409: error('case_closed') } } },
      '/api/cases/{id}/evidence': { post: { operationId: 'addEvidence', summary: 'Keep an original for the case (unaltered, hashed)', security: secured, parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }], requestBody: { required: true, content: { 'image/*': IMAGE, 'multipart/form-data': { schema: { type: 'object', properties: { file: { type: 'string', contentMediaType: 'application/octet-stream' } } } } } }, responses: { 201: { description: 'kept', content: jsonBody('http.evidence') }, ...errors, 409: error('case_closed'), 413: error('too large') } } },
      '/api/cases/{id}/evidence/{digest}': { get: { operationId: 'getEvidence', summary: 'The exact original bytes, by sha256', security: secured, parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }, { name: 'digest', in: 'path', required: true, schema: { type: 'string', pattern: '^[0-9a-f]{64}$' } }], responses: { 200: { description: 'the original', content: { 'image/*': IMAGE } }, ...errors } } },
      '/api/cases/{id}/audit': { get: { operationId: 'caseAudit', summary: 'The chain of custody of a case', security: secured, parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }], responses: { 200: { description: 'audit records', content: jsonBody('http.audit-list') }, ...errors } } },
      '/metrics': { get: { operationId: 'metrics', summary: 'Prometheus text (no token)', responses: { 200: { description: 'metrics', content: { 'text/plain': { schema: { type: 'string' } } } } } } },
      '/api/openapi.json': { get: { operationId: 'openapi', summary: 'This document (no token)', responses: { 200: { description: 'OpenAPI 3.1', content: { 'application/json': { schema: { type: 'object' } } } } } } },
      '/api/asyncapi.json': { get: { operationId: 'asyncapi', summary: 'The WebSocket protocol and NATS subjects, AsyncAPI 3.0 (no token)', responses: { 200: { description: 'AsyncAPI 3.0', content: { 'application/json': { schema: { type: 'object' } } } } } } },
      '/api/docs': { get: { operationId: 'docs', summary: 'This API, rendered for people (no token)', responses: { 200: { description: 'HTML', content: { 'text/html': { schema: { type: 'string' } } } } } } },
    },
  };
}

/** The WebSocket protocol and the NATS subjects. */
export function asyncApiDocument(version: string): Json {
  const message = (name: string, title: string, schema: string, extra: Json = {}) => ({ [name]: { name, title, contentType: 'application/json', payload: { $ref: `#/components/schemas/${schema}` }, ...extra } });
  const param = (description: string) => ({ description });
  const nats = (address: string, description: string, messages: Json, parameters?: Json) => ({ address, description, servers: [{ $ref: '#/servers/nats' }], messages, ...(parameters ? { parameters } : {}) });
  return {
    asyncapi: '3.0.0',
    info: {
      title: 'PhotoLab Pipeline WebSocket and NATS',
      version,
      description: 'The edge\'s WebSocket protocol (/ws) and the NATS JetStream subjects between the edge and the stages. docs/api.md and docs/messaging.md explain them. Binary WebSocket frames: 4-byte big-endian length of a JSON header, the header, then the image bytes.',
      license: { name: 'Apache-2.0' },
    },
    defaultContentType: 'application/json',
    servers: {
      edge: { host: 'localhost:8080', protocol: 'ws', pathname: '/ws', description: 'the edge (HTTP_PORT); token in Authorization, ?token= or a first auth message', security: [{ $ref: '#/components/securitySchemes/bearer' }] },
      nats: { host: 'localhost:4222', protocol: 'nats', description: 'NATS with JetStream (NATS_URL; npm start\'s embedded server)' },
    },
    channels: {
      ws: { address: '/ws', title: 'WebSocket', servers: [{ $ref: '#/servers/edge' }], messages: {
        ...message('clientMessage', 'A client message (auth, submit, subscribe, unsubscribe, cancel)', 'ws.client-message'),
        ...message('serverMessage', 'A server message (ready, submitted, subscribed, event, result, canceled, unsubscribed, error)', 'ws.server-message'),
        ...message('resultFrame', 'Header of a binary result frame', 'ws.result-frame', { contentType: 'application/octet-stream' }),
      } },
      stage: nats('photolab.stage.{step}', 'Step messages (stream PHOTOLAB_STAGES, work queue; durable consumer stage-<step>); Nats-Msg-Id <jobId>:<index>', message('jobMessage', 'The routing slip', 'messages.job-message'), { step: param('the step to run') }),
      stepEvents: nats('photolab.events.{jobId}.step', 'A job\'s step facts (stream PHOTOLAB_EVENTS): step.finished, step.skipped, step.retrying, each with its stage run (`run`, a stage_runs row); replayed to re-attaching clients', message('stepEvent', 'A step event', 'messages.job-event'), { jobId: param('the job') }),
      endEvents: nats('photolab.events.{jobId}.end', 'The job\'s one terminal event (stream PHOTOLAB_EVENTS, published with expected last subject sequence 0), with the job\'s row (`summary`)', message('endEvent', 'A terminal event', 'messages.job-event'), { jobId: param('the job') }),
      progress: nats('photolab.progress.{jobId}', 'Live progress, core NATS only (not stored): job.accepted, step.started', message('progressEvent', 'A progress event', 'messages.job-event'), { jobId: param('the job') }),
      deadLetters: nats('photolab.dlq.{step}', 'Messages a step gave up on (stream PHOTOLAB_DLQ)', message('deadLetter', 'A dead letter', 'messages.dead-letter'), { step: param('the step that failed') }),
      audit: nats('photolab.audit.{caseId}', 'Chain-of-custody records (stream PHOTOLAB_EVENTS), to ClickHouse table audit', message('auditRecord', 'An access to evidence', 'messages.audit-record'), { caseId: param('the case') }),
    },
    operations: {
      wsSend: { action: 'send', channel: { $ref: '#/channels/ws' }, summary: 'client to edge', messages: [{ $ref: '#/channels/ws/messages/clientMessage' }] },
      wsReceive: { action: 'receive', channel: { $ref: '#/channels/ws' }, summary: 'edge to client', messages: [{ $ref: '#/channels/ws/messages/serverMessage' }, { $ref: '#/channels/ws/messages/resultFrame' }] },
      runStep: { action: 'receive', channel: { $ref: '#/channels/stage' }, summary: 'a stage takes its step messages', messages: [{ $ref: '#/channels/stage/messages/jobMessage' }] },
      publishStepEvent: { action: 'send', channel: { $ref: '#/channels/stepEvents' }, summary: 'stages store each step\'s fact once', messages: [{ $ref: '#/channels/stepEvents/messages/stepEvent' }] },
      publishEndEvent: { action: 'send', channel: { $ref: '#/channels/endEvents' }, summary: 'whoever ends a job (last step, cancel, deadline, failing step)', messages: [{ $ref: '#/channels/endEvents/messages/endEvent' }] },
      publishProgress: { action: 'send', channel: { $ref: '#/channels/progress' }, summary: 'edge and stages, live only', messages: [{ $ref: '#/channels/progress/messages/progressEvent' }] },
      deadLetter: { action: 'send', channel: { $ref: '#/channels/deadLetters' }, messages: [{ $ref: '#/channels/deadLetters/messages/deadLetter' }] },
      recordAccess: { action: 'send', channel: { $ref: '#/channels/audit' }, summary: 'the edge records each access to evidence before it answers', messages: [{ $ref: '#/channels/audit/messages/auditRecord' }] },
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
      schemas: schemaComponents('#/components/schemas/', 'asyncapi'),
    },
  };
}

/** A self-contained HTML page (no CDN: the edge may have no internet) listing every operation with its schemas. */
export function docsPage(openapi: Json): string {
  const esc = (s: unknown) => String(s ?? '').replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
  const rows: string[] = [];
  for (const [p, methods] of Object.entries(openapi.paths as Json)) {
    for (const [method, op] of Object.entries(methods as Json)) {
      const responses = Object.entries(op.responses ?? {}).map(([status, r]: [string, any]) => `<li><code>${status}</code> ${esc(r.description)}${Object.values(r.content ?? {}).map((c: any) => (c.schema?.$ref ? ` <a href="#${esc(c.schema.$ref.split('/').pop())}">${esc(c.schema.$ref.split('/').pop())}</a>` : '')).join('')}</li>`).join('');
      rows.push(`<section><h3><span class="m">${method.toUpperCase()}</span> <code>${esc(p)}</code></h3><p>${esc(op.summary)}${op.security ? ' <em>(bearer token)</em>' : ''}</p>${(op.parameters ?? []).length ? `<p>parameters: ${op.parameters.map((x: any) => `<code>${esc(x.name)}</code> (${esc(x.in)})`).join(', ')}</p>` : ''}<ul>${responses}</ul></section>`);
    }
  }
  const schemas = Object.entries(openapi.components.schemas as Json).map(([name, s]) => `<details id="${esc(name.split('/').pop())}"><summary><code>${esc(name)}</code> ${esc(s.title ?? '')}</summary><pre>${esc(JSON.stringify(s, null, 2))}</pre></details>`).join('\n');
  return `<!doctype html><html><head><meta charset="utf-8"><title>${esc(openapi.info.title)}</title><style>body{font:15px system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em}code,pre{font:13px ui-monospace,monospace}pre{background:#f6f6f6;padding:1em;overflow:auto}.m{display:inline-block;min-width:4em;color:#fff;background:#357;padding:0 .3em;border-radius:3px}section{border-bottom:1px solid #ddd}</style></head><body><h1>${esc(openapi.info.title)} <small>${esc(openapi.info.version)}</small></h1><p>${esc(openapi.info.description)}</p><p>Machine-readable: <a href="/api/openapi.json">/api/openapi.json</a> (OpenAPI 3.1), <a href="/api/asyncapi.json">/api/asyncapi.json</a> (AsyncAPI 3.0: WebSocket and NATS).</p><h2>Operations</h2>${rows.join('\n')}<h2>Schemas</h2>${schemas}</body></html>`;
}
