/**
 * A/B against another build of this project on the same machine, in turns, so that both see the
 * machine in the same state (it drifts by 30% and more within an hour). The other build is a
 * checkout with its own `dist/` (e.g. `git worktree add --detach /tmp/base 83862d2`, node_modules
 * linked, `npx tsc -p .`); it only needs its bench's startCluster, multipartBody and photo.
 *
 *   node dist/bench/ab.js <other checkout> latency local|fused|auto [jobs]
 *     both systems running side by side, one job at a time, alternating ABBA, 200 ms apart:
 *     end to end p50, per hop from events, nats-server and services CPU per job, paired ratio.
 *   node dist/bench/ab.js <other checkout> load auto|local [jobs] [pairs]
 *     saturation (8 in flight), one system at a time, the builds in turns: jobs/s and CPU per
 *     job of every process (services, nats-server, this load generator).
 *
 * Pipeline: decode -> detect_objects(yolox) -> encode on a 1 MP photo, one process per step
 * (or one fused process). CPU comes from /proc (10 ms ticks; means over many jobs).
 */
import { execSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { cpuMs, REPO_ROOT, sleep, summarize } from './lib/util.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- the other build's modules are loaded by path */
interface Build { name: string; root: string; cluster: any; util: any }

const PIPELINE = [{ step: 'decode' }, { step: 'detect_objects', params: { model: 'yolox' } }, { step: 'encode' }];
const STEPS = PIPELINE.map((p) => p.step);
const IN_FLIGHT = 8;
const WARM = 16;

const median = (v: number[]) => summarize(v).p50;
const mean = (v: number[]) => summarize(v).mean;

/** The Node processes a build's cluster started (its dist/services), with what they run. */
function servicesOf(root: string): Map<number, string> {
  const out = new Map<number, string>();
  const listed = execSync(`pgrep -f '${root}/dist/services' || true`).toString().split('\n').filter(Boolean).map(Number);
  for (const pid of listed) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (argv[0] === process.execPath) out.set(pid, argv.slice(1).join(' ').replace(/.*dist\/services\//, '').replace(/\/main\.js/, ''));
    } catch {
      // exited meanwhile (pgrep's own shell)
    }
  }
  return out;
}

async function load(name: string, root: string): Promise<Build> {
  if (!existsSync(path.join(root, 'dist/bench/lib/cluster.js'))) throw new Error(`${root} has no built bench (dist/bench/lib/cluster.js): check it out and run \`npx tsc -p .\` there first`);
  return { name, root, cluster: await import(path.join(root, 'dist/bench/lib/cluster.js')), util: await import(path.join(root, 'dist/bench/lib/util.js')) };
}

function workersFor(layout: string): Record<string, number> {
  return layout === 'fused' ? { [STEPS.join(',')]: 1 } : Object.fromEntries(STEPS.map((s) => [s, 1]));
}

async function latency(builds: Build[], layout: string, jobs: number): Promise<void> {
  const running = [];
  for (const b of builds) {
    const cluster = await b.cluster.startCluster({ workers: workersFor(layout), env: { FRAME_TRANSPORT: layout === 'fused' ? 'local' : layout } });
    running.push({ b, cluster, pids: [...servicesOf(b.root).keys()], e2e: [] as number[], hop: [] as number[], nats: [] as number[], all: [] as number[] });
  }
  const body = builds[0]!.cluster.multipartBody((await builds[0]!.util.photo(1)).bytes, PIPELINE);
  try {
    for (let i = 0; i < jobs + 3; i++) {
      for (const r of i % 2 ? [...running].reverse() : running) {
        await sleep(200);
        const nats0 = cpuMs(r.cluster.nats.process.pid);
        const all0 = r.pids.reduce((n, pid) => n + cpuMs(pid), 0);
        const o = await r.cluster.client.run(body);
        if (o.status !== 'done') throw new Error(`${r.b.name}: job ended ${o.status}`);
        if (i < 3) continue; // warm-up
        r.nats.push(cpuMs(r.cluster.nats.process.pid) - nats0);
        r.all.push(r.pids.reduce((n, pid) => n + cpuMs(pid), 0) - all0);
        r.e2e.push(o.e2eMs);
        r.hop.push((o.e2eMs - (Object.values(o.stepMs) as number[]).reduce((a, b) => a + b, 0)) / STEPS.length);
      }
    }
  } finally {
    for (const r of running) await r.cluster.stop();
  }
  for (const r of running) {
    console.log(`${r.b.name.padEnd(6)} ${layout}: end to end p50 ${median(r.e2e).toFixed(1)} ms (mean ${mean(r.e2e).toFixed(1)}), per hop from events p50 ${median(r.hop).toFixed(2)} ms, nats-server CPU ${mean(r.nats).toFixed(1)} ms/job, services CPU ${mean(r.all).toFixed(1)} ms/job`);
  }
  const [a, b] = running;
  const paired = a!.e2e.map((x, i) => x / b!.e2e[i]!);
  console.log(`${a!.b.name} / ${b!.b.name}: paired end to end p50 ${median(paired).toFixed(3)}, mean ${mean(paired).toFixed(3)}; nats-server CPU ${(mean(a!.nats) / mean(b!.nats)).toFixed(2)}`);
}

async function saturation(build: Build, transport: string, jobs: number): Promise<{ rate: number; cpu: number; per: [string, number][] }> {
  const cluster = await build.cluster.startCluster({ workers: workersFor('per-step'), env: { FRAME_TRANSPORT: transport } });
  try {
    const names = servicesOf(build.root);
    names.set(cluster.nats.process.pid, 'nats-server');
    names.set(process.pid, 'load generator');
    const pids = [...names.keys()];
    const body = build.cluster.multipartBody((await build.util.photo(1)).bytes, PIPELINE);
    let started = 0;
    let done = 0;
    let t0 = 0;
    let cpu0: number[] = [];
    await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
      while (started < jobs + WARM) {
        started++;
        const o = await cluster.client.run(body);
        if (o.status !== 'done') throw new Error(`${build.name}: job ended ${o.status}`);
        if (++done === WARM) {
          t0 = performance.now();
          cpu0 = pids.map(cpuMs);
        }
      }
    }));
    const measured = done - WARM;
    const per = pids.map((pid, i): [string, number] => [names.get(pid)!, (cpuMs(pid) - cpu0[i]!) / measured]);
    return { rate: measured / ((performance.now() - t0) / 1000), cpu: per.reduce((n, [, v]) => n + v, 0), per };
  } finally {
    await cluster.stop();
  }
}

