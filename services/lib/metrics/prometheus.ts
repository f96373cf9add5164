/**
 * A small Prometheus registry (text exposition format 0.0.4): counters, gauges and histograms
 * with labels, rendered for GET /metrics. No dependency; one Registry per process.
 *
 *   const registry = new Registry();
 *   const runs = registry.counter('photolab_stage_runs_total', 'Stage runs.', ['step', 'status']);
 *   runs.inc({ step: 'decode', status: 'ok' });
 *   const ms = registry.histogram('photolab_stage_run_seconds', 'Stage run time.', ['step'], [0.05, 0.1, 0.5, 1, 5]);
 *   ms.observe({ step: 'decode' }, 0.042);
 *   res.writeHeader('Content-Type', PROMETHEUS_CONTENT_TYPE).end(await registry.collect());
 *
 * Values that are only known when scraped (backlog of the stage consumers) are filled in by
 * collectors registered with onCollect(); collect() runs them, then renders.
 */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export type Labels = Record<string, string | number>;

export const DEFAULT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}
function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}
export function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

abstract class Metric {
  abstract readonly type: 'counter' | 'gauge' | 'histogram';
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {
    if (!METRIC_NAME.test(name)) throw new Error(`invalid metric name ${JSON.stringify(name)} (must match ${METRIC_NAME})`);
    const seen = new Set<string>();
    for (const l of labelNames) {
      if (!LABEL_NAME.test(l) || l.startsWith('__')) throw new Error(`metric ${name}: invalid label name ${JSON.stringify(l)}`);
      if (seen.has(l)) throw new Error(`metric ${name}: label ${l} given twice`);
      seen.add(l);
    }
  }

  /** The label values in labelNames order, checked: exactly the declared labels. */
  protected key(labels: Labels | undefined): string {
    const given = labels ?? {};
    for (const k of Object.keys(given)) {
      if (!this.labelNames.includes(k)) throw new Error(`metric ${this.name}: unknown label ${JSON.stringify(k)} (labels: ${this.labelNames.join(', ') || 'none'})`);
    }
    const values = this.labelNames.map((l) => {
      const v = given[l];
      if (v === undefined) throw new Error(`metric ${this.name}: label ${l} missing`);
      return String(v);
    });
    return JSON.stringify(values);
  }

  protected static labelText(names: readonly string[], key: string, extra?: [string, string]): string {
    const values = JSON.parse(key) as string[];
    const pairs = names.map((n, i) => `${n}="${escapeLabelValue(values[i]!)}"`);
    if (extra) pairs.push(`${extra[0]}="${escapeLabelValue(extra[1])}"`);
    return pairs.length ? `{${pairs.join(',')}}` : '';
  }

  header(): string {
    return `# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} ${this.type}\n`;
  }
  abstract samples(): string;
  abstract reset(): void;
}

/** One number per label set: what counters and gauges share. */
abstract class ValueMetric extends Metric {
  protected readonly values = new Map<string, number>();

  protected add(labels: Labels | undefined, by: number): void {
    const k = this.key(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }
  get(labels?: Labels): number {
    return this.values.get(this.key(labels)) ?? 0;
  }
  samples(): string {
    let out = '';
    for (const [k, v] of this.values) out += `${this.name}${Metric.labelText(this.labelNames, k)} ${formatValue(v)}\n`;
    return out;
  }
  reset(): void {
    this.values.clear();
  }
}

export class Counter extends ValueMetric {
  readonly type = 'counter' as const;

  inc(labels?: Labels, by = 1): void {
    if (!Number.isFinite(by) || by < 0) throw new Error(`counter ${this.name}: can only increase by a finite amount >= 0, got ${by}`);
    this.add(labels, by);
  }
}

export class Gauge extends ValueMetric {
  readonly type = 'gauge' as const;

  set(labels: Labels | undefined, value: number): void;
  set(value: number): void;
  set(a: Labels | number | undefined, b?: number): void {
    const [labels, value] = typeof a === 'number' ? [undefined, a] : [a, b!];
    if (typeof value !== 'number') throw new Error(`gauge ${this.name}: value must be a number`);
    this.values.set(this.key(labels), value);
  }
  inc(labels?: Labels, by = 1): void {
    this.add(labels, by);
  }
  dec(labels?: Labels, by = 1): void {
    this.add(labels, -by);
  }
  /** Forgets one label set (a stage that went away). */
  remove(labels?: Labels): void {
    this.values.delete(this.key(labels));
  }
}

interface HistogramSeries {
  counts: number[];
  sum: number;
  count: number;
}

export class Histogram extends Metric {
  readonly type = 'histogram' as const;
  readonly buckets: readonly number[];
  private readonly series = new Map<string, HistogramSeries>();

