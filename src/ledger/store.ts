// SQL of the ledger: load one agent's counters (creating missing ones from the reservations they
// summarize) and write a batch of decisions, reservations and counters. Runs inside the caller's
// transaction, under the agent's lock.
import type { Knex } from 'knex';
import { newId } from '../ids.js';
import type { Decision } from '../policy/decide.js';
import type { Action } from '../policy/model.js';
import { usageKey } from '../policy/usage.js';
import type { ReservationFacts, UsageSpec } from '../policy/usage.js';
import { AgentState } from './state.js';
import type { Counter } from './state.js';

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
}

export type PreviousCheck = Pick<CheckRow, 'checkId' | 'decision' | 'createdAt' | 'latencyMs' | 'requestHash' | 'idempotencyKey'>;

export async function loadAgentState(
  trx: Knex.Transaction,
  agentId: string,
  specs: UsageSpec[],
  /** Earliest and latest decision time in the batch: counters containing them may change. */
  times: [Date, Date],
  idempotencyKeys: string[],
  recentSince: Date | undefined,
): Promise<{ state: AgentState; previous: Map<string, PreviousCheck> }> {
  const state = new AgentState();
  const previous = new Map<string, PreviousCheck>();
  if (idempotencyKeys.length > 0) {
    const rows = await trx('checks').where({ agent_id: agentId }).whereIn('idempotency_key', idempotencyKeys);
    for (const row of rows) previous.set(row.idempotency_key, checkFromRow(row));
  }
  // Every counter of the agent that the new reservations fall in, not only those this policy
  // reads: each must see every reservation, or a later policy reading it would see too little.
  const rows = await trx('usage_counters').where({ agent_id: agentId }).andWhere('window_end', '>', times[0]).andWhere('window_start', '<=', times[1]);
  for (const c of rows) {
    state.addCounter({ window: c.window, start: c.window_start, end: c.window_end, currency: c.currency, actionFilter: c.action_filter, counterparty: c.counterparty, reserved: c.reserved, spent: c.spent, count: c.count }, false);
  }
  for (const spec of specs) {
    if (state.counters.has(usageKey(spec))) continue;
    state.addCounter({ ...spec, ...(await summarize(trx, agentId, spec)) }, true);
  }
  if (recentSince) {
    const rows = await trx('reservations')
      .select('action_type', 'amount', 'currency', 'counterparty', 'occurred_at')
      .where({ agent_id: agentId })
      .andWhere('occurred_at', '>', recentSince)
      .andWhereNot({ status: 'released' })
      .orderBy('occurred_at', 'desc');
    for (const r of rows) state.recent.push({ actionType: r.action_type, amount: r.amount, currency: r.currency, counterparty: r.counterparty, occurredAt: r.occurred_at });
  }
  return { state, previous };
}

/** A new counter starts from the reservations already in its window (e.g. after a policy change). */
async function summarize(trx: Knex.Transaction, agentId: string, spec: UsageSpec) {
  const query = trx('reservations')
    .where({ agent_id: agentId })
    .andWhere('occurred_at', '>=', spec.start)
    .andWhere('occurred_at', '<', spec.end)
    .andWhereNot({ status: 'released' });
  if (spec.currency) query.andWhere({ currency: spec.currency });
  if (spec.actionFilter) query.whereIn('action_type', spec.actionFilter.split(','));
  if (spec.counterparty) query.andWhere({ counterparty: spec.counterparty });
  const [row] = await query.select(
    trx.raw(`coalesce(sum(amount) filter (where status in ('reserved', 'unknown')), 0)::bigint as reserved`),
    trx.raw(`coalesce(sum(amount) filter (where status = 'committed'), 0)::bigint as spent`),
    trx.raw('count(*)::int as count'),
  );
  return { reserved: Number(row?.reserved ?? 0), spent: Number(row?.spent ?? 0), count: Number(row?.count ?? 0) };
}

export async function recordBatch(
  trx: Knex.Transaction,
  agentId: string,
  checks: CheckRow[],
  reservations: (ReservationFacts & { id: string; checkId: string; idempotencyKey: string })[],
  counters: Counter[],
): Promise<void> {
  if (checks.length > 0) {
    await trx('checks').insert(checks.map(checkToRow));
    const violations = checks.filter((c) => c.decision.decision !== 'allow');
    if (violations.length > 0) await trx('violations').insert(violations.map(violationToRow));
  }
  if (reservations.length > 0) {
    await trx('reservations').insert(
      reservations.map((r) => ({
        id: r.id, agent_id: agentId, idempotency_key: r.idempotencyKey, check_id: r.checkId, action_type: r.actionType,
        amount: r.amount, currency: r.currency, counterparty: r.counterparty, occurred_at: r.occurredAt, status: 'reserved', updated_at: r.occurredAt,
      })),
    );
  }
  if (counters.length > 0) {
    await trx('usage_counters')
      .insert(counters.map((c) => ({
        agent_id: agentId, window: c.window, window_start: c.start, window_end: c.end, currency: c.currency,
        action_filter: c.actionFilter, counterparty: c.counterparty, reserved: c.reserved, spent: c.spent, count: c.count,
      })))
      .onConflict(['agent_id', 'window', 'window_start', 'currency', 'action_filter', 'counterparty'])
      .merge(['reserved', 'spent', 'count']);
  }
}

function checkToRow(c: CheckRow) {
  const d = c.decision;
  return {
    id: c.checkId, agent_id: c.agentId, policy_id: d.policyId, policy_version: d.policyVersion,
    action_type: c.action.actionType, amount: c.action.amount, currency: c.action.currency, counterparty: c.action.counterparty ?? null,
    metadata: JSON.stringify(c.metadata), decision: d.decision, reason_code: d.reasonCode, violated_rule_id: d.violatedRuleId,
    violated_rule_description: d.violatedRuleDescription, message: d.message, confidence: d.confidence, notify: d.notify,
    latency_ms: c.latencyMs, idempotency_key: c.idempotencyKey, request_hash: c.requestHash, created_at: c.createdAt,
  };
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
export function checkFromRow(row: any): PreviousCheck {
  return {
    checkId: row.id,
    idempotencyKey: row.idempotency_key,
    requestHash: row.request_hash,
    createdAt: row.created_at,
    latencyMs: row.latency_ms,
    decision: {
      decision: row.decision, reasonCode: row.reason_code, violatedRuleId: row.violated_rule_id,
      violatedRuleDescription: row.violated_rule_description, message: row.message, policyId: row.policy_id,
      policyVersion: row.policy_version, confidence: row.confidence, notify: row.notify,
    },
  };
}
