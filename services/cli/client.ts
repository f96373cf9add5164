/**
 * What the `photolab` CLI needs to talk to an edge: its address, a token, HTTP calls that turn
 * error bodies into readable failures, and the edge's WebSocket for live progress.
 */
import WebSocket from 'ws';
import type { Config } from '../lib/shared/config.js';
import { devSecret, signDevToken } from '../lib/shared/dev-token.js';
import { decodeFrame, encodeFrame } from '../lib/shared/ws-frame.js';

/** A failure the CLI reports in one line and exits with `exitCode` (1: it failed, 2: bad usage). */
export class CliError extends Error {
  constructor(message: string, readonly exitCode = 1, readonly code?: string) {
    super(message);
  }
}

export interface Target {
  url: string;
  token?: string;
}

export function edgeUrl(config: Config, override?: string): string {
  return (override || config.photolabUrl || `http://127.0.0.1:${config.httpPort}`).replace(/\/+$/, '');
}

/** --token, PHOTOLAB_TOKEN, then a development token signed with JWT_SECRET or npm start's session secret. */
export async function resolveToken(config: Config, override?: string): Promise<string> {
  const given = override || config.photolabToken;
  if (given) return given;
  return devToken(config, 'dev', 'no token: set PHOTOLAB_TOKEN (or --token), or JWT_SECRET, or');
}

/** A development token for `sub`, signed with JWT_SECRET or npm start's session secret (with the edge's iss/aud). */
export function devToken(config: Config, sub: string, missing = 'no development secret: set JWT_SECRET, or'): Promise<string> {
  const secret = devSecret(config.jwtSecret, config.dataDir);
  if (!secret) throw new CliError(`${missing} run \`npm start\` here first (it keeps a development secret in ${config.dataDir}/dev-jwt-secret)`);
  return signDevToken(secret, { sub, issuer: config.jwtIssuer, audience: config.jwtAudience });
}

export interface Answer {
  status: number;
  headers: Headers;
  bytes: Buffer;
  json?: any;
}

/** One HTTP call; a connection failure becomes a CliError that names the URL. */
export async function call(target: Target, path: string, init: RequestInit = {}): Promise<Answer> {
  const headers = new Headers(init.headers);
  if (target.token) headers.set('authorization', `Bearer ${target.token}`);
  let response: Response;
  try {
    response = await fetch(`${target.url}${path}`, { ...init, headers });
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message;
    throw new CliError(`cannot reach the edge at ${target.url} (${cause}); is \`npm start\` running, or set PHOTOLAB_URL / --url`);
  }
  const bytes = Buffer.from(await response.arrayBuffer());
  const answer: Answer = { status: response.status, headers: response.headers, bytes };
  if ((response.headers.get('content-type') ?? '').includes('json') && bytes.length > 0) answer.json = JSON.parse(bytes.toString('utf8'));
  return answer;
}

/** The answer's JSON when its status is one of `ok`, else a CliError carrying the edge's code and message. */
export function expect(answer: Answer, ...ok: number[]): any {
  if (ok.includes(answer.status)) return answer.json;
  throw errorOf(answer);
}

export function errorOf(answer: Answer): CliError {
  const body = answer.json as { code?: string; message?: string } | undefined;
  return new CliError(body?.code ? `${body.code}: ${body.message ?? ''} (HTTP ${answer.status})` : `HTTP ${answer.status}: ${answer.bytes.toString('utf8').slice(0, 200)}`, 1, body?.code);
}

/** A WebSocket to the edge, authenticated by the token in the query; resolves once `ready`. */
export async function openEdgeSocket(target: Target): Promise<{ ws: WebSocket; onMessage(handler: (message: any, binary?: Buffer) => void): void }> {
  const url = `${target.url.replace(/^http/, 'ws')}/ws?token=${encodeURIComponent(target.token ?? '')}`;
  const ws = new WebSocket(url);
  const handlers: ((message: any, binary?: Buffer) => void)[] = [];
  await new Promise<void>((resolve, reject) => {
    ws.once('error', (error) => reject(new CliError(`cannot reach the edge's WebSocket at ${url.replace(/token=[^&]*/, 'token=…')} (${(error as Error).message})`)));
    ws.on('message', (data, isBinary) => {
      if (isBinary) {
        const { header, body } = decodeFrame(Buffer.from(data as Buffer));
        for (const h of handlers) h(header, body);
        return;
      }
      const message = JSON.parse(data.toString());
      if (message.type === 'ready') resolve();
      else if (message.type === 'error' && (message.status === 401)) reject(new CliError(`${message.code}: ${message.message}`));
      for (const h of handlers) h(message);
    });
    ws.once('close', (code) => reject(new CliError(`the edge closed the WebSocket (code ${code})`)));
  });
  return { ws, onMessage: (handler) => handlers.push(handler) };
}

/** A binary submit frame: 4-byte big-endian header length, the JSON header, the image. */
export function submitFrame(header: object, image: Buffer): Buffer {
  return encodeFrame({ type: 'submit', ...header }, image);
}
