/**
 * `photolab`: the command line for people and scripts (`npx photolab`, `npm run cli --`).
 * Talks to the edge over HTTP and its WebSocket (any URL; the embedded default without one)
 * and, for `tap` and `stages`, to NATS directly. Exit status: 0 ok, 1 the thing failed
 * (a job failed, the edge said no, nothing reachable), 2 bad usage. `--json` prints JSON only.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { discoverServices } from '../lib/bus/micro.js';
import { rescaleStreams } from '../lib/bus/rescale.js';
import { ALL_STREAMS } from '../lib/bus/subjects.js';
import { loadConfig, type Config } from '../lib/shared/config.js';
import type { JobEvent, JobView } from '../lib/shared/schema-types.js';
import { call, CliError, devToken, edgeUrl, errorOf, expect, openEdgeSocket, resolveToken, submitFrame, type Target } from './client.js';
import { formatMs, JobProgress } from './progress.js';
import { isTerminalEvent } from '../lib/shared/job-status.js';
import { isEntryPoint } from '../lib/shared/lifecycle.js';

export const USAGE = `usage: photolab <command> [options]
  token                                   print a development token (embedded default)
  sample <file>                           write a sample photo (.jpg, .png or .webp) to try things with
  submit <file> --steps S [--case ID] [--watch] [-o out]
                                          submit a photo; S is e.g. decode,detect_faces,upscale:factor=2,encode:format=png
                                          (step:param=value:param=value); --watch shows each step live;
                                          -o waits for the job and writes its result
  jobs [--status S] [--limit N]           your jobs, newest first
  show <id>                               a job: steps, findings, provenance
  result <id> -o <file> [--timeout S]     wait for the job, then write its result (never an error body)
  cancel <id>                             cancel a job
  tap [subject...]                        print live bus traffic, decoded (default photolab.events.> photolab.progress.> photolab.stage.>)
  stages                                  the stage services (NATS micro: ping, info, stats)
  rescale                                 give every stream and bucket NATS_REPLICAS replicas by copy
                                          (services stopped; what a start refuses to scale up in place)
  models list|fetch|verify ...            manage ONNX models (photolab models --help)
options: --url URL (PHOTOLAB_URL)  --token T (PHOTOLAB_TOKEN)  --nats URL (NATS_URL)  --json  -h, --help`;


interface Io {
  out: NodeJS.WriteStream;
  err: NodeJS.WriteStream;
}

export async function main(argv: string[], io: Io = { out: process.stdout, err: process.stderr }, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [command, ...rest] = argv;
  if (command === 'models') {
    const models = await import('./models.js');
    return models.main(rest);
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      allowPositionals: true,
      options: {
        url: { type: 'string' },
        token: { type: 'string' },
        nats: { type: 'string' },
        json: { type: 'boolean', default: false },
        steps: { type: 'string' },
        case: { type: 'string' },
        watch: { type: 'boolean', short: 'w', default: false },
        output: { type: 'string', short: 'o' },
        status: { type: 'string' },
        limit: { type: 'string' },
        timeout: { type: 'string' },
        count: { type: 'string' },
        sub: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    return usage(io, (error as Error).message);
  }
  const { values, positionals } = parsed;
  if (!command || command === 'help' || command === '--help' || command === '-h' || values.help) {
    if (!command) return usage(io, 'no command');
    io.out.write(`${USAGE}\n`);
    return 0;
  }
  let config: Config;
  try {
    config = loadConfig(env);
  } catch (error) {
    return usage(io, (error as Error).message);
  }
  const print = (human: string, json: unknown) => io.out.write(values.json ? `${JSON.stringify(json, null, 2)}\n` : `${human}\n`);
  const target = async (): Promise<Target> => ({ url: edgeUrl(config, values.url), token: await resolveToken(config, values.token) });
  try {
    switch (command) {
      case 'token': {
        const token = await devToken(config, values.sub ?? 'dev');
        print(token, { token });
        return 0;
      }
      case 'sample': {
        // A photo to try the pipeline with on a fresh clone (the test photos are not in the repository).
        const file = one(positionals, 'sample needs an output file, e.g. photolab sample photo.jpg');
        const bytes = await samplePhoto(file);
        print(`${file}: ${bytes} bytes, 800x600`, { file, bytes, width: 800, height: 600 });
        return 0;
      }
      case 'submit': {
        const [file] = positionals;
        if (!file || positionals.length > 1) return usage(io, 'submit needs one file');
        if (!values.steps) return usage(io, 'submit needs --steps, e.g. --steps decode,encode:format=png');
        const pipeline = parseSteps(values.steps);
        let image: Buffer;
        try {
          image = readFileSync(file);
        } catch (error) {
          throw new CliError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
        }
        return await submit(await target(), io, { image, pipeline, caseId: values.case, watch: values.watch, output: values.output, json: values.json });
      }
      case 'jobs': {
        const query = new URLSearchParams();
        if (values.status) query.set('status', values.status);
        if (values.limit) query.set('limit', values.limit);
        const page = expect(await call(await target(), `/api/jobs${query.size ? `?${query}` : ''}`), 200) as { jobs: JobView[]; nextCursor?: string };
        print(page.jobs.length === 0 ? 'no jobs' : table(['id', 'status', 'pipeline', 'created', 'time'], page.jobs.map((j) => [
          j.jobId, j.status, (j.pipeline ?? []).map((s) => s.step).join(','), j.createdAt, j.finishedAt ? formatMs(Date.parse(j.finishedAt) - Date.parse(j.createdAt)) : '',
        ])), page);
        return 0;
      }
      case 'show': {
        const id = one(positionals, 'show needs a job id');
        const job = expect(await call(await target(), `/api/jobs/${encodeURIComponent(id)}`), 200) as JobView;
        print(describeJob(job), job);
        return job.status === 'failed' || job.status === 'timeout' ? 1 : 0;
      }
      case 'result': {
        const id = one(positionals, 'result needs a job id');
        if (!values.output) return usage(io, 'result needs -o <file>');
        const timeoutS = values.timeout === undefined ? 600 : Number(values.timeout);
        if (!Number.isFinite(timeoutS) || timeoutS <= 0) return usage(io, `--timeout must be seconds, got "${values.timeout}"`);
        const saved = await fetchResult(await target(), id, values.output, timeoutS);
        print(`${values.output}: ${saved.bytes} bytes ${saved.contentType}${saved.sha256 ? ` sha256 ${saved.sha256}` : ''}`, { jobId: id, file: values.output, ...saved });
        return 0;
      }
      case 'cancel': {
        const id = one(positionals, 'cancel needs a job id');
        const job = expect(await call(await target(), `/api/jobs/${encodeURIComponent(id)}/cancel`, { method: 'POST' }), 200) as JobView;
        print(`${job.jobId}: ${job.status}`, job);
        return 0;
      }
      case 'tap': {
        const count = values.count === undefined ? Infinity : Number(values.count);
        if (!(count > 0)) return usage(io, `--count must be a positive number, got "${values.count}"`);
        return await tap(await natsConnect(config, values.nats), io, positionals.length ? positionals : ['photolab.events.>', 'photolab.progress.>', 'photolab.stage.>'], count, values.json);
      }
      case 'stages': {
        const nc = await natsConnect(config, values.nats);
        try {
          const [infos, stats] = await Promise.all([discoverServices(nc, 'INFO'), discoverServices(nc, 'STATS')]);
          const byId = new Map(stats.map((s: any) => [s.id, s]));
          const services = infos.map((info: any) => ({ ...info, stats: byId.get(info.id) ?? null })).sort((a, b) => a.name.localeCompare(b.name));
          print(services.length === 0 ? 'no stage services answered (is `npm start` running? NATS_URL / --nats)' : table(
            ['name', 'id', 'version', 'subject', 'requests', 'errors', 'avg', 'backlog', 'models', 'provider', 'last error'],
            services.map((s) => {
              const e = s.stats?.endpoints?.[0];
              return [s.name, s.id, s.version, s.endpoints?.[0]?.subject ?? '', String(e?.num_requests ?? ''), String(e?.num_errors ?? ''),
                e ? formatMs(e.average_processing_time / 1e6) : '', String(e?.data?.backlog ?? ''),
                (e?.data?.models ?? []).map((m: { model?: string }) => m.model).join(','), e?.data?.provider ?? '', e?.last_error ?? ''];
            }),
          ), services);
          return 0;
        } finally {
          await nc.close();
        }
      }
      case 'rescale': {
        const nc = await natsConnect(config, values.nats);
        try {
          const jsm = await jetstreamManager(nc);
          const steps = await rescaleStreams(jsm, ALL_STREAMS, config.natsReplicas, { log: values.json ? undefined : (line) => io.err.write(`${line}\n`) });
          print(steps.length === 0 ? `every stream already has ${config.natsReplicas} replica(s)` : table(
            ['stream', 'replicas', 'messages', 'consumers deleted', 'time'],
            steps.map((s) => [s.stream, `${s.from} -> ${s.to}`, String(s.messages), s.consumersDeleted.join(',') || '-', formatMs(s.ms)]),
          ) + '\nThe services make their consumers again when they start.', { replicas: config.natsReplicas, streams: steps });
          return 0;
        } finally {
          await nc.close();
        }
      }
      default:
        return usage(io, `unknown command "${command}"`);
    }
  } catch (error) {
    if (error instanceof CliError) {
      if (error.exitCode === 2) return usage(io, error.message);
      io.err.write(`photolab: ${error.message}\n`);
      return error.exitCode;
    }
    io.err.write(`photolab: ${(error as Error).message}\n`);
    return 1;
  }
}

function usage(io: Io, message: string): number {
  io.err.write(`photolab: ${message}\n${USAGE}\n`);
  return 2;
}

function one(positionals: string[], message: string): string {
  if (positionals.length !== 1) throw new CliError(message, 2);
  return positionals[0]!;
}

/** `decode,upscale:factor=2,encode:format=png:quality=90` → pipeline steps; values are JSON when they parse. */
export function parseSteps(text: string): { step: string; params?: Record<string, unknown> }[] {
  return splitTop(text, ',').map((part) => part.trim()).filter(Boolean).map((part) => {
    const [step, ...pairs] = splitTop(part, ':');
    if (!step) throw new CliError(`empty step in --steps "${text}"`, 2);
    if (pairs.length === 0) return { step };
    const params: Record<string, unknown> = {};
    for (const pair of pairs) {
      const eq = pair.indexOf('=');
      if (eq <= 0) throw new CliError(`parameter "${pair}" of ${step} must be name=value`, 2);
      const raw = pair.slice(eq + 1);
      let value: unknown = raw;
      try {
        value = JSON.parse(raw);
      } catch {
        // a plain word (format=png): a string
      }
      params[pair.slice(0, eq)] = value;
    }
    return { step, params };
  });
}

