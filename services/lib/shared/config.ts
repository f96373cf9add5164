/**
 * Every setting of every service, read from environment variables, in one place.
 * The README's configuration table lists the same variables (a unit test keeps them in step).
 */
import os from 'node:os';
import v8 from 'node:v8';
import path from 'node:path';
import { startIdleCollection } from './idle-collection.js';

type Parser<T> = (raw: string, name: string) => T;

interface Setting<T> {
  env: string;
  default: T;
  description: string;
  parse: Parser<T>;
}

const str: Parser<string> = (raw) => raw;
const int: Parser<number> = (raw, name) => {
  const value = Number(raw);
  if (!Number.isInteger(value)) throw new Error(`${name} must be an integer, got "${raw}"`);
  return value;
};
function intFrom(min: number, max: number): Parser<number> {
  return (raw, name) => {
    const value = int(raw, name);
    if (value < min || value > max) throw new Error(`${name} must be between ${min} and ${max}, got ${value}`);
    return value;
  };
}
const bool: Parser<boolean> = (raw, name) => {
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off)$/i.test(raw)) return false;
  throw new Error(`${name} must be true or false, got "${raw}"`);
};
const list: Parser<string[]> = (raw) => raw.split(',').map((s) => s.trim()).filter(Boolean);
function oneOf<T extends string>(...values: T[]): Parser<T> {
  return (raw, name) => {
    if (!values.includes(raw as T)) throw new Error(`${name} must be one of ${values.join(', ')}, got "${raw}"`);
    return raw as T;
  };
}

function setting<T>(env: string, defaultValue: T, parse: Parser<T>, description: string): Setting<T> {
  return { env, default: defaultValue, parse, description };
}

