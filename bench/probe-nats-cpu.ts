// Ad-hoc: where does nats-server CPU go per job? (not committed)
import { busCost, multipartBody, startCluster } from './lib/cluster.js';
import { photo, sleep } from './lib/util.js';
const transport = process.argv[2] ?? 'local';
const fused = transport === 'fused';
const pipeline = [{ step: 'decode' }, { step: 'detect_objects', params: { model: 'yolox' } }, { step: 'encode' }];
const steps = pipeline.map((p) => p.step);
const cluster = await startCluster({ workers: fused ? { [steps.join(',')]: 1 } : Object.fromEntries(steps.map((s) => [s, 1])), env: { FRAME_TRANSPORT: fused ? 'local' : transport } });
const body = multipartBody((await photo(1)).bytes, pipeline);
for (let i = 0; i < 3; i++) await cluster.client.run(body);
const idle0 = await busCost(cluster);
await sleep(5000);
const idle1 = await busCost(cluster);
const n = 20;
for (let i = 0; i < n; i++) await cluster.client.run(body);
const busy = await busCost(cluster);
console.log(JSON.stringify({ transport, idleCpuMsPerS: (idle1.natsCpuMs - idle0.natsCpuMs) / 5, cpuPerJob: (busy.natsCpuMs - idle1.natsCpuMs) / n, writesPerJob: (busy.writes - idle1.writes) / n }));
await cluster.stop();
process.exit(0);
