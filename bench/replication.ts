/**
 * What R3 costs against R1, side by side in one run: the same load (decode -> detect_objects ->
 * encode, a small photo, a closed loop of IN_FLIGHT jobs) against
 *   - one nats-server, streams R1 (the embedded default),
 *   - a 3-node cluster, streams R1 (each stream on one server: clustering without replication),
 *   - a 3-node cluster, streams R3 (every write acknowledged by two of three servers).
 * Prints jobs/s and the user + system CPU of all nats-server processes per job (from /proc).
 * The services are the product's own processes (edge, one per step), as in the cluster test.
 *
 *   npm run build && node dist/bench/replication.js [jobs per setup, default 60] [rounds, default 1]
 *
 * On a shared 2-core machine the jobs/s moves with whatever else runs; the CPU per job is the
 * steadier figure. Rounds > 1 interleave the setups (R1, R1x3, R3, R1, ...) to spread the drift.
 */
import { readFileSync } from 'node:fs';
import { runLoad, startServices } from '../test/helpers/cluster-system.js';
import { startNatsCluster } from '../test/helpers/nats-cluster.js';
import { fixture } from '../test/helpers/paths.js';

const JOBS = Number(process.argv[2] ?? 60);
const ROUNDS = Number(process.argv[3] ?? 1);
const WARM = 5;
const IN_FLIGHT = 6;
const STEPS = ['decode', 'detect_objects', 'encode'];
const pipeline = [{ step: 'decode' }, { step: 'detect_objects' }, { step: 'encode' }];
const image = readFileSync(fixture('HappyFish.jpg'));
const setups = [
  { name: '1 server, R1', nodes: 1, replicas: 1 },
  { name: '3-node cluster, R1', nodes: 3, replicas: 1 },
  { name: '3-node cluster, R3', nodes: 3, replicas: 3 },
];

interface Figures { jobsPerS: number; natsCpuMsPerJob: number; natsCpuS: number; jobs: number }
const results = new Map<string, Figures[]>();

for (let round = 0; round < ROUNDS; round++) {
  for (const setup of setups) {
    process.stderr.write(`replication: ${setup.name}, round ${round + 1}/${ROUNDS}, ${JOBS} jobs\n`);
    const cluster = await startNatsCluster(setup.nodes, 'photolab-bench-repl-');
    try {
      const services = await startServices({ natsUrls: cluster.urls, replicas: setup.replicas, steps: STEPS });
      try {
        // Warm-up: models loaded, consumers pulling, caches filled; not measured.
        const warm = await runLoad(services, { jobs: WARM, inFlight: IN_FLIGHT, image, pipeline, timeoutMs: 120_000 });
        await warm.finished;
        await warm.close();
        const cpu0 = cluster.cpuSeconds();
        const load = await runLoad(services, { jobs: JOBS, inFlight: IN_FLIGHT, image, pipeline, timeoutMs: 600_000 });
        const figures = await load.finished;
        await load.close();
        const natsCpuS = cluster.cpuSeconds() - cpu0;
        if (figures.completed !== JOBS) throw new Error(`${setup.name}: ${JSON.stringify(figures)}`);
        const list = results.get(setup.name) ?? [];
        list.push({ jobsPerS: figures.completed / figures.seconds, natsCpuMsPerJob: (natsCpuS * 1000) / figures.completed, natsCpuS, jobs: figures.completed });
        results.set(setup.name, list);
      } finally {
        await services.stop();
      }
    } finally {
      await cluster.stop();
    }
  }
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const base = results.get(setups[0]!.name)!;
const rows = setups.map((s) => {
  const r = results.get(s.name)!;
  const rate = mean(r.map((x) => x.jobsPerS));
  const cpu = mean(r.map((x) => x.natsCpuMsPerJob));
  return `| ${s.name} | ${r.reduce((a, x) => a + x.jobs, 0)} | ${rate.toFixed(2)} | ${(rate / mean(base.map((x) => x.jobsPerS))).toFixed(2)} | ${cpu.toFixed(1)} | ${(cpu / mean(base.map((x) => x.natsCpuMsPerJob))).toFixed(2)} |`;
});
console.log([
  `decode -> detect_objects -> encode, HappyFish.jpg (259x194), ${IN_FLIGHT} jobs in flight, ${JOBS} jobs per setup after ${WARM} warm-up, ${ROUNDS} round(s); FRAME_TRANSPORT=auto.`,
  '',
  '| setup | jobs | jobs/s | vs 1 server | nats-server CPU ms / job (all servers) | vs 1 server |',
  '|---|---|---|---|---|---|',
  ...rows,
].join('\n'));