/** Splits on `separator` outside brackets and quotes, so JSON values (classes=["dog","cat"]) stay whole. */
function splitTop(text: string, separator: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let quoted = false;
  let current = '';
  for (const ch of text) {
    if (ch === '"') quoted = !quoted;
    else if (!quoted && (ch === '[' || ch === '{')) depth++;
    else if (!quoted && (ch === ']' || ch === '}')) depth--;
    if (ch === separator && depth === 0 && !quoted) {
      parts.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  parts.push(current);
  return parts;
}

async function submit(target: Target, io: Io, options: { image: Buffer; pipeline: ReturnType<typeof parseSteps>; caseId?: string; watch: boolean; output?: string; json: boolean }): Promise<number> {
  if (!options.watch) {
    const form = new FormData();
    form.set('file', new Blob([new Uint8Array(options.image)]), 'image');
    form.set('pipeline', JSON.stringify(options.pipeline));
    // In a case, the image is kept as the case's evidence and the job is listed in it.
    if (options.caseId) form.set('caseId', options.caseId);
    const job = expect(await call(target, '/api/jobs', { method: 'POST', body: form }), 200, 202) as JobView;
    if (!options.output) {
      io.out.write(options.json ? `${JSON.stringify(job, null, 2)}\n` : `${job.jobId}\n`);
      return 0;
    }
    const saved = await fetchResult(target, job.jobId, options.output, 600);
    io.out.write(options.json ? `${JSON.stringify({ jobId: job.jobId, file: options.output, ...saved }, null, 2)}\n` : `${job.jobId}: ${options.output} (${saved.bytes} bytes ${saved.contentType})\n`);
    return 0;
  }
  // --watch: submit over the WebSocket, which then streams the job's events as they happen.
  const socket = await openEdgeSocket(target);
  const progressOut = options.json ? io.err : io.out;
  let progress: JobProgress | undefined;
  const steps = options.pipeline.map((s) => s.step);
  const ended = new Promise<{ event: JobEvent; image?: { header: any; bytes: Buffer } }>((resolve, reject) => {
    let final: JobEvent | undefined;
    socket.onMessage((message, binary) => {
      if (binary && message.type === 'result') {
        resolve({ event: final!, image: { header: message, bytes: binary } });
        return;
      }
      if (message.type === 'submitted') progress = new JobProgress(progressOut, message.jobId, steps);
      else if (message.type === 'error') reject(new CliError(`${message.code}: ${message.message}`, 1, message.code));
      else if (message.type === 'event') {
        const event = message.event as JobEvent;
        progress?.event(event);
        if (isTerminalEvent(event.type)) {
          final = event;
          if (event.type !== 'job.done') resolve({ event });
        }
      } else if (message.type === 'result' && final) {
        resolve({ event: final });
      }
    });
    socket.ws.once('close', (code) => reject(new CliError(`the edge closed the WebSocket (code ${code}) before the job ended`)));
  });
  socket.ws.send(submitFrame({ pipeline: options.pipeline, result: options.output ? 'binary' : 'url', ...(options.caseId ? { caseId: options.caseId } : {}) }, options.image));
  try {
    const { event, image } = await ended;
    progress?.stop();
    const jobId = event.jobId;
    if (event.type !== 'job.done') throw new CliError(`job ${jobId} ${event.type.slice(4)}${event.error ? `: ${event.error.code}: ${event.error.message}` : ''}`);
    let saved: { bytes: number; contentType: string; sha256?: string } | undefined;
    if (options.output) {
      if (image) {
        writeFileSync(options.output, image.bytes);
        saved = { bytes: image.bytes.length, contentType: image.header.contentType, sha256: image.header.sha256 };
      } else {
        saved = await fetchResult(target, jobId, options.output, 60);
      }
    }
    const result = event.result;
    if (options.json) io.out.write(`${JSON.stringify({ jobId, status: 'done', result, ...(saved ? { file: options.output, ...saved } : {}) }, null, 2)}\n`);
    else if (saved) io.out.write(`wrote ${options.output} (${saved.bytes} bytes ${saved.contentType})\n`);
    return 0;
  } finally {
    socket.ws.close();
  }
}

/**
 * Waits for the job and writes its result: asks with ?wait= so the edge answers when the job
 * ends (each ask waits at most the edge's SYNC_WAIT_MS); writes the file only on a 200, so an
 * error body never lands in it.
 */
async function fetchResult(target: Target, id: string, file: string, timeoutS: number): Promise<{ bytes: number; contentType: string; sha256?: string }> {
  const until = Date.now() + timeoutS * 1000;
  for (;;) {
    const left = Math.max(1, Math.ceil((until - Date.now()) / 1000));
    const answer = await call(target, `/api/jobs/${encodeURIComponent(id)}/result?wait=${left}`);
    if (answer.status === 200) {
      writeFileSync(file, answer.bytes);
      return { bytes: answer.bytes.length, contentType: answer.headers.get('content-type') ?? '', sha256: answer.headers.get('x-content-sha256') ?? undefined };
    }
    const code = answer.json?.code;
    if (code !== 'job_not_completed') throw errorOf(answer);
    if (Date.now() >= until) throw new CliError(`job ${id} is still ${answer.json?.details?.status ?? 'running'} after ${timeoutS} s (--timeout)`);
  }
}

function describeJob(job: JobView): string {
  const lines = [`job ${job.jobId}  ${job.status}`, `created ${job.createdAt}${job.finishedAt ? `, finished ${job.finishedAt} (${formatMs(Date.parse(job.finishedAt) - Date.parse(job.createdAt))})` : ''}`];
  if (job.input?.sha256) lines.push(`input  ${job.input.bytes} bytes sha256 ${job.input.sha256}`);
  lines.push('steps:');
  const provenance = new Map((job.result?.provenance ?? []).map((p) => [p.index, p]));
  const width = Math.max(...job.steps.map((s) => s.step.length));
  for (const s of job.steps) {
    const params = job.pipeline?.[s.index]?.params;
    const p = provenance.get(s.index);
    const where = p ? [p.model && `model ${p.model}${p.modelSha256 ? ` (${p.modelSha256.slice(0, 12)}…)` : ''}`, p.provider && `on ${p.provider}`, p.worker && `by ${p.worker}`].filter(Boolean).join(', ') : '';
    lines.push(`  ${String(s.index + 1).padStart(2)}. ${s.step.padEnd(width)}  ${s.status.padEnd(8)} ${formatMs(s.ms).padStart(8)}${s.attempt && s.attempt > 1 ? `  attempt ${s.attempt}` : ''}${params && Object.keys(params).length ? `  ${JSON.stringify(params)}` : ''}${where ? `  ${where}` : ''}`);
  }
  const findings = job.result?.findings;
  if (findings?.faces) {
    lines.push(`faces: ${findings.faces.length}`);
    for (const f of findings.faces) lines.push(`  ${JSON.stringify(f.box ?? f).slice(0, 100)} score ${(f as { score?: number }).score?.toFixed(2) ?? '?'}`);
  }
  if (findings?.objects) {
    lines.push(`objects: ${findings.objects.length}`);
    for (const o of findings.objects) lines.push(`  ${(o as { label?: string }).label ?? '?'} score ${(o as { score?: number }).score?.toFixed(2) ?? '?'}`);
  }
  if (job.result?.url) lines.push(`result ${job.result.contentType} ${job.result.bytes} bytes sha256 ${job.result.sha256}  (photolab result ${job.jobId} -o FILE)`);
  if (job.error) lines.push(`error  ${job.error.code}: ${job.error.message}${job.error.step ? ` (step ${job.error.step})` : ''}`);
  return lines.join('\n');
}

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (c ?? '').padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(head.map((h) => h.toUpperCase())), ...rows.map(line)].join('\n');
}

