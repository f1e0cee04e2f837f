// SQL of the ledger inside a batch's transaction (transaction.ts): load counters (creating missing
// ones from the reservations they summarize), guards and earlier decisions, and write a batch of
// decisions, settlements and counters. Columns arrive as arrays (unnest), so a batch of 200 costs PostgreSQL
// a handful of statements, not 200.
import { newId } from '../ids.js';
import type { Decision } from '../policy/decide.js';
import type { Action } from '../policy/model.js';
import { usageKey } from '../policy/usage.js';
import type { UsageSpec } from '../policy/usage.js';
import type { Guards } from './guards.js';
import { AgentState } from './state.js';
import { coalesceWrites, prepared, sendBeforeCommit } from './transaction.js';
import type { Rows, Tx } from './transaction.js';
import type { Counter, CounterTotals, ReservationStatus } from './state.js';

export interface CheckRow {
  checkId: string;
  agentId: string;
  decision: Decision;
  action: Action;
  metadata: Record<string, unknown>;
  idempotencyKey: string;
  requestHash: string;
  createdAt: Date;
  latencyMs: number;
  /** An allowed decision reserves its amount. */
  reserved: boolean;
  /** Stored instead of 'reserved' (a processor-reported spend is recorded as committed). */
  status?: ReservationStatus;
  source: string;
  reference: string | null;
  /** What was asked, when less was approved (partial approval). */
  requestedAmount?: number;
  partialAmount?: number;
  /** An escalation's approval request, opened in the same transaction. */
  approval?: Record<string, unknown>;
}

export type PreviousCheck = Pick<CheckRow, 'checkId' | 'decision' | 'createdAt' | 'latencyMs' | 'requestHash' | 'idempotencyKey' | 'partialAmount'> & {
  status: ReservationStatus | null;
};

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function counterFromRow(c: any) {
  return { window: c.window, start: c.window_start, end: c.window_end, currency: c.currency, actionFilter: c.action_filter, counterparty: c.counterparty, reserved: c.reserved, spent: c.spent, count: c.count };
}

/** Counter rows a statement returned as JSON (settleKnown's new totals): times arrive as text. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function countersFromJson(rows: any[]): CounterTotals[] {
  return rows.map((c) => ({ ...counterFromRow(c), agentId: c.agent_id, start: new Date(c.window_start), end: new Date(c.window_end) }));
}

export async function loadStates(
  tx: Tx,
  agentIds: string[],
  specs: { agentId: string; spec: UsageSpec }[],
  /** Earliest and latest time of the batch's new decisions: counters containing them may change. */
  times: [Date, Date] | undefined,
  idempotencyKeys: [string, string][],
  recentSince: Map<string, Date>,
  /** Counter rows already asked for (those the batch's settlements fall in: loadReservations). */
  more: Promise<Rows> = Promise.resolve({ rows: [] }),
): Promise<{ states: Map<string, AgentState>; previous: Map<string, PreviousCheck> }> {
  const states = new Map(agentIds.map((id) => [id, new AgentState(id)]));
  const previous = new Map<string, PreviousCheck>();
  // Both reads go out together (one round trip on the pipelined connection).
  const earlier = idempotencyKeys.length === 0 ? undefined : prepared(tx, 'previous', [idempotencyKeys.map((k) => k[0]), idempotencyKeys.map((k) => k[1])]);
  // Every counter the new reservations fall in, not only those these policies read: each must see
  // every reservation, or a later policy reading it would see too little.
  const counters = times ? prepared(tx, 'counters', [agentIds, times[0], times[1]]) : Promise.resolve({ rows: [] });
  earlier?.catch(() => undefined); // a failure is reported by the await below
  counters.catch(() => undefined);
  for (const row of (await earlier)?.rows ?? []) previous.set(`${row.agent_id}\u0000${row.idempotency_key}`, checkFromRow(row));
  // A counter in both reads is the same row, read in the same snapshot.
  for (const c of [...(await more).rows, ...(await counters).rows]) states.get(c.agent_id)?.addCounter(counterFromRow(c), false);
  for (const { agentId, spec } of specs) {
    const state = states.get(agentId);
    if (!state || state.counters.has(usageKey(spec))) continue;
    state.addCounter({ ...spec, ...(await summarize(tx, agentId, spec)) }, true);
  }
  if (recentSince.size > 0) {
    const earliest = new Date(Math.min(...[...recentSince.values()].map((d) => d.getTime())));
    const recent = await tx.knex('decisions').connection(tx.connection)
      .select('agent_id', 'action_type', 'counted_amount', 'currency', 'counterparty', 'created_at')
      .whereIn('agent_id', [...recentSince.keys()])
      .andWhere('created_at', '>', earliest)
      .whereNotNull('status')
      .andWhereNot({ status: 'released' })
      .orderBy('created_at', 'desc');
    for (const r of recent) {
      states.get(r.agent_id)?.recent.push({ actionType: r.action_type, amount: r.counted_amount, currency: r.currency, counterparty: r.counterparty, occurredAt: r.created_at });
    }
  }
  return { states, previous };
}

