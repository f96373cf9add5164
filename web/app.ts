/**
 * The web playground: sign in, pick a photo, compose a pipeline from the step schemas the edge
 * serves (GET /api/steps), run it over the WebSocket with live per-step progress, see and
 * download the results, list the caller's jobs, and watch the stats and stage health.
 *
 * Everything the page knows about steps comes from the edge, and parameters are checked with
 * ajv against those same schemas, so the page says what the API would say before submitting.
 * Every API error is shown with its code and message; nothing fails silently.
 */
import { Ajv, type ValidateFunction } from 'ajv';
import type {
  DetectedObject, DevTokenResponse, Face, HealthResponse, JobEvent, JobListResponse, JobView, PipelineStep, StatsResponse,
  StepDescription, StepsResponse, WsServerMessage,
} from '../services/lib/shared/schema-types.js';

// ---------- small helpers ----------

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing element #${id}`);
  return el as T;
};
function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  el.append(...children);
  return el;
}
const SVG = 'http://www.w3.org/2000/svg';
function s(tag: string, attrs: Record<string, string | number> = {}, text?: string): SVGElement {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}
const fmtBytes = (n: number) => (n < 1024 ? `${n} B` : n < 1024 ** 2 ? `${(n / 1024).toFixed(1)} KB` : `${(n / 1024 ** 2).toFixed(2)} MB`);
const fmtMs = (ms: number | undefined) => (ms === undefined ? '' : ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`);

class ApiError extends Error {
  constructor(readonly code: string, message: string, readonly status: number, readonly details?: unknown) {
    super(message);
  }
}

// ---------- errors: always visible, never a blank page ----------

function showError(error: unknown): void {
  const e = error instanceof ApiError ? error : new ApiError('client_error', error instanceof Error ? error.message : String(error), 0);
  $('error-code').textContent = e.code;
  $('error-message').textContent = e.message + detailsText(e.details);
  $('error').dataset.code = e.code;
  $('error').hidden = false;
}
function detailsText(details: unknown): string {
  if (!Array.isArray(details)) return '';
  const paths = details.filter((d) => d && typeof d === 'object' && 'path' in d).map((d) => `${d.path} ${d.message}`);
  return paths.length > 1 ? ` (${paths.join('; ')})` : '';
}
function clearError(): void {
  $('error').hidden = true;
  delete $('error').dataset.code;
}
window.addEventListener('error', (e) => showError(e.error ?? e.message));
window.addEventListener('unhandledrejection', (e) => showError(e.reason));

// ---------- API ----------

const TOKEN_KEY = 'photolab.token';
let token = localStorage.getItem(TOKEN_KEY) ?? '';

async function api<T>(path: string, init: RequestInit = {}, auth = true): Promise<T> {
  const headers = new Headers(init.headers);
  if (auth && token) headers.set('authorization', `Bearer ${token}`);
  let response: Response;
  try {
    response = await fetch(path, { ...init, headers });
  } catch (error) {
    throw new ApiError('network_error', `the edge cannot be reached (${(error as Error).message})`, 0);
  }
  if (!response.ok) throw await errorOf(response);
  return (response.headers.get('content-type') ?? '').includes('json') ? response.json() as Promise<T> : response.blob() as Promise<T>;
}
async function errorOf(response: Response): Promise<ApiError> {
  try {
    const body = await response.json() as { code?: string; message?: string; details?: unknown };
    if (response.status === 401) onUnauthorized();
    return new ApiError(body.code ?? `http_${response.status}`, body.message ?? response.statusText, response.status, body.details);
  } catch {
    return new ApiError(`http_${response.status}`, `${response.status} ${response.statusText}`, response.status);
  }
}
function onUnauthorized(): void {
  // A stale or wrong token: ask for another, keep the page as it is.
  $('signin').hidden = false;
}

// ---------- sign in ----------

let steps: StepDescription[] = [];
const validators = new Map<string, ValidateFunction>();

async function signIn(newToken: string): Promise<void> {
  token = newToken.trim();
  const described = await api<StepsResponse>('/api/steps'); // also proves the token works
  localStorage.setItem(TOKEN_KEY, token);
  steps = described.steps;
  // No useDefaults: the page shows what the user chose; the edge fills in the defaults.
  const ajv = new Ajv({ allErrors: true, strict: false });
  validators.clear();
  for (const step of steps) validators.set(step.step, ajv.compile(step.params));
  const sub = subOf(token);
  $('signed-in').textContent = `signed in as ${sub}`;
  $('whoami').hidden = false;
  $('signin').hidden = true;
  fillStepChoices();
  if (pipeline.length === 0) applyPreset('detect-objects');
  renderPipeline();
  showTab(currentTab);
  socket?.close();
  socket = undefined;
  const jobId = new URLSearchParams(location.search).get('job');
  // Signed in either way: a job that cannot be opened is an error about the job, not the token.
  if (jobId) {
    void openJob(jobId).catch((error) => {
      showError(error);
      const url = new URL(location.href);
      url.searchParams.delete('job');
      history.replaceState(null, '', url);
    });
  }
}
function subOf(jwt: string): string {
  try {
    return JSON.parse(atob(jwt.split('.')[1]!.replace(/-/g, '+').replace(/_/g, '/'))).sub ?? '?';
  } catch {
    return '?';
  }
}
function signOut(): void {
  localStorage.removeItem(TOKEN_KEY);
  token = '';
  socket?.close();
  socket = undefined;
  $('whoami').hidden = true;
  $('signin').hidden = false;
  for (const id of ['panel-run', 'panel-jobs', 'panel-stats']) $(id).hidden = true;
}

// ---------- photo ----------

let photo: { file: Blob; name: string; width: number; height: number; url: string } | undefined;

async function choosePhoto(file: File | Blob, name: string): Promise<void> {
  const url = URL.createObjectURL(file);
  const img = $<HTMLImageElement>('photo-thumb');
  img.src = url;
  try {
    await img.decode();
  } catch {
    // The browser cannot show it (TIFF, say); the edge may still decode it.
  }
  if (photo) URL.revokeObjectURL(photo.url);
  photo = { file, name, width: img.naturalWidth, height: img.naturalHeight, url };
  $('photo-info').textContent = `${name} — ${fmtBytes(file.size)}${img.naturalWidth ? ` — ${img.naturalWidth} × ${img.naturalHeight}` : ''}`;
  $('photo').hidden = false;
  renderProblems();
}

// ---------- pipeline editor ----------

interface Item { step: string; params: Record<string, unknown>; when?: string }

/**
 * The editor's condition menu shows the older string spellings; a job's generic condition
 * ({found: kind}) is shown by its string when it has one, else as its JSON (sent back as is).
 */
function conditionText(when: NonNullable<PipelineStep['when']>): string {
  if (typeof when === 'string') return when;
  if ('found' in when) return when.found === 'faces' ? 'faces_found' : when.found === 'objects' ? 'objects_found' : JSON.stringify(when);
  return when.notFound === 'faces' ? 'no_faces_found' : JSON.stringify(when);
}

function conditionValue(text: string): PipelineStep['when'] {
  return (text.startsWith('{') ? JSON.parse(text) : text) as PipelineStep['when'];
}
let pipeline: Item[] = [];
const WHEN = ['always', 'faces_found', 'no_faces_found', 'objects_found'];

const PRESETS: Record<string, Item[]> = {
  upscale: [{ step: 'decode', params: {} }, { step: 'upscale', params: { factor: 2 } }, { step: 'encode', params: {} }],
  denoise: [{ step: 'decode', params: {} }, { step: 'denoise', params: { level: 'medium' } }, { step: 'encode', params: {} }],
  'face-enhance': [{ step: 'decode', params: {} }, { step: 'detect_faces', params: {} }, { step: 'enhance_faces', params: {} }, { step: 'encode', params: {} }],
  'detect-faces': [{ step: 'decode', params: {} }, { step: 'detect_faces', params: {} }],
  'detect-objects': [{ step: 'decode', params: {} }, { step: 'detect_objects', params: {} }],
};

function applyPreset(name: string): void {
  pipeline = structuredClone(PRESETS[name] ?? []).filter((item) => steps.some((s) => s.step === item.step));
  renderPipeline();
}

function fillStepChoices(): void {
  const select = $<HTMLSelectElement>('add-step-select');
  select.replaceChildren(...steps.map((s) => h('option', { value: s.step }, s.step)));
}

function addStep(step: string): void {
  const desc = steps.find((s) => s.step === step);
  if (!desc) return;
  // Put it where it fits: decode first, encode last, frame steps before a trailing encode.
  if (desc.input === 'encoded') pipeline.unshift({ step, params: {} });
  else if (desc.output === 'encoded' || pipeline.at(-1)?.step !== 'encode') pipeline.push({ step, params: {} });
  else pipeline.splice(pipeline.length - 1, 0, { step, params: {} });
  renderPipeline();
}

function renderPipeline(): void {
  const list = $('steps');
  list.replaceChildren(...pipeline.map((item, i) => stepCard(item, i)));
  renderProblems();
}

function stepCard(item: Item, i: number): HTMLLIElement {
  const desc = steps.find((s) => s.step === item.step);
  const up = h('button', { type: 'button', class: 'move-up', 'aria-label': `move ${item.step} up` }, '↑');
  const down = h('button', { type: 'button', class: 'move-down', 'aria-label': `move ${item.step} down` }, '↓');
  const remove = h('button', { type: 'button', class: 'remove', 'aria-label': `remove ${item.step}` }, 'Remove');
  up.disabled = i === 0;
  down.disabled = i === pipeline.length - 1;
  const move = (to: number) => {
    const [moved] = pipeline.splice(i, 1);
    pipeline.splice(to, 0, moved!);
    renderPipeline();
    (document.querySelector(`#steps li[data-index="${to}"] .${to < i ? 'move-up' : 'move-down'}`) as HTMLElement | null)?.focus();
  };
  up.onclick = () => move(i - 1);
  down.onclick = () => move(i + 1);
  remove.onclick = () => {
    pipeline.splice(i, 1);
    renderPipeline();
  };
  const head = h('div', { class: 'step-head' }, h('strong', {}, `${i + 1}. ${item.step}`), up, down, remove);
  const li = h('li', { class: 'step-card', 'data-step': item.step, 'data-index': String(i) }, head);
  const desc2 = (desc?.params as { description?: string } | undefined)?.description;
  if (desc2) li.append(h('p', { class: 'muted' }, desc2));
  const params = h('div', { class: 'params' });
  const properties = ((desc?.params as { properties?: Record<string, JsonSchema> } | undefined)?.properties) ?? {};
  for (const [name, schema] of Object.entries(properties)) params.append(paramInput(item, i, name, schema));
  if (desc?.conditional) {
    // A job's generic condition that has no string spelling gets an option of its own.
    const choices = item.when && !(WHEN as readonly string[]).includes(item.when) ? [...WHEN, item.when] : WHEN;
    const select = h('select', { 'data-param': 'when', id: `p${i}-when` }, ...choices.map((w) => h('option', { value: w === 'always' ? '' : w }, w)));
    select.value = item.when ?? '';
    select.onchange = () => {
      if (select.value) item.when = select.value;
      else delete item.when;
      renderProblems();
    };
    params.append(h('label', { for: `p${i}-when` }, 'when (condition)', select));
  }
  if (params.childElementCount) li.append(params);
  return li;
}

