import assert from 'node:assert/strict';
import { test } from 'node:test';
import { idTime, newId } from '../../services/lib/shared/ids.js';

test('ids are 26 Crockford base32 characters, unique, and sort by time', () => {
  const ids = new Set(Array.from({ length: 1000 }, () => newId()));
  assert.equal(ids.size, 1000);
  for (const id of ids) assert.match(id, /^[0-9A-HJKMNP-TV-Z]{26}$/);
  const earlier = newId(1_700_000_000_000);
  const later = newId(1_700_000_000_001);
  assert.ok(earlier < later);
  assert.equal(idTime(earlier), 1_700_000_000_000);
});
