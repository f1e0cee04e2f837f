// Which batches may commit without waiting for the WAL flush (synchronous_commit off).
import type { ReservationUpdate, StoredReservation } from './store.js';
import { contribution } from './state.js';

/** What each loaded reservation adds to its counters before the batch settles it. */
export function countedBefore(reservations: Map<string, StoredReservation>): Map<string, { reserved: number; spent: number; count: number }> {
  return new Map([...reservations.values()].map((r) => [r.id, contribution(r.status, r.countedAmount)]));
}

/**
 * Does a settlement count more than its reservation did (Stripe reports more than was reserved,
 * or money moved after a release)? Only a batch of settlements that never do may commit without
 * waiting for the WAL flush (synchronous_commit off): lost in a crash, it leaves reservations
 * counted as reserved, at their full amount — more than the truth, never less. Decisions, and
 * anything that adds to the counters, stay durable; a later durable commit flushes the WAL, and
 * with it every asynchronous commit before it.
 */
export function raisesCounts(updates: ReservationUpdate[], before: Map<string, { reserved: number; spent: number; count: number }>): boolean {
  return updates.some((u) => {
    const was = before.get(u.id);
    const now = contribution(u.status, u.amount);
    return !was || now.reserved + now.spent > was.reserved + was.spent || now.count > was.count;
  });
}
