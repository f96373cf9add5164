/** The playground's edge routes without a server: who counts as loopback for development tokens. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isLoopback } from '../../services/edge/http/routes/dev-token.js';

test('loopback callers: IPv6 ::1 and IPv4 127/8 in the forms uWS writes them; nothing else', () => {
  for (const a of ['::1', '0000:0000:0000:0000:0000:0000:0000:0001', '127.0.0.1', '127.3.2.1', '::ffff:127.0.0.1', '0000:0000:0000:0000:0000:ffff:7f00:0001']) {
    assert.equal(isLoopback(a), true, a);
  }
  for (const a of ['10.0.0.1', '192.168.1.5', '::ffff:10.0.0.1', '0000:0000:0000:0000:0000:ffff:0a00:0001', 'fe80::1', '2001:db8::1', '0000:0000:0000:0000:0000:0000:0000:0002', '']) {
    assert.equal(isLoopback(a), false, a);
  }
});
