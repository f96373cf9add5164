/**
 * `npm run bench [-- section ...]`: runs the benchmark sections (all by default), prints each
 * section's table, and writes BENCHMARKS.md (machine, date, commands, results). A run of only
 * some sections replaces just those sections in an existing BENCHMARKS.md.
 *
 * Sections: blobs, ingest, overhead, throughput, models, bus. Options: --quick (fewer samples).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { blobsSection } from './sections/blobs.js';
import type { SectionResult } from './sections/types.js';
import { machine, progress, REPO_ROOT, table } from './lib/util.js';
import { applyCollectorSettings, loadConfig, withAllocatorDefaults } from '../services/lib/shared/config.js';

// glibc reads its allocator settings when a process starts: the bench re-runs itself under the
// ones that `npm start` gives the services, so that the in-process side (a) of a comparison
// allocates frames as the services do.
if (process.env.MALLOC_MMAP_THRESHOLD_ === undefined) {
  const child = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env: withAllocatorDefaults(process.env) });
  process.exit(child.status ?? 1);
}
// And the collector settings that the services apply at their start (HEAP_GROWTH_PERCENT,
// IDLE_GC_MS), for the same reason.
applyCollectorSettings(loadConfig());

type Runner = (options: { quick: boolean }) => Promise<SectionResult>;
const SECTIONS: Record<string, { order: number; run: () => Promise<Runner> }> = {
  overhead: { order: 1, run: async () => (await import("./sections/overhead.js")).overheadSection },
  throughput: { order: 2, run: async () => (await import('./sections/throughput.js')).throughputSection },
  ingest: { order: 3, run: async () => (await import('./sections/ingest.js')).ingestSection },
  blobs: { order: 4, run: async () => blobsSection },
  models: { order: 5, run: async () => (await import('./sections/models.js')).modelsSection },
  bus: { order: 6, run: async () => (await import('./sections/bus.js')).busSection },
};

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const wanted = args.filter((a) => !a.startsWith('--'));
for (const name of wanted) {
  if (!SECTIONS[name]) {
    console.error(`unknown section "${name}"; sections: ${Object.keys(SECTIONS).join(', ')}`);
    process.exit(2);
  }
}
const names = (wanted.length ? wanted : Object.keys(SECTIONS)).sort((a, b) => SECTIONS[a]!.order - SECTIONS[b]!.order);
const file = path.join(REPO_ROOT, 'BENCHMARKS.md');
const began = Date.now();

const results: Record<string, { result: SectionResult; seconds: number }> = {};
for (const name of names) {
  progress(`section ${name}...`);
  const start = Date.now();
  const run = await SECTIONS[name]!.run();
  let result: SectionResult;
  try {
    result = await run({ quick });
  } catch (error) {
    console.error(error);
    result = { title: name, markdown: `**This section failed:** ${String((error as Error).message ?? error).split('\n')[0]}` };
    process.exitCode = 1;
  }
  const seconds = (Date.now() - start) / 1000;
  results[name] = { result, seconds };
  console.log(`\n## ${result.title}  (${seconds.toFixed(0)} s)\n\n${result.markdown}\n`);
}

const header = [
  '# Benchmarks',
  '',
  'Written by `npm run bench` (bench/main.ts); `npm run bench -- <section>` re-runs one section and replaces it here.',
  'Sections: `overhead`, `throughput`, `ingest`, `blobs`, `models`, `bus`; `--quick` takes fewer samples.',
  'Models and photos: MODELS_DIR (default ../shared/models), FIXTURES_DIR (default ../shared/fixtures).',
  '',
  '## Machine',
  '',
  table(['', ''], Object.entries(machine())),
  '',
].join('\n');

const block = (name: string, r: SectionResult, seconds: number) => [
  `<!-- section:${name} -->`,
  `## ${r.title}`,
  '',
  `Run ${new Date().toISOString()} with \`npm run bench -- ${name}${quick ? ' --quick' : ''}\` (${seconds.toFixed(0)} s).`,
  '',
  r.markdown,
  `<!-- /section:${name} -->`,
].join('\n');

let sections: Record<string, string> = {};
if (existsSync(file) && names.length < Object.keys(SECTIONS).length) {
  const old = readFileSync(file, 'utf8');
  for (const match of old.matchAll(/<!-- section:(\w+) -->[\s\S]*?<!-- \/section:\1 -->/g)) sections[match[1]!] = match[0];
}
for (const [name, { result, seconds }] of Object.entries(results)) sections[name] = block(name, result, seconds);
sections = Object.fromEntries(Object.entries(sections).sort(([a], [b]) => (SECTIONS[a]?.order ?? 9) - (SECTIONS[b]?.order ?? 9)));
const summaryPath = path.join(REPO_ROOT, 'bench', 'SUMMARY.md');
const summary = existsSync(summaryPath) ? `${readFileSync(summaryPath, 'utf8').trim()}\n\n` : '';
const total = (Date.now() - began) / 1000;
writeFileSync(file, `${header}\n${summary}${Object.values(sections).join('\n\n')}\n\n---\nLast command: \`npm run bench${args.length ? ` -- ${args.join(' ')}` : ''}\` on ${os.hostname()}, ${new Date().toISOString()}, ${total.toFixed(0)} s.\n`);
progress(`wrote ${file} (${total.toFixed(0)} s)`);
