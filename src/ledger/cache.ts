// The counters this process last saw for each agent: a batch of checks can be decided from them
// without reading, because the write that records it applies only if the database still agrees
// (STATEMENTS.writeIfUnchanged). Process-local and advisory: any doubt drops an agent's entry, and
// the general path reads everything again.
import { usageKey } from '../policy/usage.js';
import type { Counter, CounterTotals } from './state.js';

export interface KnownCounters {
  /** The span of time (epoch ms) the entry is complete for: every counter overlapping it is here. */
  from: number;
  to: number;
  /** By usageKey, with their totals. */
  counters: Map<string, Counter>;
}

/**
 * How long an agent whose counters another process changed is decided the general way: its
 * batches here would otherwise often pay a round trip for a write that finds the change.
 */
const CONTENDED_MS = 30_000;
/** Agents with more counters (one per counterparty, say) are not kept: every write would carry them all. */
const MOST_COUNTERS = 64;

export class CounterCache {
  private readonly entries = new Map<string, KnownCounters>();
  /** When another process was last found to have changed an agent's counters (performance.now()). */
  private readonly contended = new Map<string, number>();

  constructor(private readonly limit = 10_000) {}

  /** The agent's known counters, unless none are known or another process changes them too. */
  get(agentId: string, now = performance.now()): KnownCounters | undefined {
    const since = this.contended.get(agentId);
    if (since !== undefined) {
      if (now - since < CONTENDED_MS) return undefined;
      this.contended.delete(agentId);
    }
    return this.entries.get(agentId);
  }

  /** Every counter of the agent overlapping [from, to], as a committed batch left them. */
  set(agentId: string, from: number, to: number, counters: Iterable<Counter>): void {
    this.entries.delete(agentId);
    const known = new Map<string, Counter>();
    for (const c of counters) known.set(usageKey(c), { ...c, dirty: false });
    if (known.size > MOST_COUNTERS) return;
    this.entries.set(agentId, { from, to, counters: known });
    // Oldest first: the agent least recently decided goes.
    if (this.entries.size > this.limit) this.entries.delete(this.entries.keys().next().value as string);
  }

  drop(agentIds: Iterable<string>): void {
    for (const agentId of agentIds) this.entries.delete(agentId);
  }

  /** The database disagreed with what this process knew of these agents' counters. */
  markContended(agentIds: Iterable<string>, now = performance.now()): void {
    for (const agentId of agentIds) {
      this.entries.delete(agentId);
      this.contended.delete(agentId);
      this.contended.set(agentId, now);
      if (this.contended.size > this.limit) this.contended.delete(this.contended.keys().next().value as string);
    }
  }

  /** New totals of counters a statement moved under the agent's lock; other counters are unchanged. */
  update(totals: CounterTotals[]): void {
    for (const t of totals) {
      const known = this.entries.get(t.agentId);
      if (!known) continue;
      const counter = known.counters.get(usageKey(t));
      if (counter) {
        counter.reserved = t.reserved;
        counter.spent = t.spent;
        counter.count = t.count;
      } else if (t.end.getTime() > known.from && t.start.getTime() <= known.to) {
        // A counter the entry should hold but does not: read again.
        this.entries.delete(t.agentId);
      }
    }
  }
}