interface JsonSchema {
  type?: string | string[];
  enum?: unknown[];
  default?: unknown;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  description?: string;
  items?: JsonSchema;
}

function paramInput(item: Item, i: number, name: string, schema: JsonSchema): HTMLElement {
  const id = `p${i}-${name}`;
  const hint = schema.default !== undefined ? `default ${JSON.stringify(schema.default)}` : 'optional';
  let control: HTMLInputElement | HTMLSelectElement;
  const current = item.params[name];
  const set = (value: unknown) => {
    if (value === undefined) delete item.params[name];
    else item.params[name] = value;
    renderProblems();
  };
  if (schema.type === 'array' && schema.items?.enum) {
    const select = h('select', { multiple: '' }, ...schema.items.enum.map((v) => h('option', { value: String(v) }, String(v))));
    for (const option of select.options) option.selected = Array.isArray(current) && current.includes(option.value);
    select.onchange = () => {
      const chosen = [...select.selectedOptions].map((o) => o.value);
      set(chosen.length ? chosen : undefined);
    };
    control = select;
  } else if (schema.enum || schema.type === 'boolean') {
    const values = schema.enum ?? [true, false];
    const select = h('select', {}, h('option', { value: '' }, `(${hint})`), ...values.map((v) => h('option', { value: JSON.stringify(v) }, String(v))));
    select.value = current === undefined ? '' : JSON.stringify(current);
    select.onchange = () => set(select.value === '' ? undefined : JSON.parse(select.value));
    control = select;
  } else if (schema.type === 'number' || schema.type === 'integer') {
    const input = h('input', { type: 'number', inputmode: 'decimal', placeholder: hint, step: schema.type === 'integer' ? '1' : 'any' });
    if (schema.minimum !== undefined) input.min = String(schema.minimum);
    if (schema.exclusiveMinimum !== undefined) input.min = String(schema.exclusiveMinimum);
    if (schema.maximum !== undefined) input.max = String(schema.maximum);
    input.value = current === undefined ? '' : String(current);
    // Sent as typed; a value out of range is shown as the API would refuse it.
    input.oninput = () => set(input.value === '' ? undefined : Number(input.value));
    control = input;
  } else {
    const input = h('input', { type: 'text', placeholder: hint });
    input.value = current === undefined ? '' : String(current);
    input.oninput = () => set(input.value === '' ? undefined : input.value);
    control = input;
  }
  control.id = id;
  control.dataset.param = name;
  const label = h('label', { for: id, title: schema.description ?? '' }, name, control);
  return label;
}

