/**
 * How every long-lived consumer of the services pulls: requests that expire after 5 s, so
 * heartbeats every 2.5 s, instead of the client's 30 s default. A consumer whose server died
 * (a nats-server restart, a cluster leader change) is then noticed, and an ordered one made
 * again, after two missed heartbeats: within seconds. Measured with the default: the 3-node
 * cluster test saw 30-45 s stalls of the stages, and WebSocket clients following a job through
 * a nats-server restart heard of its end 35 s after it (reliability suite). Idle, it costs one
 * pull per 5 s and consumer.
 */
export const SHORT_PULLS = { expires: 5000 } as const;
