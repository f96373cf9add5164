/** The CLI's pieces without a server: --steps parsing and the progress display on a terminal and in a pipe. */
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { parseSteps } from '../../services/cli/main.js';
import { JobProgress } from '../../services/cli/progress.js';
import type { JobEvent } from '../../services/lib/shared/schema-types.js';

test('--steps: name:param=value:param=value, values JSON when they parse', () => {
  assert.deepEqual(parseSteps('decode,detect_faces,upscale:factor=2,encode:format=png:quality=90'), [
    { step: 'decode' }, { step: 'detect_faces' }, { step: 'upscale', params: { factor: 2 } }, { step: 'encode', params: { format: 'png', quality: 90 } },
  ]);
  assert.deepEqual(parseSteps('detect_objects:classes=["dog","cat"]:minScore=0.4'), [{ step: 'detect_objects', params: { classes: ['dog', 'cat'], minScore: 0.4 } }]);
  assert.throws(() => parseSteps('upscale:factor'), /must be name=value/);
});

function stream(tty: boolean): { out: NodeJS.WriteStream; text: () => string } {
  const out = new PassThrough() as unknown as NodeJS.WriteStream;
  let text = '';
  (out as unknown as PassThrough).on('data', (c: Buffer) => { text += c.toString(); });
  return { out, text: () => text };
}

const events: JobEvent[] = [
  { type: 'step.started', jobId: 'J', at: 1, step: 'decode', index: 0, attempt: 1 },
  { type: 'step.finished', jobId: 'J', at: 2, step: 'decode', index: 0, ms: 12 },
  { type: 'step.started', jobId: 'J', at: 3, step: 'encode', index: 1, attempt: 1 },
  { type: 'step.finished', jobId: 'J', at: 4, step: 'encode', index: 1, ms: 1500 },
  { type: 'job.done', jobId: 'J', at: 5 },
] as JobEvent[];

test('in a pipe: one plain line per event, no escape codes', () => {
  const { out, text } = stream(false);
  const progress = new JobProgress(out, 'J', ['decode', 'encode'], false);
  for (const e of events) progress.event(e);
  progress.stop();
  assert.doesNotMatch(text(), /\x1b/);
  assert.match(text(), /^job J: decode → encode\n\[1\/2\] decode started\n\[1\/2\] decode done in 12 ms\n\[2\/2\] encode started\n\[2\/2\] encode done in 1.50 s\njob done in /);
});

test('on a terminal: one bar per step, redrawn in place, ending all done with times', () => {
  const { out, text } = stream(true);
  const progress = new JobProgress(out, 'J', ['decode', 'encode'], true);
  for (const e of events) progress.event(e);
  progress.stop();
  const frames = text().split('\x1b[2A'); // each redraw moves the cursor up over the two step lines
  const last = frames.at(-1)!.replace(/\x1b\[2K/g, '');
  assert.match(last, /decode {2}█{20} {2}done\s+12 ms/);
  assert.match(last, /encode {2}█{20} {2}done\s+1.50 s/);
  assert.ok(frames.length >= events.length, 'redrawn at each event');
});
