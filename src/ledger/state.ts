// The ledger's in-memory picture of one agent while its lock is held: the counters it may read or
// change, and recent reservations for duplicate checks. Pure bookkeeping, no I/O.
import type { ReservationFacts, Usage, UsageSpec } from '../policy/usage.js';
import { counts, usageKey } from '../policy/usage.js';

export type ReservationStatus = 'reserved' | 'committed' | 'released' | 'unknown';

export interface Counter extends UsageSpec {
  agentId: string;
  reserved: number;
  spent: number;
  count: number;
  dirty: boolean;
}

/** A counter's totals as a statement returned them. */
export type CounterTotals = Omit<Counter, 'dirty'>;

/** What a reservation in a given status adds to every counter it falls in. */
export function contribution(status: ReservationStatus, amount: number): { reserved: number; spent: number; count: number } {
  switch (status) {
    case 'reserved':
    case 'unknown':
      return { reserved: amount, spent: 0, count: 1 };
    case 'committed':
      return { reserved: 0, spent: amount, count: 1 };
    case 'released':
      return { reserved: 0, spent: 0, count: 0 };
  }
}

export class AgentState {
  readonly counters = new Map<string, Counter>();
  readonly recent: ReservationFacts[] = [];

  constructor(readonly agentId: string) {}

  usage(): Map<string, Usage> {
    const usage = new Map<string, Usage>();
    for (const [key, c] of this.counters) usage.set(key, { amount: c.reserved + c.spent, count: c.count });
    return usage;
  }

  addCounter(counter: Omit<Counter, 'dirty' | 'agentId'>, dirty: boolean): void {
    this.counters.set(usageKey(counter), { ...counter, agentId: this.agentId, dirty });
  }

  /** Apply a change of one reservation to every counter it falls in. */
  apply(facts: ReservationFacts, delta: { reserved: number; spent: number; count: number }): void {
    for (const counter of this.counters.values()) {
      if (!counts(counter, facts)) continue;
      counter.reserved += delta.reserved;
      counter.spent += delta.spent;
      counter.count += delta.count;
      counter.dirty = true;
    }
  }

  dirtyCounters(): Counter[] {
    return [...this.counters.values()].filter((c) => c.dirty);
  }
}
