/**
 * NATS micro services protocol (io.nats.micro.v1), so `nats micro ls|info|stats` and any micro
 * client see the stage processes. Each step hosted by a process is one service instance
 * (name `photolab-<step>`, a fresh id per process) answering $SRV.PING|INFO|STATS, with or
 * without the name and id tokens.
 *
 * Written here rather than with @nats-io/services: that package exists only as a 3.0.0
 * prerelease (not matching the 3.4.0 client packages), and its statistics count core NATS
 * requests it handles itself, timing synchronous handlers only. A stage's work arrives through
 * a JetStream pull consumer and is asynchronous, so the runner's observer feeds the counts and
 * the processing time is measured from a message's start to its settling (ack, nak or term).
 * The endpoint's subject is the JetStream subject the step consumes (photolab.stage.<step>);
 * nothing subscribes to it on core NATS (that would receive every step message a second time).
 * The integration test checks the answers with @nats-io/services' own client.
 */
import { nuid, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { isNoResponders } from './nats-errors.js';

const MICRO_PING = 'io.nats.micro.v1.ping_response';
const MICRO_INFO = 'io.nats.micro.v1.info_response';
const MICRO_STATS = 'io.nats.micro.v1.stats_response';

export interface EndpointStats {
  num_requests: number;
  num_errors: number;
  last_error: string;
  processing_time: number;
  average_processing_time: number;
}

export interface MicroEndpoint {
  name: string;
  subject: string;
  queue_group: string;
  metadata?: Record<string, string>;
  /** Custom statistics data (backlog, models, provider), asked for at each $SRV.STATS. */
  data?: () => Promise<unknown> | unknown;
}

export interface MicroServiceOptions {
  name: string;
  version: string;
  description: string;
  metadata: Record<string, string>;
  endpoint: MicroEndpoint;
}

export interface MicroService {
  id: string;
  /** A unit of work started (a step message being handled). */
  started(): void;
  /** It settled; the time since its start is added to processing_time. */
  settled(): void;
  /** A run ended in error (counted in num_errors, remembered as last_error). */
  failed(error: string): void;
  stats(): EndpointStats;
  stop(): Promise<void>;
}

/** Registers a service instance on the connection until stop(). */
export function addMicroService(nc: NatsConnection, options: MicroServiceOptions): MicroService {
  const id = nuid.next();
  const started = new Date().toISOString();
  const counters = { num_requests: 0, num_errors: 0, last_error: '', processingNs: 0n };
  // Start times of the units in flight. Which start pairs with which settle does not matter:
  // the sum of (settle - start) over finished units is the same for any pairing.
  const inFlight: bigint[] = [];
  const identity = () => ({ name: options.name, id, version: options.version, metadata: options.metadata });
  const endpointInfo = () => ({ name: options.endpoint.name, subject: options.endpoint.subject, queue_group: options.endpoint.queue_group, metadata: options.endpoint.metadata ?? null });
  const stats = (): EndpointStats => {
    const total = Number(counters.processingNs);
    return {
      num_requests: counters.num_requests,
      num_errors: counters.num_errors,
      last_error: counters.last_error,
      processing_time: total,
      average_processing_time: counters.num_requests ? Math.round(total / counters.num_requests) : 0,
    };
  };
  const answers: Record<string, () => Promise<unknown>> = {
    PING: async () => ({ type: MICRO_PING, ...identity() }),
    INFO: async () => ({ type: MICRO_INFO, ...identity(), description: options.description, endpoints: [endpointInfo()] }),
    STATS: async () => ({
      type: MICRO_STATS, ...identity(), started,
      endpoints: [{ ...endpointInfo(), ...stats(), data: (await options.endpoint.data?.()) ?? null }],
    }),
  };
  const subs: Subscription[] = [];
  for (const [verb, answer] of Object.entries(answers)) {
    for (const subject of [`$SRV.${verb}`, `$SRV.${verb}.${options.name}`, `$SRV.${verb}.${options.name}.${id}`]) {
      subs.push(nc.subscribe(subject, {
        callback: (error, msg) => {
          if (error) return;
          answer().then((body) => msg.respond(JSON.stringify(body)), () => undefined);
        },
      }));
    }
  }
  return {
    id,
    started: () => inFlight.push(process.hrtime.bigint()),
    settled: () => {
      const start = inFlight.shift();
      if (start === undefined) return;
      counters.num_requests++;
      counters.processingNs += process.hrtime.bigint() - start;
    },
    failed: (error) => {
      counters.num_errors++;
      counters.last_error = error;
    },
    stats,
    async stop() {
      for (const sub of subs) sub.unsubscribe();
      await nc.flush().catch(() => undefined);
    },
  };
}

/** Asks every service (or those named `name`) for `verb`; collects the answers that arrive within maxWaitMs. */
export async function discoverServices<T = any>(nc: NatsConnection, verb: 'PING' | 'INFO' | 'STATS', name?: string, maxWaitMs = 1000): Promise<T[]> {
  const subject = name ? `$SRV.${verb}.${name}` : `$SRV.${verb}`;
  const found: T[] = [];
  try {
    const replies = await nc.requestMany(subject, '', { maxWait: maxWaitMs });
    for await (const reply of replies) {
      if (reply.data.length > 0) found.push(reply.json<T>());
    }
  } catch (error) {
    // No responders at all: no services, not a failure.
    if (!isNoResponders(error)) throw error;
  }
  return found;
}
