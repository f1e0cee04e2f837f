// Settlement of card authorizations. A processor reports an authorization's state (held, declined,
// reversed, expired, closed) and its captures and refunds, late, out of order or twice. We keep the
// latest state and every capture/refund keyed by id, and recompute what the authorization's
// reservations count from them each time — never by adding deltas — so a redelivery changes
// nothing and the order of arrival does not matter.
import { newId } from '../ids.js';
import type { AuthorizationUpdate, SettlementUpdate, TransactionUpdate } from '../../adapters/processor.js';
import type { Action, CompiledPolicy } from '../policy/model.js';
import type { ReservationFacts } from '../policy/usage.js';
import type { AgentState, ReservationStatus } from './state.js';
import { contribution } from './state.js';
import type { CheckRow, ReservationUpdate } from './store.js';
import type { Tx } from './transaction.js';

export interface AuthorizationSettlementInput {
  agentId: string;
  update: SettlementUpdate;
  /** The agent's bound policy, named on a spend recorded without a reservation. */
  policy: CompiledPolicy;
  timezone: string;
}

/** The action a settled card spend counts as, for the counters it falls in. */
export function settledAction(input: AuthorizationSettlementInput): Action {
  const u = input.update;
  return { actionType: 'card_authorization', amount: u.amount.amount, currency: u.amount.currency, counterparty: u.merchant.name ?? '' };
}

export interface AuthorizationSettlement {
  reference: string;
  /** Money counted as spent (captures less refunds) and still held, after this update. */
  spent: number;
  held: number;
  /** Reservations whose status or amount changed. */
  changed: number;
  /** A spend the processor approved without our reservation (fail mode, or a request we never saw). */
  recorded: boolean;
}

interface Snapshot {
  status: AuthorizationUpdate['status'];
  approved: boolean;
  amount: number;
  occurredAt: Date;
}

interface Reservation {
  id: string;
  status: ReservationStatus;
  countedAmount: number;
  requested: number;
  actionType: string;
  currency: string;
  counterparty: string;
  createdAt: Date;
}

export interface LoadedAuthorization {
  reference: string;
  snapshot: Snapshot | undefined;
  captured: number;
  refunded: number;
  hasTransactions: boolean;
  reservations: Reservation[];
  /** Times whose counters the settlement may touch. */
  times: number[];
}

const TERMINAL = new Set(['closed', 'reversed', 'expired', 'declined']);

/** Which state wins: a final state is never undone by a late 'pending'; otherwise the later one. */
export function newer(current: Snapshot | undefined, incoming: Snapshot): boolean {
  if (!current) return true;
  const currentFinal = TERMINAL.has(current.status);
  const incomingFinal = TERMINAL.has(incoming.status);
  if (currentFinal !== incomingFinal) return incomingFinal;
  return incoming.occurredAt.getTime() >= current.occurredAt.getTime();
}

/**
 * Store the update (under the agent's lock, in the batch's transaction) and load everything the
 * authorization's reservations are recomputed from.
 */
export async function loadAuthorizations(tx: Tx, agentId: string, input: AuthorizationSettlementInput): Promise<LoadedAuthorization> {
  const db = (table: string) => tx.knex(table).connection(tx.connection);
  const u = input.update;
  const reference = u.kind === 'authorization' ? u.authorizationId : (u.authorizationId ?? u.transactionId);
  const existing = await db('card_authorizations').where({ processor: u.processor, id: reference }).first();
  let snapshot: Snapshot | undefined = existing ? { status: existing.status, approved: existing.approved, amount: Number(existing.amount), occurredAt: existing.occurred_at } : undefined;
  if (u.kind === 'authorization') {
    const incoming: Snapshot = { status: u.status, approved: u.approved, amount: u.amount.amount, occurredAt: u.occurredAt };
    if (newer(snapshot, incoming)) {
      snapshot = incoming;
      await db('card_authorizations')
        .insert({ processor: u.processor, id: reference, agent_id: agentId, card_id: u.cardId, currency: u.amount.currency, status: incoming.status, approved: incoming.approved, amount: incoming.amount, occurred_at: incoming.occurredAt })
        .onConflict(['processor', 'id'])
        .merge(['status', 'approved', 'amount', 'occurred_at', 'updated_at']);
    }
  } else {
    await db('card_transactions')
      .insert(transactionRow(agentId, u))
      .onConflict(['processor', 'id'])
      .ignore();
  }
  const transactions = await db('card_transactions')
    .where({ processor: u.processor })
    .andWhere((q) => q.where({ authorization_id: reference }).orWhere((w) => w.whereNull('authorization_id').andWhere({ id: reference }))) as { type: string; amount: string | number }[];
  const captured = transactions.filter((t) => t.type === 'capture').reduce((sum, t) => sum + Number(t.amount), 0);
  const refunded = transactions.filter((t) => t.type === 'refund').reduce((sum, t) => sum + Number(t.amount), 0);
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const rows: any[] = await db('decisions').where({ agent_id: agentId, reference, source: u.processor }).whereNotNull('status').orderBy('created_at').orderBy('id');
  const reservations: Reservation[] = rows.map((r) => ({
    id: r.id, status: r.status, countedAmount: Number(r.counted_amount), requested: Number(r.amount), actionType: r.action_type,
    currency: r.currency, counterparty: r.counterparty, createdAt: r.created_at,
  }));
  const times = reservations.length > 0 ? reservations.map((r) => r.createdAt.getTime()) : [(snapshot?.occurredAt ?? u.occurredAt).getTime()];
  return { reference, snapshot, captured, refunded, hasTransactions: transactions.length > 0, reservations, times };
}

