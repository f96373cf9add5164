/**
 * Changing the replica count of streams that already hold data, without scaling them in place.
 *
 * Why: on nats-server 2.9.10 (Debian's), a stream scaled up in place (R1 -> R3, `stream edit
 * --replicas`) keeps acknowledging publishes that its new replicas never get; SIGKILL its leader
 * and acknowledged messages are gone from every copy. Reproduced here: 42-800 of ~1,000-2,300
 * acknowledged messages lost per run, the replicas reporting "current" all along; the same load
 * on a stream created at R3 lost none (docs/deploy.md, "Changing NATS_REPLICAS"). So
 * ensureTopology refuses to scale up on such a server, and this copy does it instead:
 *
 *   1. the stream's consumers are deleted (the services make theirs again at start; the
 *      metrics tables drop the rows a re-read sends twice);
 *   2. <name>_RESCALE is created with the new count, sourcing <name>: a copy on a stream made
 *      with that count from the start;
 *   3. once it holds every message (and <name> stopped growing), the copy stops sourcing,
 *      <name> is deleted and made again with its own configuration and the new count,
 *      sourcing the copy back;
 *   4. once it holds them all, the source is removed and the copy deleted.
 *
 * Messages keep their subjects, payloads, headers and order; they get new sequence numbers and
 * new timestamps (ages restart). Run it with the services stopped. Every step can be repeated:
 * a run that stopped half-way is finished by the next one.
 */
import { RetentionPolicy, type JetStreamManager, type StreamConfig, type StreamInfo } from '@nats-io/jetstream';
import { isStreamNotFound } from './nats-errors.js';

const COPY_SUFFIX = '_RESCALE';

export interface RescaleStep {
  stream: string;
  from: number;
  to: number;
  messages: number;
  consumersDeleted: string[];
  ms: number;
}

/** A nats-server that loses acknowledged messages after an in-place scale-up (measured on 2.9.10; 2.10 reworked it). */
export function scaleUpInPlaceIsUnsafe(serverVersion: string | undefined): boolean {
  const [major, minor] = (serverVersion ?? '').split('.').map(Number);
  if (!Number.isFinite(major) || !Number.isFinite(minor)) return true;
  return major! < 2 || (major === 2 && minor! < 10);
}

async function infoOrNull(jsm: JetStreamManager, name: string): Promise<StreamInfo | null> {
  try {
    return await jsm.streams.info(name);
  } catch (error) {
    if (isStreamNotFound(error)) return null;
    throw error;
  }
}

/** Polls until `done` (true) or the deadline; the error says what was awaited and how far it got. */
async function until(what: string, timeoutMs: number, done: () => Promise<string | true>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = await done().catch((error: unknown) => `(${String(error)})`);
    if (state === true) return;
    if (Date.now() > deadline) throw new Error(`rescale: ${what} not reached in ${timeoutMs} ms: ${state}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Gives `names` (streams, KV buckets as KV_<bucket>) `replicas` replicas by copy. Streams that
 * are missing or already have the count are left alone. Returns what was done, stream by stream.
 */
export async function rescaleStreams(jsm: JetStreamManager, names: string[], replicas: number, options: { timeoutMs?: number; log?: (line: string) => void } = {}): Promise<RescaleStep[]> {
  const timeoutMs = options.timeoutMs ?? 10 * 60_000;
  const log = options.log ?? (() => undefined);
  const done: RescaleStep[] = [];
  for (const name of names) {
    const started = Date.now();
    const copyName = `${name}${COPY_SUFFIX}`;
    let original = await infoOrNull(jsm, name);
    let copy = await infoOrNull(jsm, copyName);
    if (!original && !copy) continue;
    let sourcingCopy = original?.config.sources?.some((s) => s.name === copyName) ?? false;
    // Messages the stream held before this run made it source the copy (written since it was made again).
    let before = 0;
    if (original && copy && !sourcingCopy) {
      if (original.state.messages >= copy.state.messages) {
        // The stream is whole: the copy is from a run that stopped before the delete (partial)
        // or after the stream was filled back (complete). Either way it can go.
        await jsm.streams.delete(copyName);
        copy = null;
      } else {
        // Made again (by a starting service, say) after the delete but before being filled
        // back: the copy still holds what is missing, so the stream sources it now.
        if (copy.config.sources?.length) copy = await jsm.streams.update(copyName, { ...copy.config, sources: [] });
        before = original.state.messages;
        original = await jsm.streams.update(name, { ...original.config, sources: [{ name: copyName }] });
        sourcingCopy = true;
        log(`${name}: made again before it was filled; filling from ${copyName}`);
      }
    }
    if (original && !copy && (original.config.num_replicas || 1) === replicas) continue;
    // The configuration to make the stream again with: the original's, or (after a run that
    // stopped between delete and create) the one the copy carries in its description.
    const config: StreamConfig = original ? { ...original.config } : JSON.parse(copy!.config.description ?? 'null');
    if (!config?.name) throw new Error(`rescale: ${copyName} exists without ${name} and without the configuration to make it again; restore ${name} by hand`);
    const from = config.num_replicas || 1;
    const consumersDeleted: string[] = [];

    if (original && !sourcingCopy) {
      // 1-2: the copy.
      for await (const consumer of jsm.consumers.list(name)) {
        await jsm.consumers.delete(name, consumer.name);
        consumersDeleted.push(consumer.name);
      }
      const lastSeq = original.state.last_seq;
      const messages = original.state.messages;
      log(`${name}: ${messages} messages, R${from} -> R${replicas}: copying into ${copyName}`);
      await jsm.streams.add({
        name: copyName,
        description: JSON.stringify({ ...config, num_replicas: replicas }),
        storage: config.storage,
        retention: RetentionPolicy.Limits,
        num_replicas: replicas,
        sources: [{ name }],
      } as StreamConfig);
      await until(`${copyName} holding ${messages} messages`, timeoutMs, async () => {
        const c = (await jsm.streams.info(copyName)).state.messages;
        const now = await jsm.streams.info(name);
        // A work queue hands each message to the copy and drops it: it empties instead.
        if (now.state.last_seq !== lastSeq) throw new Error(`rescale: ${name} is still being written to (last sequence ${lastSeq} -> ${now.state.last_seq}); stop the services first`);
        return c >= messages || `${c}/${messages}`;
      });
      copy = await jsm.streams.info(copyName);
      // 3: the stream made again with the new count, filled from the copy.
      await jsm.streams.delete(name);
      original = null;
    }
    const copied = copy!.state.messages;
    if (!original) {
      // The copy stops sourcing first: the stream sourcing it back would be a cycle.
      if (copy!.config.sources?.length) copy = await jsm.streams.update(copyName, { ...copy!.config, sources: [] });
      await jsm.streams.add({ ...config, num_replicas: replicas, sources: [{ name: copyName }] });
      log(`${name}: made again with R${replicas}, filling from ${copyName}`);
    }
    await until(`${name} holding the ${copied} copied messages`, timeoutMs, async () => {
      const n = (await jsm.streams.info(name)).state.messages - before;
      return n >= copied || `${n}/${copied}`;
    });
    // 4: no more source; the copy goes.
    const filled = await jsm.streams.info(name);
    await jsm.streams.update(name, { ...filled.config, sources: [] });
    await jsm.streams.delete(copyName);
    log(`${name}: R${replicas}, ${filled.state.messages} messages`);
    done.push({ stream: name, from, to: replicas, messages: filled.state.messages, consumersDeleted, ms: Date.now() - started });
  }
  return done;
}