  constructor(name: string, help: string, labelNames: readonly string[], buckets: readonly number[] = DEFAULT_BUCKETS) {
    super(name, help, labelNames);
    if (labelNames.includes('le')) throw new Error(`histogram ${name}: label name "le" is reserved`);
    if (buckets.length === 0) throw new Error(`histogram ${name}: needs at least one bucket`);
    for (let i = 0; i < buckets.length; i++) {
      if (!Number.isFinite(buckets[i]!)) throw new Error(`histogram ${name}: bucket bounds must be finite numbers (+Inf is implicit)`);
      if (i > 0 && buckets[i]! <= buckets[i - 1]!) throw new Error(`histogram ${name}: bucket bounds must increase`);
    }
    this.buckets = [...buckets];
  }

  observe(labels: Labels | undefined, value: number): void {
    if (!Number.isFinite(value)) throw new Error(`histogram ${this.name}: observed value must be finite, got ${value}`);
    const k = this.key(labels);
    let s = this.series.get(k);
    if (!s) this.series.set(k, (s = { counts: this.buckets.map(() => 0), sum: 0, count: 0 }));
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) s.counts[i]!++;
    s.sum += value;
    s.count++;
  }
  /** Starts a timer; the returned function observes the elapsed seconds. */
  startTimer(labels?: Labels): () => number {
    const start = process.hrtime.bigint();
    return () => {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      this.observe(labels, seconds);
      return seconds;
    };
  }
  get(labels?: Labels): { buckets: number[]; sum: number; count: number } {
    const s = this.series.get(this.key(labels));
    return s ? { buckets: [...s.counts], sum: s.sum, count: s.count } : { buckets: this.buckets.map(() => 0), sum: 0, count: 0 };
  }
  samples(): string {
    let out = '';
    for (const [k, s] of this.series) {
      this.buckets.forEach((b, i) => {
        out += `${this.name}_bucket${Metric.labelText(this.labelNames, k, ['le', formatValue(b)])} ${s.counts[i]}\n`;
      });
      out += `${this.name}_bucket${Metric.labelText(this.labelNames, k, ['le', '+Inf'])} ${s.count}\n`;
      out += `${this.name}_sum${Metric.labelText(this.labelNames, k)} ${formatValue(s.sum)}\n`;
      out += `${this.name}_count${Metric.labelText(this.labelNames, k)} ${s.count}\n`;
    }
    return out;
  }
  reset(): void {
    this.series.clear();
  }
}

export type Collector = () => void | Promise<void>;

export class Registry {
  private readonly metrics = new Map<string, Metric>();
  private readonly collectors: Collector[] = [];

  private add<M extends Metric>(metric: M): M {
    const existing = this.metrics.get(metric.name);
    if (existing) {
      // Asking twice for the same metric returns the first one (modules may share a registry).
      if (existing.type === metric.type && JSON.stringify(existing.labelNames) === JSON.stringify(metric.labelNames)) return existing as M;
      throw new Error(`metric ${metric.name} is already registered as a ${existing.type} with labels [${existing.labelNames.join(', ')}]`);
    }
    this.metrics.set(metric.name, metric);
    return metric;
  }

  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.add(new Counter(name, help, labelNames));
  }
  gauge(name: string, help: string, labelNames: readonly string[] = []): Gauge {
    return this.add(new Gauge(name, help, labelNames));
  }
  histogram(name: string, help: string, labelNames: readonly string[] = [], buckets: readonly number[] = DEFAULT_BUCKETS): Histogram {
    return this.add(new Histogram(name, help, labelNames, buckets));
  }
  get(name: string): Metric | undefined {
    return this.metrics.get(name);
  }

  /** Runs before each collect(): sets gauges that are read at scrape time. */
  onCollect(collector: Collector): void {
    this.collectors.push(collector);
  }

  /** The exposition text of every metric (text/plain; version=0.0.4). */
  render(): string {
    let out = '';
    for (const m of this.metrics.values()) out += m.header() + m.samples();
    return out;
  }

  /**
   * Runs the collectors, then renders. A failing collector does not fail the scrape: its
   * failure shows as photolab_metrics_collector_errors_total.
   */
  async collect(): Promise<string> {
    const results = await Promise.allSettled(this.collectors.map(async (c) => c()));
    const failed = results.filter((r) => r.status === 'rejected').length;
    if (failed > 0) this.counter('photolab_metrics_collector_errors_total', 'Scrape-time collectors that failed.').inc(undefined, failed);
    return this.render();
  }

  reset(): void {
    for (const m of this.metrics.values()) m.reset();
  }
}
