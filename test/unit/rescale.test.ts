import assert from 'node:assert/strict';
import { test } from 'node:test';
import { scaleUpInPlaceIsUnsafe } from '../../services/lib/bus/rescale.js';

test('an in-place scale-up is refused on nats-server 2.9 and older, or when the version is unknown', () => {
  for (const version of ['2.9.10', '2.9.25', '2.2.0', '1.4.1', undefined, '', 'v-next']) assert.equal(scaleUpInPlaceIsUnsafe(version), true, String(version));
  for (const version of ['2.10.0', '2.10.24', '2.11.1', '3.0.0']) assert.equal(scaleUpInPlaceIsUnsafe(version), false, version);
});
