/**
 * GET /api/health: NATS connected, streams present, and per step the live stage processes
 * (each announces its worker id, execution provider and models in KV photolab-stages),
 * the pull requests waiting and the backlog.
 */
import type { Bus } from '../lib/bus/bus.js';
import type { StagePresenceView } from '../lib/bus/stage-presence.js';
import { STREAMS, stageConsumer } from '../lib/bus/subjects.js';
import type { HealthResponse } from '../lib/shared/schema-types.js';

export async function checkHealth(bus: Bus, steps: string[], presence: StagePresenceView): Promise<HealthResponse> {
  const connected = !bus.nc.isClosed();
  const health: HealthResponse = {
    status: 'ok',
    nats: { connected, server: bus.nc.getServer(), version: bus.nc.info?.version },
    streams: {},
    stages: {},
  };
  if (!connected) return { ...health, status: 'down' };
  await Promise.all(Object.values(STREAMS).map(async (name) => {
    health.streams[name] = await bus.jsm.streams.info(name).then(() => true, () => false);
  }));
  // The edge's live view of the presence bucket (no KV reads per probe).
  const live = presence.all();
  await Promise.all(steps.map(async (step) => {
    const replicas = live.filter((p) => p.step === step);
    try {
      const info = await bus.jsm.consumers.info(STREAMS.stages, stageConsumer(step));
      health.stages[step] = {
        seen: replicas.length > 0 || info.num_waiting > 0 || info.num_ack_pending > 0,
        pending: info.num_pending,
        inFlight: info.num_ack_pending,
        waiting: info.num_waiting,
        replicas,
      };
    } catch {
      health.stages[step] = { seen: replicas.length > 0, pending: 0, inFlight: 0, waiting: 0, replicas };
    }
  }));
  // The old PLAYE backend's fields: whether its models ran on a GPU. Here models run in the
  // stage processes, which report the execution provider of each model in their presence info
  // (`provider: "cuda"`, or `"cuda+cpu"` for a step whose models run on both).
  health.cuda_available = live.some((p) => /"provider":"[^"]*\bcuda\b/i.test(JSON.stringify(p.info ?? {})));
  health.device = health.cuda_available ? 'cuda' : 'cpu';
  if (Object.values(health.streams).some((ok) => !ok)) health.status = 'down';
  else if (Object.values(health.stages).some((s) => !s.seen)) health.status = 'degraded';
  return health;
}
