/**
 * Every error code the product answers with, in one table: its HTTP status, whether trying the
 * same thing again can succeed (the stage runner retries a failed step only then; for a client
 * it says whether to send the request again later), and what it means for a client.
 *
 * The code type is derived from the keys, so a misspelt code is a compile error; appError()
 * (errors.ts) takes status and retryable from here, the PLAYE routes read a failed job's status
 * here, and docs/api.md's error table is generated from it (scripts/error-table.mjs) and checked
 * against it (test/unit/error-catalogue.test.ts).
 */
export interface ErrorSpec {
  status: number;
  retryable: boolean;
  /** One line for clients; the documentation's "meaning" column. */
  meaning: string;
}

export const ERROR_CATALOGUE = {
  // 400: the request is wrong; `details` says where.
  invalid_request: { status: 400, retryable: false, meaning: 'the body or a parameter is not what the route takes; `details` lists the failing paths' },
  invalid_json: { status: 400, retryable: false, meaning: 'the body (or its `pipeline` field) is not valid JSON' },
  json_too_deep: { status: 400, retryable: false, meaning: 'the JSON is nested deeper than `MAX_JSON_DEPTH` levels' },
  pipeline_required: { status: 400, retryable: false, meaning: 'the multipart body has no `pipeline` field' },
  invalid_pipeline: { status: 400, retryable: false, meaning: 'the pipeline is malformed or its steps do not fit together; `details` names the path' },
  unknown_step: { status: 400, retryable: false, meaning: 'the pipeline names a step this server does not have' },
  invalid_params: { status: 400, retryable: false, meaning: 'a step\'s parameters fail its schema, or name a value the step does not know' },
  unknown_option: { status: 400, retryable: false, meaning: 'a PLAYE request has options its endpoint does not know; `details.unknown` lists them' },
  image_required: { status: 400, retryable: false, meaning: 'the request has no image, or an empty one' },
  invalid_base64: { status: 400, retryable: false, meaning: 'the image is not valid base64' },
  invalid_deadline: { status: 400, retryable: false, meaning: '`deadlineMs` is not an integer between 1000 and `JOB_MAX_DEADLINE_MS`' },
  invalid_multipart: { status: 400, retryable: false, meaning: 'the multipart body could not be parsed (check the boundary)' },
  invalid_cursor: { status: 400, retryable: false, meaning: 'the cursor is not one this API gave out; start the listing again without it' },
  invalid_pagination: { status: 400, retryable: false, meaning: 'a listing\'s `limit` or `status` filter is out of range' },
  invalid_case: { status: 400, retryable: false, meaning: 'a case field has a value that cannot be used (`updatedAt` not a date)' },
  invalid_case_id: { status: 400, retryable: false, meaning: '`caseId` is not 1-64 letters, digits, `_` or `-`' },
  case_required: { status: 400, retryable: false, meaning: '`originalSha256` names a case\'s original: `caseId` is needed too' },
  invalid_message: { status: 400, retryable: false, meaning: 'a WebSocket (or bus) message is not JSON or does not match its schema' },
  invalid_frame: { status: 400, retryable: false, meaning: 'a WebSocket binary frame is too short or its header length is wrong' },
  invalid_upgrade: { status: 400, retryable: false, meaning: 'the WebSocket upgrade request could not be accepted' },
  invalid_path: { status: 400, retryable: false, meaning: 'a path parameter is not valid percent-encoded UTF-8' },
  invalid_content_length: { status: 400, retryable: false, meaning: '`Content-Length` is not a byte count' },
  invalid_tiling: { status: 400, retryable: false, meaning: 'tile size, tile overlap, border pad or model scale is out of range' },
  invalid_factor: { status: 400, retryable: false, meaning: 'the upscale factor is out of range' },
  unknown_model: { status: 400, retryable: false, meaning: 'the model asked for is not in the model manifest' },
  invalid_model: { status: 400, retryable: false, meaning: 'the model asked for exists but cannot do this step (say, not a face-restoration model)' },
  unpinned_model: { status: 400, retryable: false, meaning: 'the model has no pinned sha256, so its download cannot be verified (`--allow-unpinned`)' },
  invalid_stats_query: { status: 400, retryable: false, meaning: 'the `/api/stats` parameters are malformed (window, `groupBy`)' },
  invalid_audit_query: { status: 400, retryable: false, meaning: 'the audit query\'s scope or case id is malformed' },
  // 401 / 403: who is asking.
  auth_required: { status: 401, retryable: false, meaning: 'no token was sent; see Authentication' },
  token_invalid: { status: 401, retryable: false, meaning: 'the token is not valid (signature, claims, algorithm, no `exp` or `sub`)' },
  token_expired: { status: 401, retryable: false, meaning: 'the token has expired' },
  dev_token_loopback_only: { status: 403, retryable: false, meaning: '`POST /api/dev/token` from another machine' },
  // 404 / 410: it is not there.
  route_not_found: { status: 404, retryable: false, meaning: 'no such route (or a route switched off here)' },
  job_not_found: { status: 404, retryable: false, meaning: 'no such job, or someone else\'s' },
  blob_not_found: { status: 404, retryable: false, meaning: 'no such upload, or someone else\'s' },
  case_not_found: { status: 404, retryable: false, meaning: 'no such case, or another tenant\'s' },
  evidence_not_found: { status: 404, retryable: false, meaning: 'the case has no original with that sha256' },
  replay_not_found: { status: 404, retryable: false, meaning: 'that job is not a replay of this one' },
  no_download_url: { status: 404, retryable: false, meaning: 'the model has no download address; place its file by hand' },
  blob_missing: { status: 410, retryable: false, meaning: 'the upload or result expired (`BLOB_TTL_S`); case originals do not' },
  // 408 / 413 / 415 / 431: limits and formats of the request itself.
  body_timeout: { status: 408, retryable: true, meaning: 'the body did not arrive within `BODY_TIMEOUT_MS`' },
  payload_too_large: { status: 413, retryable: false, meaning: 'the body or upload is over its byte limit; see Limits' },
  image_too_large: { status: 413, retryable: false, meaning: 'the image has more pixels than `MAX_INPUT_PIXELS`, read from its header' },
  unsupported_media_type: { status: 415, retryable: false, meaning: 'the route does not take this `Content-Type`' },
  url_too_long: { status: 431, retryable: false, meaning: 'the URL is over its byte limit; see Limits' },
  headers_too_large: { status: 431, retryable: false, meaning: 'the headers are over their byte limit; see Limits' },
  // 409: the job's or case's state does not allow it.
  job_not_completed: { status: 409, retryable: true, meaning: 'the job is still pending or running: ask again later (or with `?wait=`)' },
  job_failed: { status: 409, retryable: false, meaning: 'the job failed and has no result; `details.error` says why' },
  job_canceled: { status: 409, retryable: false, meaning: 'the job was canceled and has no result' },
  job_timeout: { status: 409, retryable: false, meaning: 'the job passed its deadline and has no result' },
  job_not_cancelable: { status: 409, retryable: false, meaning: 'the job already ended' },
  idempotency_key_in_use: { status: 409, retryable: true, meaning: 'a request with this `Idempotency-Key` is still being processed; `Retry-After`' },
  case_closed: { status: 409, retryable: false, meaning: 'the case is closed: no new jobs or evidence' },
  // 422: the image cannot be worked on; no retry changes that.
  undecodable_image: { status: 422, retryable: false, meaning: 'the image cannot be decoded' },
  unsupported_format: { status: 422, retryable: false, meaning: 'the image is in a format this server does not read' },
  output_too_large: { status: 422, retryable: false, meaning: 'the result would have more pixels than the server makes (upscale)' },
  frame_size_mismatch: { status: 422, retryable: false, meaning: 'a frame\'s bytes do not match its width x height x channels' },
  // 429: too much at once.
  rate_limited: { status: 429, retryable: true, meaning: 'more requests per minute than `RATE_LIMIT_PER_MINUTE`; `Retry-After`' },
  too_many_jobs: { status: 429, retryable: true, meaning: 'more unfinished jobs than `MAX_CONCURRENT_JOBS`; `Retry-After`' },
  // 5xx: the server's side.
  internal_error: { status: 500, retryable: true, meaning: 'a fault in the server; logged with the request id' },
  no_output: { status: 500, retryable: true, meaning: 'a step (or the job) ended without the output it should give' },
  misrouted_message: { status: 500, retryable: false, meaning: 'a step message reached a stage that does not host its step' },
  chunk_overflow: { status: 500, retryable: true, meaning: 'a stored chunk does not fit the item it belongs to' },
  chunk_missing_bytes: { status: 500, retryable: true, meaning: 'a stored item came back with fewer bytes than it has' },
  blob_corrupt: { status: 500, retryable: true, meaning: 'a stored blob does not match its sha256' },
  evidence_missing: { status: 500, retryable: true, meaning: 'a case\'s original is recorded but its bytes are not stored' },
  cases_unavailable: { status: 500, retryable: false, meaning: 'this edge was started without the case store' },
  manifest_invalid: { status: 500, retryable: false, meaning: 'the model manifest cannot be read or is invalid' },
  model_corrupt: { status: 500, retryable: false, meaning: 'an installed model file does not match its manifest entry; fetch it again' },
  model_load_failed: { status: 500, retryable: false, meaning: 'ONNX Runtime could not load an installed model' },
  model_run_failed: { status: 500, retryable: false, meaning: 'a model failed while running, or gave output of the wrong shape' },
  model_incompatible: { status: 500, retryable: false, meaning: 'a configured model cannot do the step it is set for (its task or input shape)' },
  task_unavailable: { status: 501, retryable: false, meaning: 'a PLAYE task no model here can do (`detectScenes`)' },
  download_failed: { status: 502, retryable: true, meaning: 'a model download did not complete (the server\'s answer or the network); run it again to resume' },
  checksum_mismatch: { status: 502, retryable: false, meaning: 'a downloaded model does not match its pinned size and sha256; it was deleted' },
  bus_unavailable: { status: 503, retryable: true, meaning: 'the edge cannot reach NATS right now (say, while nats-server restarts); `Retry-After: 1`' },
  overloaded: { status: 503, retryable: true, meaning: 'more steps are waiting than `MAX_BACKLOG`; `Retry-After`' },
  model_not_installed: { status: 503, retryable: false, meaning: 'the model (or the step) is not installed on this server' },
  offline: { status: 503, retryable: false, meaning: 'the model\'s download host cannot be reached from this machine' },
  frame_missing: { status: 503, retryable: true, meaning: 'a step\'s input frame is not stored (expired, or kept on a host this process cannot read)' },
  case_store_contention: { status: 503, retryable: true, meaning: 'the case changed too often while it was written; retry' },
  metrics_unavailable: { status: 503, retryable: true, meaning: 'the metrics service did not answer' },
  audit_unavailable: { status: 503, retryable: true, meaning: 'the chain of custody cannot be written or read right now, so the access is refused' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

export const ERROR_CODES = Object.keys(ERROR_CATALOGUE) as ErrorCode[];

/** Codes that arrive as data (a job record, a peer's reply) are checked before they are trusted. */
export const isErrorCode = (code: string): code is ErrorCode => Object.hasOwn(ERROR_CATALOGUE, code);

/** The entry for a code, or undefined for one this build does not know. */
export const errorSpec = (code: string): ErrorSpec | undefined => (isErrorCode(code) ? ERROR_CATALOGUE[code] : undefined);