async function main(): Promise<void> {
  const [other, mode = 'latency', layout = mode === 'load' ? 'auto' : 'local', jobsArg, pairsArg] = process.argv.slice(2);
  if (!other || !['latency', 'load'].includes(mode)) {
    console.error('usage: node dist/bench/ab.js <other checkout> latency local|fused|auto [jobs] | load auto|local [jobs] [pairs]');
    process.exit(2);
  }
  const builds = [await load('this', REPO_ROOT), await load('other', path.resolve(other))];
  if (mode === 'latency') return latency(builds, layout, Number(jobsArg ?? 60));
  const jobs = Number(jobsArg ?? 160);
  const ratios: number[] = [];
  for (let pair = 1; pair <= Number(pairsArg ?? 3); pair++) {
    const [before, after] = [await saturation(builds[1]!, layout, jobs), await saturation(builds[0]!, layout, jobs)];
    ratios.push(after.rate / before.rate);
    for (const [name, r] of [['other', before], ['this', after]] as const) {
      console.log(`pair ${pair} ${name.padEnd(5)}: ${r.rate.toFixed(2)} jobs/s, CPU ${r.cpu.toFixed(1)} ms/job (${r.per.map(([n, v]) => `${n.slice(0, 28)} ${v.toFixed(1)}`).join(', ')})`);
    }
  }
  console.log(`this / other, jobs/s: ${ratios.map((r) => r.toFixed(2)).join(', ')}; mean ${mean(ratios).toFixed(2)}`);
}

main().then(() => process.exit(0), (error) => {
  console.error(error);
  process.exit(1);
});