/** A new counter starts from the reservations already in its window (e.g. after a policy change). */
async function summarize(tx: Tx, agentId: string, spec: UsageSpec) {
  const trx = tx.knex;
  const query = trx('decisions').connection(tx.connection)
    .where({ agent_id: agentId })
    .andWhere('created_at', '>=', spec.start)
    .andWhere('created_at', '<', spec.end)
    .whereNotNull('status')
    .andWhereNot({ status: 'released' });
  if (spec.currency) query.andWhere({ currency: spec.currency });
  if (spec.actionFilter) query.whereIn('action_type', spec.actionFilter.split(','));
  if (spec.counterparty) query.andWhere({ counterparty: spec.counterparty.slice(1) });
  const [row] = await query.select(
    trx.raw(`coalesce(sum(counted_amount) filter (where status in ('reserved', 'unknown')), 0)::bigint as reserved`),
    trx.raw(`coalesce(sum(counted_amount) filter (where status = 'committed'), 0)::bigint as spent`),
    trx.raw('count(*)::int as count'),
  );
  return { reserved: Number(row?.reserved ?? 0), spent: Number(row?.spent ?? 0), count: Number(row?.count ?? 0) };
}

/** Frozen agents and registry cards among those a batch touches (one round trip). */
export async function loadGuards(tx: Tx, agentIds: string[], cards: { processor: string; id: string }[]): Promise<Guards> {
  const guards: Guards = { agents: new Map(), cards: new Map() };
  const { rows } = await prepared(tx, 'guards', [agentIds, cards.map((c) => c.processor), cards.map((c) => c.id)]);
  for (const r of rows) (r.kind === 'agent' ? guards.agents : guards.cards).set(r.key, r.status);
  return guards;
}

export interface StoredReservation {
  id: string;
  status: ReservationStatus;
  countedAmount: number;
  actionType: string;
  currency: string;
  counterparty: string;
  createdAt: Date;
}

export interface ReservationUpdate {
  id: string;
  status: ReservationStatus;
  amount: number;
  reference: string | null;
}

/**
 * The reservations a batch settles, by agent and idempotency key, and (`counters`, for loadStates)
 * the counter rows they fall in, asked for in the same round trip.
 */
export async function loadReservations(tx: Tx, keys: [string, string][]): Promise<{ reservations: Map<string, StoredReservation>; counters: Promise<Rows> }> {
  const found = new Map<string, StoredReservation>();
  if (keys.length === 0) return { reservations: found, counters: Promise.resolve({ rows: [] }) };
  const columns = [keys.map((k) => k[0]), keys.map((k) => k[1])];
  const reading = prepared(tx, 'reservations', columns);
  const counters = prepared(tx, 'settledCounters', columns);
  counters.catch(() => undefined); // reported where loadStates awaits it
  const { rows } = await reading;
  for (const r of rows) {
    found.set(`${r.agent_id}\u0000${r.idempotency_key}`, { id: r.id, status: r.status, countedAmount: Number(r.counted_amount), actionType: r.action_type, currency: r.currency, counterparty: r.counterparty, createdAt: r.created_at });
  }
  return { reservations: found, counters };
}

/**
 * What a batch writes: settled reservations, then new decisions and counters in one statement
 * (empty arrays write nothing, so it is always the same statement, prepared once). Both are sent
 * without waiting and go out with COMMIT (Tx.unawaited); approvals and violations, rarer, are
 * written after them with the query builder.
 */
export async function recordBatch(tx: Tx, checks: CheckRow[], counters: Counter[], updates: ReservationUpdate[] = []): Promise<void> {
  coalesceWrites(tx.connection);
  if (updates.length > 0) {
    // Only when there is something to settle: one statement less in most batches.
    sendBeforeCommit(tx, prepared(tx, 'settle', [updates.map((u) => u.id), updates.map((u) => u.status), updates.map((u) => u.amount), updates.map((u) => u.reference)]));
  }
  if (checks.length + counters.length === 0) return;
  sendBeforeCommit(tx, prepared(tx, 'write', writeValues(checks, counters)));
  const approvals = checks.filter((c) => c.approval && c.decision.decision === 'escalate');
  const violations = checks.filter((c) => c.decision.decision !== 'allow');
  if (approvals.length + violations.length === 0) return;
  // The query builder sends its statement some ticks later: wait for the writes before it, so
  // nothing can be sent after COMMIT.
  await Promise.all(tx.unawaited);
  if (approvals.length > 0) {
    await tx.knex('approvals').connection(tx.connection).insert(approvals.map((c) => ({
      id: `apr_${c.checkId.slice(4)}`, agent_id: c.agentId, check_id: c.checkId, source: c.source, action_type: c.action.actionType,
      amount: c.action.amount, currency: c.action.currency, counterparty: c.action.counterparty ?? null, details: JSON.stringify(c.approval), created_at: c.createdAt,
    })));
  }
  if (violations.length > 0) await tx.knex('violations').connection(tx.connection).insert(violations.map(violationToRow));
}

