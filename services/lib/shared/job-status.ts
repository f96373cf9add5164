/**
 * Which job statuses and events are terminal: one list for the bus, the edge, the CLI and the
 * load tool. Kept free of any transport so that clients import it without NATS.
 */
export const TERMINAL_STATUSES = ['done', 'failed', 'canceled', 'timeout'] as const;
export type TerminalStatus = (typeof TERMINAL_STATUSES)[number];

const TERMINAL: ReadonlySet<string> = new Set(TERMINAL_STATUSES);
export const isTerminal = (status: string): status is TerminalStatus => TERMINAL.has(status);

export const TERMINAL_EVENT = {
  done: 'job.done', failed: 'job.failed', canceled: 'job.canceled', timeout: 'job.timeout',
} as const satisfies Record<TerminalStatus, string>;

const TERMINAL_EVENTS: ReadonlySet<string> = new Set(Object.values(TERMINAL_EVENT));
export const isTerminalEvent = (type: string) => TERMINAL_EVENTS.has(type);