/** The documented settings. Order here is the order of the README table. */
export const settings = {
  natsUrl: setting('NATS_URL', '', str, 'NATS server URL(s), comma-separated. Empty: `npm start` starts its own nats-server (embedded default).'),
  natsPort: setting('NATS_PORT', 4222, int, 'Port of the embedded nats-server (used only when NATS_URL is empty).'),
  natsMaxPayload: setting('NATS_MAX_PAYLOAD', 8 * 1024 * 1024, int, 'max_payload of the embedded nats-server, bytes. Frame chunks are sized to the server\'s actual limit.'),
  natsGoMaxProcs: setting('NATS_GOMAXPROCS', 1, int, 'GOMAXPROCS of the embedded nats-server (0: Go\'s default, every core). 1 by default: on a machine whose cores the models use, a Go scheduler spinning on every core cost nats-server about a quarter more CPU per job (BENCHMARKS.md); one thread carries far more than the stages can produce.'),
  natsRequestTimeoutMs: setting('NATS_REQUEST_TIMEOUT_MS', 10_000, int, 'How long a JetStream publish waits for its ack. A stage whose publish timed out waits for the bus and runs its step again in the same delivery, spending none of its tries (docs/messaging.md).'),
  natsReplicas: setting('NATS_REPLICAS', 1, int, 'Replicas of every stream and KV bucket: 1 on a single nats-server (the embedded default), 3 on a 3-node cluster (a stream survives one server lost). Applied at every start; raising it on an existing topology with nats-server < 2.10 needs `photolab rescale` (docs/deploy.md).'),
  dataDir: setting('DATA_DIR', path.resolve('data'), str, 'Where the embedded nats-server and chDB keep their data.'),
  httpPort: setting('HTTP_PORT', 8080, int, 'Edge HTTP and WebSocket port.'),
  httpHost: setting('HTTP_HOST', '0.0.0.0', str, 'Edge listen address.'),
  jwtSecret: setting('JWT_SECRET', '', str, 'HS256 secret for JWTs. Required by the edge unless JWKS_FILE/JWKS_URL is set; `npm start` generates one for the session and prints a token when empty.'),
  jwtDevSecret: setting('JWT_DEV_SECRET', '', str, 'Set by `npm start` when JWT_SECRET, JWKS_FILE and JWKS_URL are all empty: the HS256 secret it generated for the session. The edge then verifies tokens with it and serves POST /api/dev/token (development tokens for the web playground, loopback callers only). Ignored when JWT_SECRET or a JWKS is set.'),
  jwtIssuer: setting('JWT_ISSUER', '', str, 'Required `iss` claim, when set.'),
  jwtAudience: setting('JWT_AUDIENCE', '', str, 'Required `aud` claim, when set.'),
  jwksFile: setting('JWKS_FILE', '', str, 'Path of a JWKS file for RS256/ES256 tokens.'),
  jwksUrl: setting('JWKS_URL', '', str, 'URL of a JWKS for RS256/ES256 tokens.'),
  jwtClockToleranceS: setting('JWT_CLOCK_TOLERANCE_S', 30, int, 'Leeway for exp/nbf checks, seconds.'),
  jwtRequireExp: setting('JWT_REQUIRE_EXP', true, bool, 'Refuse tokens without an `exp` claim (they would never expire). `false` accepts such legacy tokens (the old backend\'s README recipe made them); a passed token is then still re-checked at least every 60 s.'),
  jwtTenantClaim: setting('JWT_TENANT_CLAIM', 'tenant', str, 'Claim that names the caller\'s tenant.'),
  webPlayground: setting('WEB_PLAYGROUND', true, bool, 'Serve the web playground (built into dist/web by `npm run build`) at `/`.'),
  corsOrigins: setting('CORS_ORIGINS', [] as string[], list, 'Allowed CORS origins, comma-separated; `*` for any; `http://localhost:*` for any port of that host. Empty: no CORS headers. Not set at all under `npm start`: `http://localhost:*,http://127.0.0.1:*`, for a front end on a local dev server (set it empty to have none).'),
  anonymousSubject: setting('ANONYMOUS_SUBJECT', '', str, 'Subject that HTTP requests without any Authorization header act as (for a front end that sends no token, such as PLAYE\'s). Empty: off, they get 401. Only on a loopback HTTP_HOST unless ANONYMOUS_ANY_HOST; requests from a browser origin not in CORS_ORIGINS are not let in; warned about at start.'),
  anonymousAnyHost: setting('ANONYMOUS_ANY_HOST', false, bool, 'Allow ANONYMOUS_SUBJECT on a listener other than loopback (anyone who can reach the port is then that subject).'),
  maxUploadBytes: setting('MAX_UPLOAD_BYTES', 50 * 1024 * 1024, int, 'Largest accepted upload (413 above).'),
  maxInputPixels: setting('MAX_INPUT_PIXELS', 50_000_000, int, 'Largest accepted image, in pixels, checked from the header before decoding.'),
  maxUrlBytes: setting('MAX_URL_BYTES', 8192, int, 'Longest request path plus query the edge accepts (431 with the error body above).'),
  maxHeaderBytes: setting('MAX_HEADER_BYTES', 16 * 1024, int, 'Largest total of request header names and values (431 with the error body above).'),
  uwsMaxHeadersSize: setting('UWS_HTTP_MAX_HEADERS_SIZE', 128 * 1024, int, 'uWebSockets.js\' own limit on a request\'s head (read once when the library loads; the edge sets it when unset). Kept above MAX_URL_BYTES and MAX_HEADER_BYTES so that those refusals come from the edge with the error body; past it (and past the library\'s fixed header count) uWS answers a bare 431.'),
  bodyTimeoutMs: setting('BODY_TIMEOUT_MS', 10_000, int, 'Longest time a request body may take to arrive, from the request head to its last byte (408 body_timeout after, and the connection is closed).'),
  maxJsonBytes: setting('MAX_JSON_BYTES', 1024 * 1024, int, 'Largest JSON body without an image.'),
  maxJsonDepth: setting('MAX_JSON_DEPTH', 32, int, 'Deepest JSON nesting accepted.'),
  jobDeadlineMs: setting('JOB_DEADLINE_MS', 10 * 60_000, int, 'Default time a job may take before it ends as `timeout`.'),
  jobMaxDeadlineMs: setting('JOB_MAX_DEADLINE_MS', 60 * 60_000, int, 'Largest per-job deadline a caller may ask for.'),
  idempotencyStaleMs: setting('IDEMPOTENCY_STALE_MS', 60_000, int, 'How long an Idempotency-Key that names no job record (its submission failed and could not remove the key, as when NATS went away mid-submission) holds back retries with the same key; after that a retry takes the key over.'),
  syncWaitMs: setting('SYNC_WAIT_MS', 25_000, int, 'How long the PLAYE-compatible /api/ai/* endpoints wait for a result before answering 202 (with Retry-After; the same request again joins the job). Keep it below the client\'s own timeout (PLAYE: 30 s), so the answer arrives before the client gives up.'),
  rateLimitPerMinute: setting('RATE_LIMIT_PER_MINUTE', 600, int, 'Requests per caller per minute (429 above).'),
  maxConcurrentJobs: setting('MAX_CONCURRENT_JOBS', 50, int, 'Unfinished jobs per caller (429 above).'),
  maxBacklog: setting('MAX_BACKLOG', 1000, int, 'Pending step messages across stages above which new jobs get 503.'),
  deadlineSweepMs: setting('DEADLINE_SWEEP_MS', 2000, int, 'How often the edge looks for unfinished jobs past their deadline (ends them as `timeout`, even when no stage takes their message).'),
  wsSoftBufferBytes: setting('WS_SOFT_BUFFER_BYTES', 1024 * 1024, int, 'Unsent bytes on a WebSocket above which progress events (job.accepted, step.started, step.retrying) are dropped for that client.'),
  wsHardBufferBytes: setting('WS_HARD_BUFFER_BYTES', 16 * 1024 * 1024, int, 'Unsent bytes on a WebSocket above which the edge closes it with code 4008 instead of buffering more.'),
  stageConcurrency: setting('STAGE_CONCURRENCY', 1, int, 'Messages a stage process works on at once.'),
  ackWaitMs: setting('ACK_WAIT_MS', 30_000, int, 'JetStream ack wait of stage consumers; a step that runs longer keeps its message with in-progress acks.'),
  maxAttempts: setting('MAX_ATTEMPTS', 3, int, 'Tries per step before the job fails and the message goes to the dead-letter subject.'),
  retryDelayMs: setting('RETRY_DELAY_MS', 1000, int, 'Delay before the first retry; doubles each try.'),
  frameTransport: setting('FRAME_TRANSPORT', 'auto' as 'auto' | 'bus' | 'local', oneOf('auto', 'bus', 'local'), 'Where raw frames go between steps: `bus` (JetStream frames stream), `local` (host shared memory only, single host), `auto` (local cache plus the bus for other hosts). `npm start` with its embedded nats-server uses `local` unless set.'),
  frameCacheDir: setting('FRAME_CACHE_DIR', fs_shm(), str, 'Host-local frame cache folder. In memory (tmpfs or ramfs, as /dev/shm) files up to 4 MiB are written and read in the calling thread, larger ones and a disk folder\'s through the thread pool.'),
  frameTtlS: setting('FRAME_TTL_S', 0, int, 'How long intermediate frames live on the bus and in the cache, in seconds. 0: the longest job deadline (JOB_MAX_DEADLINE_MS) and 5 minutes more, so that a step queued until its job\'s deadline still finds its input. A shorter time than that deadline is refused at start.'),
  frameStreamMaxBytes: setting('FRAME_STREAM_MAX_BYTES', 2 * 1024 * 1024 * 1024, int, 'Memory the frames stream may use; oldest frames go first.'),
  frameStorage: setting('FRAME_STORAGE', 'memory' as 'memory' | 'file', oneOf('memory', 'file'), 'Storage of the frames stream.'),
  blobTtlS: setting('BLOB_TTL_S', 7 * 24 * 3600, int, 'How long uploads and results are kept on the blobs stream.'),
  eventsTtlS: setting('EVENTS_TTL_S', 30 * 24 * 3600, int, 'How long a job is kept: its record (photolab-jobs) and its events (PHOTOLAB_EVENTS: status, steps, result, replay for re-attaching clients).'),
  hostId: setting('HOST_ID', os.hostname(), str, 'Identity of this host for the local frame cache.'),
  modelsDir: setting('MODELS_DIR', path.resolve('models/weights'), str, 'Folder of ONNX models (`npm run models -- fetch` fills it).'),
  modelsManifest: setting('MODELS_MANIFEST', '', str, 'Model manifest file (ids, files, checksums, download addresses). Empty: the repository\'s models/manifest.json.'),
  modelsBaseUrl: setting('MODELS_BASE_URL', '', str, '`npm run models -- fetch` downloads <base>/<file> instead of the manifest\'s addresses (a mirror); the checksum is still verified.'),
  onnxProviders: setting('ONNX_PROVIDERS', ['cpu'] as string[], list, 'Execution providers in order of preference: `cuda`, `cpu`.'),
  cudaDeviceId: setting('CUDA_DEVICE_ID', 0, int, 'GPU used by the CUDA provider.'),
  cudaMemLimitBytes: setting('CUDA_MEM_LIMIT_BYTES', 0, int, 'CUDA provider arena limit, bytes (0: no limit).'),
  onnxThreads: setting('ONNX_THREADS', 0, int, 'Intra-op threads per session (0: ONNX Runtime default).'),
  mallocMmapThreshold: setting('MALLOC_MMAP_THRESHOLD_', 64 * 1024 * 1024, int, 'Read by glibc\'s malloc when a process starts, not by the services; `npm start` and the images set it for every service unless it is set. Blocks below this size (frames up to ~20 MP RGB, uploads, tensors) come from the heap and are reused once freed, instead of fresh mmap\'d pages each time: a fresh page cost ~2.8 us to fault in on the development VM where this was measured (~10 us on its later host), ~8.5 ms for one 3 MB frame, and the setting took a per-step 1 MP detection job from 101-107 to 92 ms there (BENCHMARKS.md).'),
  mallocTrimThreshold: setting('MALLOC_TRIM_THRESHOLD_', 256 * 1024 * 1024, int, 'Read by glibc\'s malloc, set with MALLOC_MMAP_THRESHOLD_: free memory at the top of the heap kept for reuse before it is returned to the kernel, bytes.'),
  idleGcMs: setting('IDLE_GC_MS', 5, intFrom(0, 60_000), 'A service that has had nothing in progress (no step, no HTTP request) for this long runs a young-generation collection, ms (0: never). A job\'s big buffers (upload, frames, encoded result) live outside V8\'s heap and are freed only by a collection, which one job at a time never starts: each job then faulted in fresh pages, ~10 us each on the current host, 250-340 per 1 MP job and stage process. Collected when idle, the next job reuses them: 2-4 ms less CPU per job and stage process, and paired with the commit before 0.954x end to end with one process per step, 0.983x fused (BENCHMARKS.md). A busy process never runs it.'),
  heapGrowthPercent: setting('HEAP_GROWTH_PERCENT', 300, intFrom(0, 10_000), 'How far V8 lets a service\'s heap grow past what survived its last full collection before the next one, percent (0: V8\'s own choice). Set by each service at start (V8 takes it only as a flag, which NODE_OPTIONS refuses). V8 chose a limit little above the 11-12 MB that a stage keeps live, so a stage ran a full collection every 6-10 jobs (5-20 ms each, ~2-4 ms per job); with 300 (a limit of 4x the live heap, some 45 MB), one every 35-60 jobs. Under load (runs in turns) that took the CPU per 1 MP detection job from 78-95 to 73-77 ms (BENCHMARKS.md).'),
  onnxSpinWait: setting('ONNX_SPIN_WAIT', false, bool, 'Let ONNX Runtime\'s idle threads spin instead of sleeping. Off by default: spinning threads keep burning CPU after each run, which starves nats-server and the other stages on a shared machine.'),
  stepsDirs: setting('STEPS_DIRS', [] as string[], list, 'Further folders of step modules (comma-separated), each module with its `<step>.schema.json` beside it or beside its source: site-specific steps. Set the same on the edge and on the stages.'),
  faceRestoreFallback: setting('FACE_RESTORE_FALLBACK', '', str, 'Model id used for face enhancement when no restoration model is installed (for example `sr-nomos-compact-x2`). Empty: such jobs are refused.'),
  clickhouseUrl: setting('CLICKHOUSE_URL', '', str, 'ClickHouse HTTP URL. Empty: embedded chDB under DATA_DIR/chdb.'),
  clickhouseUser: setting('CLICKHOUSE_USER', 'default', str, 'ClickHouse user.'),
  clickhousePassword: setting('CLICKHOUSE_PASSWORD', '', str, 'ClickHouse password.'),
  clickhouseDatabase: setting('CLICKHOUSE_DATABASE', 'photolab', str, 'ClickHouse database for metrics.'),
  metricsBatchRows: setting('METRICS_BATCH_ROWS', 500, int, 'Largest metrics insert batch.'),
  metricsBatchMs: setting('METRICS_BATCH_MS', 1000, int, 'Longest wait before a partial metrics batch is inserted.'),
  metricsAckWaitMs: setting('METRICS_ACK_WAIT_MS', 30_000, int, 'Ack wait of the metrics sink\'s consumer: a batch not inserted by then is redelivered.'),
  metricsRetryMaxMs: setting('METRICS_RETRY_MAX_MS', 15_000, int, 'Longest pause between insert retries while ClickHouse is down (metrics wait in the stream).'),
  reportSigningKeyFile: setting('REPORT_SIGNING_KEY_FILE', '', str, 'Ed25519 private key (a JWK, JSON) that signs job reports. Empty: DATA_DIR/report-signing-key.jwk.json, generated on first use. Its public key is served at /.well-known/jwks.json.'),
  gitCommit: setting('GIT_COMMIT', '', str, 'Git commit of this build, for reports. Empty: read with `git rev-parse HEAD` in the working directory at start (unknown without git).'),
  replayWaitMs: setting('REPLAY_WAIT_MS', 120_000, int, 'How long POST /api/jobs/:id/replay waits for the re-run before answering 202 (the comparison is then at GET /api/jobs/:id/replay/:replayJobId).'),
  stageMetricsPort: setting('STAGE_METRICS_PORT', 0, int, 'Port where a stage process serves Prometheus /metrics and its health for probes, /healthz (alive) and /readyz (runners started, NATS answering) (0: off). `npm start` gives the stage processes consecutive ports from this one.'),
  stageFusion: setting('STAGE_FUSION', true, bool, 'A process that hosts several steps runs a job\'s consecutive steps itself, the frame in memory, instead of handing each over the bus.'),
  stageLayout: setting('STAGE_LAYOUT', 'per-step' as 'per-step' | 'fused', oneOf('per-step', 'fused'), '`npm start`: one process per step (`per-step`, each step scales on its own) or STAGE_REPLICAS processes that each host every step (`fused`, lowest latency on one machine).'),
  stages: setting('STAGES', [] as string[], list, 'Steps `npm start` runs a process for (default: all).'),
  stageReplicas: setting('STAGE_REPLICAS', 1, int, 'Processes per step started by `npm start`.'),
  logLevel: setting('LOG_LEVEL', 'info', str, 'pino log level.'),
  logFormat: setting('LOG_FORMAT', 'auto' as 'auto' | 'json' | 'pretty', oneOf('auto', 'json', 'pretty'), 'Log lines: `json` (pino JSON), `pretty` (one readable line each), `auto` (pretty when stdout is a terminal, JSON otherwise).'),
  photolabUrl: setting('PHOTOLAB_URL', '', str, 'The `photolab` CLI\'s edge address. Empty: http://127.0.0.1:HTTP_PORT (the embedded default).'),
  photolabToken: setting('PHOTOLAB_TOKEN', '', str, 'The `photolab` CLI\'s bearer token. Empty: a development token signed with JWT_SECRET or the secret `npm start` keeps in DATA_DIR/dev-jwt-secret.'),
} satisfies Record<string, Setting<unknown>>;

