/**
 * uWebSockets.js reads UWS_HTTP_MAX_HEADERS_SIZE once, when its native module loads, and
 * answers anything larger with its own bare 431 (no error body, no request id). This module
 * raises that ceiling before the library loads, so that long URLs and huge headers reach the
 * edge, which refuses them itself (MAX_URL_BYTES, MAX_HEADER_BYTES) with the error envelope.
 * Import it before 'uWebSockets.js' in every module that loads the library.
 */
import { settings } from '../../lib/shared/config.js';

if (!process.env.UWS_HTTP_MAX_HEADERS_SIZE) process.env.UWS_HTTP_MAX_HEADERS_SIZE = String(settings.uwsMaxHeadersSize.default);
