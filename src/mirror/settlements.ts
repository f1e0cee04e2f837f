// Settling a checked call by Stripe's answer. The money has moved (or not) whatever the database
// says, so a settlement it cannot take now (down, restarting, failing over) is tried again in the
// background, with backoff, for up to RETRY_FOR_MS. Until it lands the reservation stays counted as
// reserved: at the amount reserved, which is less than the truth only when Stripe moved more than
// was reserved. Retries are tracked per agent, so a capture's look-up can wait for them, and
// abandoned (and named in the log) when the gateway stops.
import pRetry from 'p-retry';
import type { Logger } from 'pino';
import { isDatabaseUnavailable } from '../errors.js';
import type { Ledger, SettleOptions } from '../ledger/ledger.js';
import type { ReservationStatus } from '../ledger/state.js';

export type Settled = Exclude<ReservationStatus, 'reserved'>;

/** How long a settlement the database could not take is tried again. */
export const RETRY_FOR_MS = 5 * 60_000;

interface Retry {
  agentId: string;
  key: string;
  status: Settled;
  done: Promise<void>;
}

export class Settlements {
  private readonly retries = new Set<Retry>();
  private readonly stopping = new AbortController();

  constructor(private readonly ledger: Ledger) {}

  /** Settles now; if the database cannot take it, keeps trying in the background. Other failures are the caller's. */
  async settle(log: Logger, agentId: string, key: string, status: Settled, options: SettleOptions): Promise<void> {
    try {
      await this.ledger.settle(agentId, key, status, options);
    } catch (error) {
      if (!isDatabaseUnavailable(error) || this.stopping.signal.aborted) throw error;
      log.warn({ err: error, agent_id: agentId }, 'the database cannot take a settlement now; retrying it in the background');
      const retry: Retry = { agentId, key, status, done: Promise.resolve() };
      retry.done = pRetry(() => this.ledger.settle(agentId, key, status, { ...options, defer: false }), {
        retries: Infinity, minTimeout: 250, maxTimeout: 15_000, maxRetryTime: RETRY_FOR_MS, signal: this.stopping.signal,
        shouldRetry: ({ error: failure }) => isDatabaseUnavailable(failure),
      }).then(
        () => log.info({ agent_id: agentId }, 'settlement retried and recorded'),
        (failure: unknown) => log.error({ err: failure, agent_id: agentId, idempotency_key: key, status }, 'settlement given up; the reservation stays counted as reserved'),
      ).finally(() => this.retries.delete(retry));
      this.retries.add(retry);
    }
  }

  /** Resolves once every settlement of this agent asked for so far is done: deferred, queued or retried. */
  async flush(agentId: string): Promise<void> {
    await this.ledger.flush(agentId);
    await Promise.all([...this.retries].filter((retry) => retry.agentId === agentId).map((retry) => retry.done));
  }

  /** How many settlements are being retried. */
  get pending(): number {
    return this.retries.size;
  }

  /** Stops retrying (the gateway is stopping); each settlement abandoned is named in the log. */
  async stop(): Promise<void> {
    const left = [...this.retries];
    this.stopping.abort(new Error('the gateway is stopping'));
    await Promise.all(left.map((retry) => retry.done));
  }
}
