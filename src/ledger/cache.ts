// The counters this process last saw for each agent, complete for a span of time: a batch of
// checks can be decided from them without reading, because the write that records it applies only
// if the database still agrees (STATEMENTS.writeIfUnchanged). Process-local and advisory: any
// doubt drops an agent's entry, and the general path reads everything again.
import { usageKey } from '../policy/usage.js';
import type { UsageSpec } from '../policy/usage.js';
import type { Counter } from './state.js';

export interface KnownCounters {
  /** Every counter of the agent whose window overlaps [from, to] (epoch ms), with its totals. */
  from: number;
  to: number;
  counters: Counter[];
}

/** Totals of one counter as a statement returned them. */
export interface CounterTotals extends Omit<UsageSpec, 'end'> {
  agentId: string;
  reserved: number;
  spent: number;
  count: number;
}

/**
 * How long an agent whose counters another process changed is decided the general way: its
 * batches there would otherwise often pay a round trip for a write that finds the change.
 */
const CONTENDED_MS = 30_000;

export class CounterCache {
  private readonly entries = new Map<string, KnownCounters>();
  /** When another process was last found to have changed an agent's counters (ms). */
  private readonly contended = new Map<string, number>();

  constructor(private readonly limit = 10_000) {}

  /** The agent's known counters, unless none are known or another process changes them too. */
  get(agentId: string, now = Date.now()): KnownCounters | undefined {
    const since = this.contended.get(agentId);
    if (since !== undefined) {
      if (now - since < CONTENDED_MS) return undefined;
      this.contended.delete(agentId);
    }
    return this.entries.get(agentId);
  }

  /** The database disagreed with what this process knew of these agents. */
  markContended(agentIds: Iterable<string>, now = Date.now()): void {
    for (const agentId of agentIds) {
      this.entries.delete(agentId);
      this.contended.delete(agentId);
      this.contended.set(agentId, now);
      if (this.contended.size > this.limit) this.contended.delete(this.contended.keys().next().value as string);
    }
  }

  set(agentId: string, known: KnownCounters): void {
    this.entries.delete(agentId);
    this.entries.set(agentId, { ...known, counters: known.counters.map((c) => ({ ...c, dirty: false })) });
    // Oldest first: the least recently decided agent goes.
    if (this.entries.size > this.limit) this.entries.delete(this.entries.keys().next().value as string);
  }

  drop(agentIds: Iterable<string>): void {
    for (const agentId of agentIds) this.entries.delete(agentId);
  }

  /** New totals of counters a statement moved under the agent's lock; other counters are unchanged. */
  update(totals: CounterTotals[]): void {
    for (const t of totals) {
      const known = this.entries.get(t.agentId);
      const key = usageKey(t);
      const counter = known?.counters.find((c) => usageKey(c) === key);
      if (!known) continue;
      if (!counter) {
        // A counter the entry should hold or one outside its span: either way, read again.
        this.entries.delete(t.agentId);
        continue;
      }
      counter.reserved = t.reserved;
      counter.spent = t.spent;
      counter.count = t.count;
    }
  }
}
