/**
 * The API documents served by the real edge: OpenAPI 3.1 validated against the OpenAPI
 * specification's own schema (@seriousme/openapi-schema-validator bundles it), AsyncAPI 3.0
 * against the AsyncAPI specification's JSON Schema (@asyncapi/specs), every route the edge
 * mounts present in the OpenAPI document, every schema file present as a component, and the
 * rendered page. All offline: the specifications' schemas ship in those packages.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, describe, test } from 'node:test';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { Validator } from '@seriousme/openapi-schema-validator';
import { request } from '../helpers/edge-client.js';
import { startSystem, type TestSystem } from '../helpers/system.js';

const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;
const require = createRequire(import.meta.url);

describe('API documents', () => {
  let system: TestSystem;
  let openapi: any;
  let asyncapi: any;

  before(async () => {
    system = await startSystem();
    const o = await request(`${system.baseUrl}/api/openapi.json`);
    assert.equal(o.status, 200);
    openapi = o.body;
    const a = await request(`${system.baseUrl}/api/asyncapi.json`);
    assert.equal(a.status, 200);
    asyncapi = a.body;
  });
  after(async () => {
    await system?.stop();
  });

  test('the OpenAPI document is valid OpenAPI 3.1', async () => {
    assert.equal(openapi.openapi, '3.1.0');
    const validator = new Validator();
    const result = await validator.validate(structuredClone(openapi));
    assert.equal(result.valid, true, JSON.stringify(result.errors, null, 2)?.slice(0, 3000));
    // Every $ref resolves inside the document.
    for (const refValue of refs(openapi)) assert.ok(resolvePointer(openapi, refValue) !== undefined, `unresolved ${refValue}`);
  });

  test('every route the edge mounts is in the OpenAPI document', () => {
    const documented = new Set<string>();
    for (const [p, methods] of Object.entries(openapi.paths as Record<string, object>)) for (const m of Object.keys(methods)) documented.add(`${m} ${p}`);
    const mounted = system.edge.routes
      .filter((r) => r.pattern !== '/*') // the 404 fallback and CORS preflights, not API routes
      .map((r) => `${r.method} ${r.pattern.replace(/:([A-Za-z_]+)/g, '{$1}')}`);
    assert.ok(mounted.length >= 12, JSON.stringify(mounted));
    assert.deepEqual(mounted.filter((r) => !documented.has(r)), []);
    // Mounted only under a setting this system does not have: the development token exists only
    // with the launcher's generated secret (JWT_DEV_SECRET).
    const conditional = new Set(['post /api/dev/token']);
    assert.deepEqual([...documented].filter((r) => !mounted.includes(r) && !conditional.has(r)), [], 'documented but not mounted');
  });

  test('the AsyncAPI document is valid AsyncAPI 3.0 and describes the WebSocket and the NATS subjects', () => {
    assert.equal(asyncapi.asyncapi, '3.0.0');
    const specs = require('@asyncapi/specs') as { schemas: Record<string, object> };
    // The specification's schema embeds the draft-07 meta-schema itself: ajv must not add its own copy.
    const ajv = new Ajv({ strict: false, allErrors: true, meta: false, validateSchema: false });
    addFormats(ajv);
    const validate = ajv.compile(specs.schemas['3.0.0']!);
    assert.equal(validate(asyncapi), true, JSON.stringify(validate.errors, null, 2)?.slice(0, 3000));
    for (const refValue of refs(asyncapi)) assert.ok(resolvePointer(asyncapi, refValue) !== undefined, `unresolved ${refValue}`);
    const addresses = Object.values(asyncapi.channels as Record<string, { address: string }>).map((c) => c.address);
    for (const address of ['/ws', 'photolab.stage.{step}', 'photolab.events.{jobId}.step', 'photolab.events.{jobId}.end', 'photolab.progress.{jobId}', 'photolab.dlq.{step}', 'photolab.audit.{caseId}']) assert.ok(addresses.includes(address), address);
  });

  test('the documents are generated from schemas/: every schema is a component', async () => {
    const { readdirSync, statSync } = await import('node:fs');
    const path = await import('node:path');
    const { schemasDir } = await import('../../services/lib/shared/schemas.js');
    const walk = (dir: string, prefix = ''): string[] => readdirSync(dir).flatMap((n) => (statSync(path.join(dir, n)).isDirectory() ? walk(path.join(dir, n), `${prefix}${n}.`) : n.endsWith('.schema.json') ? [`${prefix}${n.slice(0, -12)}`] : []));
    const names = walk(schemasDir).sort();
    assert.deepEqual(Object.keys(openapi.components.schemas).sort(), names);
    assert.deepEqual(Object.keys(asyncapi.components.schemas).sort(), names);
  });

  test('/api/docs renders the operations for people', async () => {
    const page = await request(`${system.baseUrl}/api/docs`);
    assert.equal(page.status, 200);
    assert.match(page.headers['content-type']!, /^text\/html/);
    const html = page.bytes.toString();
    assert.match(html, /<code>\/api\/jobs\/\{id\}\/result<\/code>/);
    assert.match(html, /href="\/api\/asyncapi.json"/);
  });
});

function refs(value: unknown, out: string[] = []): string[] {
  if (Array.isArray(value)) value.forEach((v) => refs(v, out));
  else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k === '$ref' && typeof v === 'string') out.push(v);
      else refs(v, out);
    }
  }
  return out;
}

function resolvePointer(doc: any, refValue: string): unknown {
  assert.ok(refValue.startsWith('#/'), `not a local ref: ${refValue}`);
  return refValue.slice(2).split('/').reduce((node, part) => node?.[part.replace(/~1/g, '/').replace(/~0/g, '~')], doc);
}
