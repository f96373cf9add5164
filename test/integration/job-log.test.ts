/**
 * One log line per finished job, on the real system: id, pipeline, status and total ms for a
 * job that succeeds and one that fails, and exactly one line each even with two listeners (two
 * edges share a queue group).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { logFinishedJobs } from '../../services/edge/job-log.js';
import { createLogger } from '../../services/lib/shared/logger.js';
import { fixture } from '../helpers/paths.js';
import { startSystem, waitFor, type TestSystem } from '../helpers/system.js';

describe('job log', () => {
  let system: TestSystem;
  const lines: any[] = [];
  const listeners: { stop(): void }[] = [];

  before(async () => {
    system = await startSystem({ steps: ['decode', 'encode'] });
    const out = new PassThrough();
    let buffered = '';
    out.on('data', (c: Buffer) => {
      buffered += c.toString();
      const parts = buffered.split('\n');
      buffered = parts.pop()!;
      for (const p of parts) lines.push(JSON.parse(p));
    });
    const log = createLogger('edge', { format: 'json', out });
    // Two listeners, as two edges would have: the queue group gives each job to one of them.
    // Their own group, so that the test edge's listener (logging elsewhere) takes none of them.
    listeners.push(logFinishedJobs(system.edge.bus, log, 'test-job-log'), logFinishedJobs(system.edge.bus, log, 'test-job-log'));
    await system.edge.bus.nc.flush();
  });
  after(async () => {
    for (const l of listeners) l.stop();
    await system?.stop();
  });

  test('a finished and a failed job each get one line with id, pipeline, status and ms', async () => {
    const photo = await sharp(readFileSync(fixture('dog.jpg'))).resize(128, 96).jpeg().toBuffer();
    const good = await system.submit(photo, [{ step: 'decode' }, { step: 'encode' }]);
    const bad = await system.submit(Buffer.concat([photo.subarray(0, 200), Buffer.alloc(2000, 7)]), [{ step: 'decode' }, { step: 'encode' }]);
    await system.waitForJob(good.jobId);
    await system.waitForJob(bad.jobId);
    const of = (id: string) => lines.filter((l) => l.jobId === id && l.msg === 'job finished');
    await waitFor(() => of(good.jobId).length > 0 && of(bad.jobId).length > 0, 'both job lines');
    // The job ended before its line: any second line would already be on its way; a flush round-trip lets it land.
    await system.edge.bus.nc.flush();
    const [done] = of(good.jobId);
    assert.equal(of(good.jobId).length, 1);
    assert.deepEqual({ level: done.level, pipeline: done.pipeline, status: done.status }, { level: 30, pipeline: 'decode,encode', status: 'done' });
    assert.equal(typeof done.ms, 'number');
    const [failed] = of(bad.jobId);
    assert.equal(of(bad.jobId).length, 1);
    assert.deepEqual({ level: failed.level, status: failed.status, step: failed.step }, { level: 40, status: 'failed', step: 'decode' });
    assert.match(failed.error, /^[a-z_]+$/);
  });
});