async function natsConnect(config: Config, override?: string): Promise<NatsConnection> {
  const servers = (override || config.natsUrl || `nats://127.0.0.1:${config.natsPort}`).split(',');
  try {
    return await connect({ servers, name: 'photolab-cli', maxReconnectAttempts: 0 });
  } catch (error) {
    throw new CliError(`cannot reach NATS at ${servers.join(',')} (${(error as Error).message}); is \`npm start\` running, or set NATS_URL / --nats`);
  }
}

/** Like `nats sub`: every message on the subjects, decoded (JSON pretty in one line, binary by size). */
async function tap(nc: NatsConnection, io: Io, subjects: string[], count: number, json: boolean): Promise<number> {
  let seen = 0;
  const done = new Promise<void>((resolve) => {
    const onSignal = () => resolve();
    process.once('SIGINT', onSignal);
    for (const subject of subjects) {
      nc.subscribe(subject, {
        callback: (error, msg) => {
          if (error || seen >= count) return;
          seen++;
          const text = msg.data.length > 0 && msg.data[0] === 0x7b ? safeJson(msg.string()) : undefined;
          const headers: Record<string, string> = {};
          for (const [k, v] of msg.headers ?? []) headers[k] = v.join(',');
          if (json) io.out.write(`${JSON.stringify({ subject: msg.subject, headers, data: text ?? null, bytes: msg.data.length })}\n`);
          else io.out.write(`[${new Date().toISOString().slice(11, 23)}] ${msg.subject}  ${text !== undefined ? summarize(msg.subject, text) : `<${msg.data.length} bytes binary>`}\n`);
          if (seen >= count) {
            process.off('SIGINT', onSignal);
            resolve();
          }
        },
      });
    }
  });
  await nc.flush();
  if (!json) io.err.write(`listening on ${subjects.join(' ')} (Ctrl-C stops)\n`);
  await done;
  await nc.close();
  return 0;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Events and step messages in a few words, the rest as JSON. */
function summarize(subject: string, value: any): string {
  if ((subject.startsWith('photolab.events.') || subject.startsWith('photolab.progress.')) && value?.type) {
    return `${value.type}${value.step ? ` ${value.step}` : ''}${value.index !== undefined ? ` [${value.index + 1}${value.steps ? `/${value.steps}` : ''}]` : ''}${value.ms !== undefined ? ` ${formatMs(value.ms)}` : ''}${value.error ? ` ${value.error.code}` : ''}`;
  }
  if (subject.startsWith('photolab.stage.') && value?.pipeline) {
    return `job ${value.jobId} step ${value.index + 1}/${value.pipeline.length} ${value.pipeline.map((s: { step: string }) => s.step).join('→')}`;
  }
  return JSON.stringify(value).slice(0, 300);
}


if (isEntryPoint(import.meta.url)) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}