function fs_shm(): string {
  return process.platform === 'linux' ? '/dev/shm/photolab' : path.join(os.tmpdir(), 'photolab-frames');
}

type Settings = typeof settings;
export type Config = { -readonly [K in keyof Settings]: Settings[K]['default'] };

/** Reads the settings from an environment (process.env by default). Throws on malformed values. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const out: Record<string, unknown> = {};
  for (const [key, s] of Object.entries(settings) as [string, Setting<unknown>][]) {
    const raw = env[s.env];
    out[key] = raw === undefined || raw === '' ? s.default : s.parse(raw, s.env);
  }
  const config = out as Config;
  // A frame must outlive every job that may still read it: the frames stream and the host
  // caches drop it after FRAME_TTL_S, and a job may wait in a queue up to its deadline (a 900 s
  // default against a 60 min deadline failed such jobs with frame_missing).
  const longestJobS = Math.ceil(config.jobMaxDeadlineMs / 1000);
  if (config.frameTtlS === 0) config.frameTtlS = longestJobS + FRAME_TTL_MARGIN_S;
  else if (config.frameTtlS < longestJobS) {
    throw new Error(`FRAME_TTL_S (${config.frameTtlS} s) is shorter than the longest job deadline (JOB_MAX_DEADLINE_MS, ${longestJobS} s): a step queued that long would find its input frame gone. Raise FRAME_TTL_S, lower JOB_MAX_DEADLINE_MS, or leave FRAME_TTL_S at 0`);
  }
  return config;
}

/** What FRAME_TTL_S=0 adds to the longest job deadline: a job's last steps past its deadline are refused, not run. */
const FRAME_TTL_MARGIN_S = 300;

// No module-level configuration: a process reads its environment once, in its main, and passes
// the Config to what it starts (libraries never read the environment when they are imported).

/**
 * The collector settings, for the calling process, at its start: V8's heap growth
 * (HEAP_GROWTH_PERCENT; V8 reads the flag whenever it sets the next collection's limit, so it
 * takes effect from the first one) and the collection when idle (IDLE_GC_MS, idle-collection.ts).
 */
export function applyCollectorSettings(config: Pick<Config, 'heapGrowthPercent' | 'idleGcMs'>): void {
  if (config.heapGrowthPercent > 0) v8.setFlagsFromString(`--heap-growing-percent=${config.heapGrowthPercent}`);
  startIdleCollection(config.idleGcMs);
}

/**
 * The allocator settings above, for the environment of a service process about to start (the
 * launcher, the bench cluster): glibc reads them once, at start, so they cannot be applied from
 * inside. A value already in `env` wins.
 */
export function withAllocatorDefaults(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return {
    MALLOC_MMAP_THRESHOLD_: String(settings.mallocMmapThreshold.default),
    MALLOC_TRIM_THRESHOLD_: String(settings.mallocTrimThreshold.default),
    ...env,
  };
}