/** The checks the edge makes (runner/pipeline.ts), with the same paths in the messages. */
function pipelineProblems(): { index: number; path: string; message: string }[] {
  const problems: { index: number; path: string; message: string }[] = [];
  if (pipeline.length === 0) problems.push({ index: -1, path: '/pipeline', message: 'add at least one step (decode first)' });
  let previous: string | undefined;
  pipeline.forEach((item, i) => {
    const at = `/pipeline/${i}`;
    const desc = steps.find((s) => s.step === item.step);
    if (!desc) {
      problems.push({ index: i, path: `${at}/step`, message: 'unknown step' });
      return;
    }
    const validate = validators.get(item.step)!;
    if (!validate(item.params)) {
      for (const e of validate.errors ?? []) {
        const extra = e.keyword === 'enum' ? `: ${(e.params as { allowedValues: unknown[] }).allowedValues.join(', ')}` : '';
        problems.push({ index: i, path: `${at}/params${e.instancePath}`, message: `${e.message ?? 'invalid'}${extra}` });
      }
    }
    const expected = i === 0 ? 'encoded' : previous;
    if (desc.input !== expected) {
      const why = i === 0 ? 'a pipeline starts with decode' : desc.input === 'encoded' ? `"${item.step}" needs an encoded image, but it follows a step that gives raw pixels` : `"${item.step}" needs raw pixels, but "${pipeline[i - 1]!.step}" gives an encoded image (encode must be last)`;
      problems.push({ index: i, path: `${at}/step`, message: why });
    }
    previous = desc.output;
  });
  return problems;
}

