/**
 * POST /api/dev/token: a development token for the web playground, so that `npm start` with no
 * configuration is usable from a browser without copying the token it prints. Mounted only when
 * the edge verifies with the secret the launcher generated for this session (JWT_DEV_SECRET),
 * never with an operator's JWT_SECRET or JWKS, and answered to loopback callers only, so that
 * an edge listening on 0.0.0.0 does not hand tokens to the network.
 */
import type { TemplatedApp } from 'uWebSockets.js';
import { signDevToken } from '../../../lib/shared/dev-token.js';
import { appError } from '../../../lib/shared/errors.js';
import type { ApiContext } from '../api.js';
import { json, route } from '../uws-http.js';

const DEV_SUB = 'dev';
const DEV_TOKEN_TTL_S = 12 * 3600;

/** uWS writes IPv4 peers as IPv4-mapped IPv6 in full (0000:…:ffff:7f00:0001) or short form. */
export function isLoopback(address: string): boolean {
  const a = address.toLowerCase();
  return a === '::1' || /^(0{1,4}:){7}0{0,3}1$/.test(a) || /^127\./.test(a) || /^(::ffff:|(0{1,4}:){5}ffff:)(127\.|7f[0-9a-f]{2}:)/.test(a);
}

export function mountDevTokenRoute(app: TemplatedApp, ctx: ApiContext, secret: string): void {
  route(app, 'post', '/api/dev/token', async (req) => {
    if (!isLoopback(req.remoteAddress)) throw appError('dev_token_loopback_only', 'development tokens are issued to this machine only (loopback)');
    const now = Math.floor(Date.now() / 1000);
    const token = await signDevToken(secret, { sub: DEV_SUB, ttlS: DEV_TOKEN_TTL_S, issuer: ctx.config.jwtIssuer, audience: ctx.config.jwtAudience, now });
    return json(200, { token, sub: DEV_SUB, expiresAt: new Date((now + DEV_TOKEN_TTL_S) * 1000).toISOString() });
  }, ctx.http);
}
