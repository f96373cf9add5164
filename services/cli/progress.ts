/**
 * Live progress of one job from its events: on a terminal, one line per step (a bar, status and
 * time) redrawn in place; otherwise (a pipe, a CI log) one plain line per event, so logs and
 * tests read the same information without escape codes.
 */
import type { JobEvent } from '../lib/shared/schema-types.js';

type StepState = 'waiting' | 'running' | 'done' | 'skipped' | 'retrying' | 'failed';

interface Row {
  step: string;
  state: StepState;
  ms?: number;
  startedAt?: number;
  note?: string;
}

const BAR = 20;

export class JobProgress {
  private readonly rows: Row[];
  private drawn = 0;
  private readonly started = Date.now();
  private timer?: NodeJS.Timeout;

  constructor(private readonly out: NodeJS.WriteStream, jobId: string, steps: string[], private readonly tty = Boolean(out.isTTY)) {
    this.rows = steps.map((step) => ({ step, state: 'waiting' }));
    if (this.tty) {
      this.out.write(`job ${jobId}\n`);
      this.draw();
      // Redraw so that a running step's clock moves between events.
      this.timer = setInterval(() => this.draw(), 200);
      this.timer.unref();
    } else {
      this.out.write(`job ${jobId}: ${steps.join(' → ')}\n`);
    }
  }

  event(event: JobEvent): void {
    const row = event.index === undefined ? undefined : this.rows[event.index];
    const position = event.index === undefined ? '' : `[${event.index + 1}/${this.rows.length}] `;
    switch (event.type) {
      case 'step.started':
        if (row) Object.assign(row, { state: 'running', startedAt: event.at, note: (event.attempt ?? 1) > 1 ? `attempt ${event.attempt}` : undefined });
        this.line(`${position}${event.step} started${(event.attempt ?? 1) > 1 ? ` (attempt ${event.attempt})` : ''}`);
        break;
      case 'step.finished':
        if (row) Object.assign(row, { state: 'done', ms: event.ms });
        this.line(`${position}${event.step} done in ${formatMs(event.ms)}${summary(event)}`);
        break;
      case 'step.skipped':
        if (row) Object.assign(row, { state: 'skipped', note: event.reason });
        this.line(`${position}${event.step} skipped${event.reason ? ` (${event.reason})` : ''}`);
        break;
      case 'step.retrying':
        if (row) Object.assign(row, { state: 'retrying', note: event.error?.code });
        this.line(`${position}${event.step} retrying: ${event.error?.code ?? ''} ${event.error?.message ?? ''}`.trimEnd());
        break;
      case 'job.done':
        this.line(`job done in ${formatMs(Date.now() - this.started)}`);
        break;
      case 'job.failed':
      case 'job.canceled':
      case 'job.timeout': {
        const failing = event.error?.step ? this.rows.find((r) => r.step === event.error!.step && r.state !== 'done') : undefined;
        if (failing) Object.assign(failing, { state: 'failed', note: event.error?.code });
        this.line(`job ${event.type.slice(4)}${event.error ? `: ${event.error.code}: ${event.error.message}` : ''}`);
        break;
      }
      default:
        break;
    }
    this.draw();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.draw();
  }

  private line(text: string): void {
    if (!this.tty) this.out.write(`${text}\n`);
  }

  private draw(): void {
    if (!this.tty) return;
    if (this.drawn > 0) this.out.write(`\x1b[${this.drawn}A`);
    const width = Math.max(...this.rows.map((r) => r.step.length));
    for (const row of this.rows) {
      const fill = row.state === 'done' || row.state === 'skipped' || row.state === 'failed' ? BAR
        : row.state === 'running' || row.state === 'retrying' ? Math.floor(((Date.now() / 100) % BAR)) : 0;
      const bar = row.state === 'running' || row.state === 'retrying'
        ? `${' '.repeat(fill)}${'█'.repeat(Math.min(3, BAR - fill))}`.padEnd(BAR)
        : `${'█'.repeat(fill)}${'░'.repeat(BAR - fill)}`;
      const time = row.ms !== undefined ? formatMs(row.ms) : row.startedAt ? formatMs(Date.now() - row.startedAt) : '';
      this.out.write(`\x1b[2K  ${row.step.padEnd(width)}  ${bar}  ${row.state.padEnd(8)} ${time.padStart(8)}${row.note ? `  ${row.note}` : ''}\n`);
    }
    this.drawn = this.rows.length;
  }
}

function summary(event: JobEvent): string {
  const f = event.findings;
  if (!f) return '';
  const parts: string[] = [];
  if (f.faces) parts.push(`${f.faces.length} face${f.faces.length === 1 ? '' : 's'}`);
  if (f.objects) parts.push(`${f.objects.length} object${f.objects.length === 1 ? '' : 's'}`);
  if (f.image?.width) parts.push(`${f.image.width}x${f.image.height}${f.image.format ? ` ${f.image.format}` : ''}`);
  return parts.length ? ` (${parts.join(', ')})` : '';
}

export function formatMs(ms: number | undefined): string {
  if (ms === undefined) return '';
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}