function renderProblems(): void {
  const problems = pipelineProblems();
  $('pipeline-errors').replaceChildren(...problems.map((p) => h('li', {}, `${p.path}: ${p.message}`)));
  document.querySelectorAll<HTMLElement>('#steps .step-card').forEach((card) => card.classList.toggle('invalid', problems.some((p) => p.index === Number(card.dataset.index))));
  const submit = $<HTMLButtonElement>('submit');
  submit.disabled = problems.length > 0 || !photo;
  submit.title = !photo ? 'choose a photo first' : problems.length ? 'fix the pipeline first' : '';
}

function pipelineToSend(): PipelineStep[] {
  return pipeline.map((item) => ({ step: item.step, ...(Object.keys(item.params).length ? { params: item.params } : {}), ...(item.when ? { when: conditionValue(item.when) } : {}) }));
}

// ---------- WebSocket ----------

interface Socket { ws: WebSocket; ready: Promise<void>; close(): void }
let socket: Socket | undefined;

function connect(): Socket {
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`);
  ws.binaryType = 'arraybuffer';
  let closedByUs = false;
  const ready = new Promise<void>((resolve, reject) => {
    // The token goes in the first message, not the URL, so it stays out of access logs.
    ws.onopen = () => ws.send(JSON.stringify({ type: 'auth', token }));
    ws.onmessage = (m) => {
      if (typeof m.data !== 'string') return;
      const message = JSON.parse(m.data) as WsServerMessage;
      if (message.type === 'ready') resolve();
      else onServerMessage(message);
    };
    ws.onclose = (e) => {
      reject(new ApiError('ws_closed', `WebSocket closed (${e.code}${e.reason ? ` ${e.reason}` : ''})`, 0));
      if (socket?.ws === ws) socket = undefined;
      if (closedByUs) return;
      if (e.code === 4001) return onUnauthorized();
      // Dropped (slow consumer 4008, a restart): re-attach the job being watched; its events replay.
      if (job && !isFinal(job.status)) setTimeout(() => void watch(job!.jobId).catch(showError), 1000);
    };
  });
  ready.catch(() => undefined);
  return { ws, ready, close: () => { closedByUs = true; ws.close(); } };
}

async function ensureSocket(): Promise<WebSocket> {
  socket ??= connect();
  await socket.ready;
  return socket.ws;
}

function onServerMessage(message: WsServerMessage): void {
  switch (message.type) {
    case 'submitted':
      startJob(message.jobId!, pipelineToSend());
      if (pendingInput) void saveInput(message.jobId!, pendingInput);
      return;
    case 'event':
      if (job && message.event!.jobId === job.jobId) {
        // Counted for people and tests alike: after a reload, live events prove the page re-attached mid-job.
        const timeline = $('timeline');
        const kind = message.replayed ? 'replayed' : 'live';
        timeline.dataset[kind] = String(Number(timeline.dataset[kind] ?? 0) + 1);
        onEvent(message.event as JobEvent);
      }
      return;
    case 'result':
      if (job && message.jobId === job.jobId) void showResults(job.jobId).catch(showError);
      return;
    case 'error':
      showError(new ApiError(message.code!, message.message!, message.status ?? 0, message.details));
      return;
    default:
  }
}

// ---------- the job being watched ----------

interface StepState { step: string; status: string; ms?: number; startedAt?: number; finishedAt?: number; attempt?: number; reason?: string }
interface JobState { jobId: string; status: string; steps: StepState[]; acceptedAt?: number }
let job: JobState | undefined;
let pendingInput: Blob | undefined;
const isFinal = (status: string) => ['done', 'failed', 'canceled', 'timeout'].includes(status);

function startJob(jobId: string, items: { step: string }[]): void {
  job = { jobId, status: 'pending', steps: items.map((item) => ({ step: item.step, status: 'pending' })) };
  const url = new URL(location.href);
  url.searchParams.set('job', jobId);
  history.replaceState(null, '', url);
  $('job').hidden = false;
  // Nothing of the previous job stays on screen.
  $('results').hidden = true;
  $('detections').hidden = true;
  $('compare').hidden = true;
  $('download-result').hidden = true;
  $('overlay').replaceChildren();
  $('result-info').textContent = '';
  delete $('result-info').dataset.width;
  delete $('result-info').dataset.height;
  drawnFor = '';
  $('job-error').hidden = true;
  $('job-id').textContent = jobId;
  delete $('timeline').dataset.live;
  delete $('timeline').dataset.replayed;
  renderJob();
}

function onEvent(event: JobEvent): void {
  if (!job) return;
  const step = event.index !== undefined ? job.steps[event.index] : undefined;
  switch (event.type) {
    case 'job.accepted': job.acceptedAt = event.at; break;
    case 'step.started': if (step) Object.assign(step, { status: 'running', startedAt: event.at, attempt: event.attempt }); job.status = 'running'; break;
    case 'step.finished':
      if (step) Object.assign(step, { status: 'done', ms: event.ms, finishedAt: event.at });
      // Detections arrive as the step finishes, before the job ends: draw them now.
      if (event.findings?.objects || event.findings?.faces) void drawDetections(job.jobId, event.findings.objects ?? [], event.findings.faces ?? []);
      break;
    case 'step.skipped': if (step) Object.assign(step, { status: 'skipped', reason: event.reason }); break;
    case 'step.retrying': if (step) Object.assign(step, { status: 'retrying', reason: event.error?.message ?? event.reason }); break;
    case 'job.done': job.status = 'done'; break;
    case 'job.failed': case 'job.canceled': case 'job.timeout': {
      job.status = event.type.slice(4);
      for (const s2 of job.steps) {
        if (s2.status === 'running') s2.status = job.status === 'failed' ? 'failed' : job.status; // its output is discarded
        else if (s2.status === 'pending') s2.status = 'not run';
      }
      if (event.error) {
        $('job-error').textContent = `${event.error.code}: ${event.error.message}${event.error.step ? ` (step ${event.error.step})` : ''}`;
        $('job-error').hidden = false;
      }
      break;
    }
    default:
  }
  renderJob();
}

function renderJob(): void {
  if (!job) return;
  const status = $('job-status');
  status.textContent = job.status;
  status.dataset.status = job.status;
  $('cancel').hidden = isFinal(job.status);
  const origin = job.acceptedAt ?? Math.min(...job.steps.map((st) => st.startedAt ?? Infinity));
  const end = Math.max(Date.now(), ...job.steps.map((st) => st.finishedAt ?? 0));
  const span = Math.max(1, end - origin);
  $('timeline').replaceChildren(...job.steps.map((st, i) => {
    const bar = h('span');
    if (st.startedAt !== undefined && Number.isFinite(origin)) {
      const from = st.startedAt - origin;
      const to = (st.finishedAt ?? (st.status === 'running' ? Date.now() : st.startedAt)) - origin;
      bar.style.left = `${(100 * from) / span}%`;
      bar.style.width = `${(100 * Math.max(0, to - from)) / span}%`;
    }
    return h('li', { 'data-index': String(i), 'data-step': st.step, 'data-status': st.status, title: st.reason ?? '' },
      h('span', {}, `${i + 1}. ${st.step}`), h('div', { class: 'bar', 'aria-hidden': 'true' }, bar),
      h('span', { class: 'ms' }, st.ms !== undefined ? fmtMs(st.ms) : st.status));
  }));
}

async function submit(): Promise<void> {
  clearError();
  if (!photo) throw new ApiError('image_required', 'choose a photo first', 0);
  const problems = pipelineProblems();
  if (problems.length) throw new ApiError('invalid_pipeline', `${problems[0]!.path}: ${problems[0]!.message}`, 400);
  const ws = await ensureSocket();
  const header = new TextEncoder().encode(JSON.stringify({ type: 'submit', pipeline: pipelineToSend(), clientRef: 'playground' }));
  const bytes = new Uint8Array(await photo.file.arrayBuffer());
  const frame = new Uint8Array(4 + header.length + bytes.length);
  new DataView(frame.buffer).setUint32(0, header.length);
  frame.set(header, 4);
  frame.set(bytes, 4 + header.length);
  pendingInput = photo.file;
  ws.send(frame);
}

async function cancel(): Promise<void> {
  if (!job) return;
  const ws = await ensureSocket();
  ws.send(JSON.stringify({ type: 'cancel', jobId: job.jobId }));
}

/** Shows a job (a reload with ?job=, or "Open" in My jobs): its record, then its events live. */
async function openJob(jobId: string): Promise<void> {
  const view = await api<JobView>(`/api/jobs/${encodeURIComponent(jobId)}`);
  showTab('run');
  // The editor shows the job's own pipeline (defaults filled in by the edge), ready to run again.
  if (view.pipeline) {
    pipeline = view.pipeline.map((item) => ({ step: item.step, params: { ...(item.params ?? {}) }, ...(item.when && item.when !== 'always' ? { when: conditionText(item.when) } : {}) }));
    renderPipeline();
  }
  startJob(view.jobId, view.pipeline ?? view.steps ?? []);
  pendingInput = undefined;
  await watch(view.jobId);
}

async function watch(jobId: string): Promise<void> {
  const ws = await ensureSocket();
  if (!job || job.jobId !== jobId) return;
  // The subscription replays every stored event first, so the state is rebuilt from scratch.
  job.steps.forEach((st) => { st.status = 'pending'; delete st.ms; delete st.startedAt; delete st.finishedAt; });
  ws.send(JSON.stringify({ type: 'subscribe', jobId }));
}

// ---------- results ----------

let resultUrl: string | undefined;

async function showResults(jobId: string): Promise<void> {
  const view = await api<JobView>(`/api/jobs/${encodeURIComponent(jobId)}`);
  if (!job || job.jobId !== jobId) return;
  $('results').hidden = false;
  const result = view.result;
  const json = $<HTMLAnchorElement>('download-json');
  json.href = URL.createObjectURL(new Blob([JSON.stringify(view, null, 2)], { type: 'application/json' }));
  json.download = `${jobId}.json`;
  $('provenance').querySelector('tbody')!.replaceChildren(...(result?.provenance ?? []).map((p) => {
    const row = p as unknown as Record<string, unknown>;
    const model = row.model as { id?: string } | string | undefined;
    return h('tr', {}, h('td', {}, String(row.step ?? '')), h('td', {}, typeof model === 'string' ? model : model?.id ?? ''),
      h('td', {}, String(row.provider ?? row.executionProvider ?? '')), h('td', {}, fmtMs(row.ms as number | undefined)),
      h('td', {}, String(row.attempt ?? '')), h('td', {}, String(row.worker ?? '')));
  }));
  const input = await loadInput(jobId);
  const download = $<HTMLAnchorElement>('download-result');
  const compare = $('compare');
  if (result?.url) {
    const blob = await api<Blob>(result.url);
    if (resultUrl) URL.revokeObjectURL(resultUrl);
    resultUrl = URL.createObjectURL(blob);
    download.href = resultUrl;
    download.download = `${jobId}.${(result.contentType ?? 'image/jpeg').split('/')[1]}`;
    download.hidden = false;
    const after = $<HTMLImageElement>('after-img');
    after.src = resultUrl;
    await after.decode().catch(() => undefined);
    $('result-info').textContent = `${after.naturalWidth} × ${after.naturalHeight} — ${fmtBytes(result.bytes ?? blob.size)} — ${result.contentType ?? ''} — sha256 ${result.sha256 ?? ''}`;
    $('result-info').dataset.width = String(after.naturalWidth);
    $('result-info').dataset.height = String(after.naturalHeight);
    const before = $<HTMLImageElement>('before-img');
    if (input) {
      before.src = URL.createObjectURL(input);
      $('before-clip').hidden = false;
    } else {
      $('before-clip').hidden = true;
    }
    compare.hidden = false;
    $('compare-range').hidden = !input;
  } else {
    download.hidden = true;
    compare.hidden = true;
    $('result-info').textContent = 'findings only (no encode step)';
  }
  const findings = result?.findings;
  if (findings?.objects || findings?.faces) await drawDetections(jobId, findings.objects ?? [], findings.faces ?? [], findings.image);
}

let drawnFor = '';
async function drawDetections(jobId: string, objects: DetectedObject[], faces: Face[], image?: { width?: number; height?: number }): Promise<void> {
  const input = await loadInput(jobId);
  const img = $<HTMLImageElement>('detect-img');
  if (drawnFor !== jobId) {
    drawnFor = jobId;
    img.removeAttribute('src');
    if (input) {
      img.src = URL.createObjectURL(input);
      await img.decode().catch(() => undefined);
    }
  }
  const width = img.naturalWidth || image?.width || Math.max(1, ...objects.map((o) => o.box.x + o.box.width), ...faces.map((f) => f.box.x + f.box.width));
  const height = img.naturalHeight || image?.height || Math.max(1, ...objects.map((o) => o.box.y + o.box.height), ...faces.map((f) => f.box.y + f.box.height));
  const svg = $('overlay') as unknown as SVGSVGElement;
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  if (!input) {
    // The photo is not in this browser (another browser, or storage cleared): boxes on a blank frame.
    img.hidden = true;
    svg.style.position = 'static';
    svg.style.background = '#333';
  } else {
    img.hidden = false;
    svg.style.position = '';
    svg.style.background = '';
  }
  const fontSize = Math.max(12, Math.round(width / 40));
  svg.replaceChildren(
    ...objects.map((o) => box('object', o.label, o.score, o.box, fontSize)),
    ...faces.map((f) => {
      const g = box('face', 'face', f.score, f.box, fontSize);
      for (const [x, y] of f.landmarks ?? []) g.append(s('circle', { cx: x!, cy: y!, r: Math.max(2, width / 200) }));
      return g;
    }),
  );
  const rows = [...objects.map((o) => ['object', o.label, o.score, o.box] as const), ...faces.map((f) => ['face', 'face', f.score, f.box] as const)];
  $('detections-table').querySelector('tbody')!.replaceChildren(...rows.map(([kind, label, score, b]) =>
    h('tr', {}, h('td', {}, kind), h('td', {}, label), h('td', {}, score.toFixed(2)), h('td', {}, [b.x, b.y, b.width, b.height].map((v) => Math.round(v)).join(', ')))));
  if (rows.length === 0) $('detections-table').querySelector('tbody')!.append(h('tr', {}, h('td', { colspan: '4' }, 'nothing found')));
  $('detections').hidden = false;
  $('results').hidden = false;
}

function box(kind: string, label: string, score: number, b: { x: number; y: number; width: number; height: number }, fontSize: number): SVGElement {
  const g = s('g', { class: `box ${kind}`, 'data-label': label, 'data-score': score.toFixed(3) });
  g.append(s('rect', { x: b.x, y: b.y, width: b.width, height: b.height }));
  g.append(s('text', { x: b.x + 3, y: Math.max(fontSize, b.y - 4), 'font-size': fontSize }, `${label} ${score.toFixed(2)}`));
  return g;
}

// ---------- inputs kept in this browser (IndexedDB), for results after a reload ----------

function db(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open('photolab-playground', 1);
    open.onupgradeneeded = () => open.result.createObjectStore('inputs');
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => reject(open.error);
  });
}
async function saveInput(jobId: string, blob: Blob): Promise<void> {
  try {
    const d = await db();
    await new Promise<void>((resolve, reject) => {
      const tx = d.transaction('inputs', 'readwrite');
      tx.objectStore('inputs').put(blob, jobId);
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error);
    });
  } catch {
    // Private windows may refuse storage: results then show without the original.
  }
}
const inputCache = new Map<string, Blob | undefined>();
async function loadInput(jobId: string): Promise<Blob | undefined> {
  if (pendingInput && job?.jobId === jobId) return pendingInput;
  if (inputCache.has(jobId)) return inputCache.get(jobId);
  let blob: Blob | undefined;
  try {
    const d = await db();
    blob = await new Promise<Blob | undefined>((resolve) => {
      const get = d.transaction('inputs').objectStore('inputs').get(jobId);
      get.onsuccess = () => resolve(get.result as Blob | undefined);
      get.onerror = () => resolve(undefined);
    });
  } catch {
    blob = undefined;
  }
  inputCache.set(jobId, blob);
  return blob;
}

// ---------- My jobs ----------

const cursors: (string | undefined)[] = [undefined];
let page = 0;
let nextCursor: string | undefined;

async function loadJobs(): Promise<void> {
  const params = new URLSearchParams({ limit: '10' });
  const status = $<HTMLSelectElement>('jobs-status').value;
  if (status) params.set('status', status);
  const cursor = cursors[page];
  if (cursor) params.set('cursor', cursor);
  const list = await api<JobListResponse>(`/api/jobs?${params}`);
  nextCursor = list.nextCursor;
  $('jobs-table').querySelector('tbody')!.replaceChildren(...list.jobs.map((j) => {
    const open = h('button', { type: 'button', class: 'open-job' }, 'Open');
    open.onclick = () => void openJob(j.jobId).catch(showError);
    return h('tr', { 'data-job-id': j.jobId, 'data-status': j.status },
      h('td', {}, new Date(j.createdAt).toLocaleString()), h('td', {}, h('span', { class: 'status', 'data-status': j.status }, j.status)),
      h('td', {}, (j.pipeline ?? []).map((p) => p.step).join(' → ')), h('td', {}, h('code', {}, j.jobId)), h('td', {}, open));
  }));
  if (list.jobs.length === 0) $('jobs-table').querySelector('tbody')!.append(h('tr', {}, h('td', { colspan: '5' }, 'no jobs')));
  $<HTMLButtonElement>('jobs-prev').disabled = page === 0;
  $<HTMLButtonElement>('jobs-next').disabled = !nextCursor;
}

// ---------- Stats ----------

let statsTimer: ReturnType<typeof setInterval> | undefined;

async function loadStats(): Promise<void> {
  const [stats, health] = await Promise.allSettled([
    api<StatsResponse>(`/api/stats?groupBy=step&from=${Date.now() - 3600_000}&to=${Date.now() + 1000}`),
    healthOf(),
  ]);
  const errorBox = $('stats-error');
  errorBox.hidden = true;
  if (stats.status === 'fulfilled') {
    const rows = stats.value.groups.step ?? [];
    const j = stats.value.jobs;
    $('stats-jobs').textContent = `jobs: ${j.count} (done ${j.done}, failed ${j.failed}, canceled ${j.canceled}, timeout ${j.timeout}); job p50 ${fmtMs(j.p50Ms ?? undefined) || '–'}, p95 ${fmtMs(j.p95Ms ?? undefined) || '–'}`;
    barChart($('latency-chart') as unknown as SVGSVGElement, rows.map((r) => ({ key: r.key, values: [r.p50Ms ?? 0, r.p95Ms ?? 0] })), ['p50', 'p95'], (v) => `${Math.round(v)}`);
    barChart($('throughput-chart') as unknown as SVGSVGElement, rows.map((r) => ({ key: r.key, values: [r.throughput * 60] })), ['runs/min'], (v) => (v >= 10 ? v.toFixed(0) : v.toPrecision(2)));
  } else {
    const e = stats.reason as ApiError;
    errorBox.textContent = `${e.code ?? 'error'}: ${e.message}`;
    errorBox.hidden = false;
  }
  if (health.status === 'fulfilled') {
    const hv = health.value;
    $('health-status').textContent = hv.status;
    $('health-status').dataset.status = hv.status;
    $('health-table').querySelector('tbody')!.replaceChildren(...Object.entries(hv.stages).map(([step, st]) => {
      const replicas = st.replicas ?? [];
      const handled = replicas.reduce((n, r) => n + (r.handled ?? 0), 0);
      return h('tr', { 'data-step': step, 'data-replicas': String(replicas.length) }, h('td', {}, step),
        h('td', {}, replicas.length ? String(replicas.length) : 'none running'), h('td', {}, String(st.pending ?? 0)), h('td', {}, String(st.inFlight ?? 0)), h('td', {}, String(handled)));
    }));
  } else {
    showError(health.reason);
  }
}
async function healthOf(): Promise<HealthResponse> {
  // 503 still carries the health body (NATS or a stream down): show it rather than only the error.
  const response = await fetch('/api/health');
  const body = await response.json() as HealthResponse & { code?: string; message?: string };
  if (!body.stages) throw new ApiError(body.code ?? `http_${response.status}`, body.message ?? 'health unavailable', response.status);
  return body;
}

function barChart(svg: SVGSVGElement, rows: { key: string; values: number[] }[], series: string[], label: (v: number) => string): void {
  const rowH = 16 * series.length + 10;
  // Drawn at the size shown, so the text stays 12 px at any width (360 px phones included).
  const width = Math.max(300, Math.round(svg.getBoundingClientRect().width) || 600);
  const left = 110;
  const height = Math.max(30, rows.length * rowH + 24);
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  const max = Math.max(1e-9, ...rows.flatMap((r) => r.values));
  const colours = ['#0b5fff', '#ffb000'];
  const parts: SVGElement[] = [];
  if (rows.length === 0) parts.push(s('text', { x: 8, y: 20 }, 'no runs in the window yet'));
  rows.forEach((r, i) => {
    const y = i * rowH + 4;
    parts.push(s('text', { x: 4, y: y + 14 }, r.key));
    r.values.forEach((v, k) => {
      const w = ((width - left - 130) * v) / max; // room for the value's label on the right
      parts.push(s('rect', { x: left, y: y + k * 16, width: Math.max(1, w), height: 13, fill: colours[k % 2]!, 'data-key': r.key, 'data-series': series[k]!, 'data-value': v }));
      parts.push(s('text', { x: left + w + 4, y: y + k * 16 + 11 }, `${series[k]} ${label(v)}`));
    });
  });
  svg.replaceChildren(...parts);
}

// ---------- tabs ----------

let currentTab = 'run';
function showTab(name: string): void {
  currentTab = name;
  for (const t of ['run', 'jobs', 'stats']) {
    $(`tab-${t}`).setAttribute('aria-selected', String(t === name));
    $(`panel-${t}`).hidden = t !== name || !token || !$('signin').hidden;
  }
  clearInterval(statsTimer);
  statsTimer = undefined;
  if (!token || !$('signin').hidden) return;
  if (name === 'jobs') void loadJobs().catch(showError);
  if (name === 'stats') {
    void loadStats().catch(showError);
    statsTimer = setInterval(() => void loadStats().catch(showError), 5000);
  }
}

// ---------- wiring ----------

function wire(): void {
  $('error-close').onclick = clearError;
  const tabs = ['run', 'jobs', 'stats'];
  for (const t of tabs) {
    $(`tab-${t}`).onclick = () => showTab(t);
    // The tab pattern's keys: left / right move between tabs.
    $(`tab-${t}`).onkeydown = (e) => {
      if (e.key !== 'ArrowRight' && e.key !== 'ArrowLeft') return;
      const next = tabs[(tabs.indexOf(t) + (e.key === 'ArrowRight' ? 1 : tabs.length - 1)) % tabs.length]!;
      showTab(next);
      $(`tab-${next}`).focus();
    };
  }
  $('signin-form').onsubmit = (e) => {
    e.preventDefault();
    clearError();
    void signIn($<HTMLInputElement>('token-input').value).catch(showError);
  };
  $('dev-token').onclick = async () => {
    clearError();
    try {
      const answer = await api<DevTokenResponse>('/api/dev/token', { method: 'POST' }, false);
      $<HTMLInputElement>('token-input').value = answer.token;
      await signIn(answer.token);
    } catch (error) {
      if (error instanceof ApiError && error.code === 'route_not_found') {
        showError(new ApiError('dev_tokens_off', 'this edge does not issue development tokens (it uses configured keys: JWT_SECRET or a JWKS); paste a token', 404));
      } else {
        showError(error);
      }
    }
  };
  $('sign-out').onclick = signOut;
  const fileInput = $<HTMLInputElement>('file-input');
  fileInput.onchange = () => {
    const file = fileInput.files?.[0];
    if (file) void choosePhoto(file, file.name).catch(showError);
  };
  const drop = $('drop');
  drop.ondragover = (e) => {
    e.preventDefault();
    drop.classList.add('over');
  };
  drop.ondragleave = () => drop.classList.remove('over');
  drop.ondrop = (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    const file = e.dataTransfer?.files[0];
    if (file) void choosePhoto(file, file.name).catch(showError);
  };
  document.querySelectorAll<HTMLButtonElement>('[data-preset]').forEach((b) => { b.onclick = () => applyPreset(b.dataset.preset!); });
  $('add-step').onclick = () => addStep($<HTMLSelectElement>('add-step-select').value);
  $('submit').onclick = () => void submit().catch(showError);
  $('cancel').onclick = () => void cancel().catch(showError);
  const range = $<HTMLInputElement>('compare-range');
  range.oninput = () => { $('before-clip').style.width = `${range.value}%`; };
  $('jobs-status').onchange = () => { page = 0; cursors.length = 1; void loadJobs().catch(showError); };
  $('jobs-refresh').onclick = () => void loadJobs().catch(showError);
  $('jobs-next').onclick = () => { if (!nextCursor) return; cursors[page + 1] = nextCursor; page++; void loadJobs().catch(showError); };
  $('jobs-prev').onclick = () => { if (page === 0) return; page--; void loadJobs().catch(showError); };
  // Running steps' bars grow with the clock.
  setInterval(() => { if (job && job.status === 'running') renderJob(); }, 500);
}

wire();
if (token) {
  void signIn(token).catch((error) => {
    $('signin').hidden = false;
    showError(error);
  });
} else {
  $('signin').hidden = false;
}
