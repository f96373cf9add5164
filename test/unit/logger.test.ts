/** Log lines: JSON without repeated keys when not a terminal, one readable line when pretty. */
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { createLogger, prettyLine } from '../../services/lib/shared/logger.js';

function capture(format: 'json' | 'pretty') {
  const out = new PassThrough();
  let text = '';
  out.on('data', (c: Buffer) => { text += c.toString(); });
  return { log: createLogger('stage-encode', { format, out }), text: () => text };
}

test('JSON lines have each key once, the call\'s value winning over the child\'s', () => {
  const { log, text } = capture('json');
  log.child({ step: 'encode' }).info({ step: 'encode', concurrency: 1 }, 'stage consuming');
  const line = text().trim();
  assert.equal(line.match(/"step"/g)?.length, 1, line);
  assert.equal(line.match(/"service"/g)?.length, 1, line);
  assert.equal(line.match(/"name"/g), null, line);
  const entry = JSON.parse(line);
  assert.equal(entry.msg, 'stage consuming');
  assert.equal(entry.service, 'stage-encode');
  assert.equal(entry.level, 30);
});

test('pretty lines: time, level, service, message, then the fields', () => {
  const { log, text } = capture('pretty');
  log.info({ jobId: '01ABC', pipeline: 'decode,encode', status: 'done', ms: 12 }, 'job finished');
  // eslint-disable-next-line no-control-regex
  const plain = text().replace(/\x1b\[\d+m/g, '');
  assert.match(plain, /^\d\d:\d\d:\d\d\.\d{3} INFO  stage-encode\s+job finished jobId=01ABC pipeline=decode,encode status=done ms=12\n$/);
  assert.equal(plain.split('\n').length, 2);
  assert.match(prettyLine({ level: 50, time: 0, msg: 'x', err: { message: 'boom', stack: 'Error: boom\n    at y' } }).replace(/\x1b\[\d+m/g, ''), /ERROR .* x err="boom"\nError: boom/);
});