function transactionRow(agentId: string, u: TransactionUpdate) {
  return {
    processor: u.processor, id: u.transactionId, authorization_id: u.authorizationId, agent_id: agentId, card_id: u.cardId,
    type: u.type, amount: u.amount.amount, currency: u.amount.currency, occurred_at: u.occurredAt,
  };
}

/** What the authorization counts now: net captured money is spent; an open approved hold is held. */
export function authorizationTotals(a: Pick<LoadedAuthorization, 'snapshot' | 'captured' | 'refunded' | 'hasTransactions' | 'reservations'>): { spent: number; held: number } | undefined {
  const spent = Math.max(0, a.captured - a.refunded);
  if (!a.snapshot) {
    // Captures arrived before the authorization's own events: keep holding what was reserved beyond them.
    if (!a.hasTransactions) return undefined;
    const reserved = a.reservations.filter((r) => r.status !== 'released').reduce((sum, r) => sum + r.requested, 0);
    return { spent, held: Math.max(0, reserved - a.captured) };
  }
  const open = a.snapshot.status === 'pending' && a.snapshot.approved;
  return { spent, held: open ? Math.max(0, a.snapshot.amount - a.captured) : 0 };
}

/**
 * Spread the totals over the authorization's reservations: the first carries the money (spent,
 * else held), a second the hold when both exist; the rest keep counting as attempts with amount 0.
 * With one reservation and both kinds of money, all of it counts as spent (never less than real).
 */
export function distribute(count: number, totals: { spent: number; held: number }): { status: ReservationStatus; amount: number }[] {
  const { spent, held } = totals;
  if (spent === 0 && held === 0) return Array.from({ length: count }, () => ({ status: 'released' as const, amount: 0 }));
  const rest: ReservationStatus = spent > 0 ? 'committed' : 'reserved';
  const out: { status: ReservationStatus; amount: number }[] = [];
  if (spent > 0 && held > 0) {
    if (count === 1) return [{ status: 'committed', amount: spent + held }];
    out.push({ status: 'committed', amount: spent }, { status: 'reserved', amount: held });
  } else {
    out.push({ status: rest, amount: spent > 0 ? spent : held });
  }
  while (out.length < count) out.push({ status: rest, amount: 0 });
  return out;
}

/** Inside the batch: move the counters from what the reservations counted to what they count now. */
export function applyAuthorization(input: AuthorizationSettlementInput, loaded: LoadedAuthorization, state: AgentState, updates: ReservationUpdate[], rows: CheckRow[]): AuthorizationSettlement {
  const totals = authorizationTotals(loaded);
  const result: AuthorizationSettlement = { reference: loaded.reference, spent: totals?.spent ?? 0, held: totals?.held ?? 0, changed: 0, recorded: false };
  if (!totals) return result;
  if (loaded.reservations.length === 0) {
    const amount = totals.spent + totals.held;
    if (amount > 0) {
      rows.push(recordedSpend(input, loaded, totals, amount));
      const facts = factsOf(input, loaded, amount);
      state.apply(facts, contribution(totals.spent > 0 ? 'committed' : 'reserved', amount));
      result.recorded = true;
    }
    return result;
  }
  const targets = distribute(loaded.reservations.length, totals);
  loaded.reservations.forEach((r, i) => {
    const target = targets[i] ?? { status: 'released' as const, amount: 0 };
    if (target.status === r.status && target.amount === r.countedAmount) return;
    const facts: ReservationFacts = { actionType: r.actionType, amount: r.countedAmount, currency: r.currency, counterparty: r.counterparty, occurredAt: r.createdAt };
    const before = contribution(r.status, r.countedAmount);
    const after = contribution(target.status, target.amount);
    state.apply(facts, { reserved: after.reserved - before.reserved, spent: after.spent - before.spent, count: after.count - before.count });
    r.status = target.status;
    r.countedAmount = target.amount;
    const earlier = updates.findIndex((x) => x.id === r.id);
    if (earlier >= 0) updates.splice(earlier, 1);
    updates.push({ id: r.id, status: target.status, amount: target.amount, reference: null });
    result.changed++;
  });
  return result;
}

function factsOf(input: AuthorizationSettlementInput, loaded: LoadedAuthorization, amount: number): ReservationFacts {
  const u = input.update;
  return { actionType: 'card_authorization', amount, currency: u.amount.currency, counterparty: u.merchant.name ?? '', occurredAt: loaded.snapshot?.occurredAt ?? u.occurredAt };
}

function recordedSpend(input: AuthorizationSettlementInput, loaded: LoadedAuthorization, totals: { spent: number }, amount: number): CheckRow {
  const u = input.update;
  const facts = factsOf(input, loaded, amount);
  return {
    checkId: newId('chk'), agentId: input.agentId, source: u.processor, reference: loaded.reference,
    action: { actionType: facts.actionType, amount, currency: facts.currency, counterparty: facts.counterparty },
    metadata: { card_id: u.cardId, recorded_from: u.kind === 'authorization' ? 'authorization_event' : 'transaction_event' },
    idempotencyKey: `${u.processor}:recorded:${loaded.reference}`, requestHash: 'recorded', createdAt: facts.occurredAt, latencyMs: 0,
    reserved: true, status: totals.spent > 0 ? 'committed' : 'reserved',
    decision: {
      decision: 'allow', reasonCode: 'processor_approved', violatedRuleId: null, violatedRuleDescription: null,
      message: 'Approved by the processor without a reservation here (fail mode, or a request that never reached the gateway); counted from its settlement',
      policyId: input.policy.policyId, policyVersion: input.policy.version, confidence: 'high', notify: false,
    },
  };
}