/** An 800x600 picture drawn from SVG: gradients, shapes and text, enough texture for every step. */
async function samplePhoto(file: string): Promise<number> {
  const { default: sharp } = await import('sharp');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="800" height="600">
    <defs><linearGradient id="sky" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="#3a7bd5"/><stop offset="1" stop-color="#f4d03f"/></linearGradient>
    <radialGradient id="sun"><stop offset="0" stop-color="#fff7c0"/><stop offset="1" stop-color="#f39c12"/></radialGradient></defs>
    <rect width="800" height="600" fill="url(#sky)"/><circle cx="620" cy="140" r="70" fill="url(#sun)"/>
    <path d="M0 420 L180 260 L330 400 L480 230 L800 430 L800 600 L0 600 Z" fill="#2e4d3a"/>
    <rect x="90" y="430" width="160" height="110" fill="#8e5b3a"/><path d="M70 430 L170 360 L270 430 Z" fill="#b03a2e"/>
    <rect x="150" y="480" width="40" height="60" fill="#3b2a1a"/>
    <text x="400" y="570" font-family="sans-serif" font-size="36" fill="#ffffff" text-anchor="middle">PhotoLab sample</text>
  </svg>`;
  const image = sharp(Buffer.from(svg));
  const ext = file.toLowerCase().split('.').pop();
  const bytes = await (ext === 'png' ? image.png() : ext === 'webp' ? image.webp() : image.jpeg({ quality: 90 })).toBuffer();
  writeFileSync(file, bytes);
  return bytes.length;
}