/** The write statement's columns: new decisions ($1–$22, $33, $34), then counters' new totals ($23–$32). */
function writeValues(checks: CheckRow[], counters: Counter[]): unknown[] {
  const col = <T>(f: (c: CheckRow) => T) => checks.map(f);
  return [
    col((c) => c.checkId), col((c) => c.agentId), col((c) => c.decision.policyId), col((c) => c.decision.policyVersion),
    col((c) => c.action.actionType), col((c) => c.action.amount), col((c) => c.action.currency), col((c) => c.action.counterparty ?? ''),
    col((c) => JSON.stringify(c.requestedAmount !== undefined && c.requestedAmount !== c.action.amount ? { ...c.metadata, requested_amount: c.requestedAmount } : c.metadata)), col((c) => c.decision.decision), col((c) => c.decision.reasonCode),
    col((c) => c.decision.violatedRuleId), col((c) => c.decision.violatedRuleDescription), col((c) => c.decision.message),
    col((c) => c.decision.confidence), col((c) => c.decision.notify), col((c) => c.latencyMs), col((c) => c.idempotencyKey),
    col((c) => c.requestHash), col((c) => c.createdAt), col((c) => c.reserved), col((c) => c.source),
    ...counterColumns(counters),
    col((c) => c.status ?? null), col((c) => c.reference),
  ];
}

/** Counters as the statements take them: one array per usage_counters column, in table order. */
function counterColumns(counters: Counter[]): unknown[][] {
  const cnt = <T>(f: (c: Counter) => T) => counters.map(f);
  return [
    cnt((c) => c.agentId), cnt((c) => c.window), cnt((c) => c.start), cnt((c) => c.end), cnt((c) => c.currency),
    cnt((c) => c.actionFilter), cnt((c) => c.counterparty), cnt((c) => c.reserved), cnt((c) => c.spent), cnt((c) => c.count),
  ];
}

/** What a checked write found (STATEMENTS.writeIfUnchanged); it wrote only if all of them hold. */
export interface Unchanged {
  /** The counters as known, and no other one in the batch's times. */
  counters: boolean;
  /** No decision yet under the batch's keys. */
  keys: boolean;
  /** No frozen agent or card. */
  guards: boolean;
  /** Every reservation settled with it was still reserved, at the amount known. */
  settles: boolean;
}

/** A settlement of a reservation whose amount this process knows (it made the reservation). */
export interface KnownSettlement {
  id: string;
  status: Exclude<ReservationStatus, 'reserved'>;
  amount: number;
  reference: string | null;
  /** The amount it counts as reserved. */
  was: number;
}

/**
 * A batch of reservations decided from known counters (`expected`: every counter of `agentIds`
 * overlapping `times`, as known), and the settlements riding with it, written only if the
 * database still agrees; `counters` already count the settlements. Sent without waiting: COMMIT
 * follows in the same round trip.
 */
export function recordIfUnchanged(
  tx: Tx, checks: CheckRow[], counters: Counter[], expected: Counter[], agentIds: string[], times: [Date, Date], cards: { processor: string; id: string }[], settles: KnownSettlement[] = [],
): Promise<Unchanged> {
  coalesceWrites(tx.connection);
  const values = [
    ...writeValues(checks, counters),
    ...counterColumns(expected),
    agentIds, times[0], times[1], cards.map((c) => c.processor), cards.map((c) => c.id),
  ];
  const sent = settles.length === 0
    ? prepared(tx, 'writeIfUnchanged', values)
    : prepared(tx, 'writeSettlingIfUnchanged', [...values, settles.map((u) => u.id), settles.map((u) => u.status), settles.map((u) => u.amount), settles.map((u) => u.reference), settles.map((u) => u.was)]);
  sendBeforeCommit(tx, sent);
  return sent.then(({ rows: [found] }) => ({ counters: found?.counters_ok === true, keys: found?.keys_ok === true, guards: found?.guards_ok === true, settles: settles.length === 0 || found?.settles_ok === true }));
}

function violationToRow(c: CheckRow) {
  const d = c.decision;
  return {
    id: newId('viol'), check_id: c.checkId, agent_id: c.agentId, policy_id: d.policyId, policy_version: d.policyVersion,
    action_type: c.action.actionType, amount: c.action.amount, currency: c.action.currency, counterparty: c.action.counterparty ?? null,
    decision: d.decision, reason_code: d.reasonCode, violated_rule_id: d.violatedRuleId, violated_rule_description: d.violatedRuleDescription,
    message: d.message, confidence: d.confidence, latency_ms: c.latencyMs, created_at: c.createdAt,
  };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function checkFromRow(row: any): PreviousCheck {
  return {
    checkId: row.id,
    idempotencyKey: row.idempotency_key,
    requestHash: row.request_hash,
    createdAt: row.created_at,
    latencyMs: row.latency_ms,
    status: row.status,
    ...(row.metadata?.requested_amount !== undefined ? { partialAmount: Number(row.amount) } : {}),
    decision: {
      decision: row.decision, reasonCode: row.reason_code, violatedRuleId: row.violated_rule_id,
      violatedRuleDescription: row.violated_rule_description, message: row.message, policyId: row.policy_id,
      policyVersion: row.policy_version, confidence: row.confidence, notify: row.notify,
    },
  };
}
