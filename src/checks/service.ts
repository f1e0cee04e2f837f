// A check, start to finish: resolve the agent and its policy, decide under the ledger's lock,
// record, count it in the metrics, and answer in seed 002's shape.
import type { Knex } from 'knex';
import { AppError } from '../errors.js';
import { recordDecision } from '../http/metrics.js';
import type { Metrics } from '../http/metrics.js';
import { newId } from '../ids.js';
import type { Ledger } from '../ledger/ledger.js';
import { DeadlineExceeded, IdempotencyConflict } from '../ledger/ledger.js';
import type { KnownReservation } from '../ledger/ledger.js';
import type { Lookups } from '../agents/lookup-cache.js';
import { agentPolicy } from '../policy/store.js';
import { requestHash, toAction } from './request.js';
import type { CheckRequest } from './request.js';

export interface CheckDeps {
  knex: Knex;
  lookups: Lookups;
  ledger: Ledger;
  metrics: Metrics;
  now?: () => Date;
}

export interface CheckResponse {
  check_id: string;
  agent_id: string;
  policy_id: string;
  decision: 'allow' | 'block' | 'escalate';
  confidence: 'high' | 'medium';
  reason_code: string | null;
  message: string | null;
  violated_rule_id: string | null;
  violated_rule_description: string | null;
  policy_version: number;
  latency_ms: number;
  timestamp: string;
  simulated?: true;
}

export interface CheckOutcome {
  body: CheckResponse;
  replayed: boolean;
  /** The reservation this check made, under `key` (`generated` when the caller gave none). */
  reserved?: { key: string; generated: boolean; reservation?: KnownReservation };
}

/**
 * `operator` (admin simulations) may name any policy; an agent may only name its own bound policy,
 * or a compromised key could pick a looser one.
 */
export async function runCheck(
  deps: CheckDeps,
  agentId: string,
  request: CheckRequest,
  idempotencyKey?: string,
  caller: 'agent' | 'operator' = 'agent',
  /** performance.now() after which the check must not start: its request was answered 503 (src/http/deadline.ts). */
  deadline?: number,
): Promise<CheckOutcome> {
  const startedAt = performance.now();
  const now = deps.now?.() ?? new Date();
  const refuse = (boundId: string | null) =>
    new AppError('forbidden', `policy_id must be the policy bound to agent "${agentId}"${boundId ? ` ("${boundId}")` : ' (it has none: bind one with PATCH /admin/v1/agents)'}`);
  const namesPolicy = caller === 'agent' && request.policy_id !== undefined;
  const lookup = caller === 'operator' && request.policy_id !== undefined ? agentPolicy(deps.knex, agentId, request.policy_id) : deps.lookups.agentPolicy(agentId);
  const bound = await lookup.catch((error: unknown) => {
    throw namesPolicy && error instanceof AppError && error.code === 'invalid_request' ? refuse(null) : error;
  });
  if (namesPolicy && request.policy_id !== bound.boundPolicyId) throw refuse(bound.boundPolicyId);
  const { policy } = bound;
  const policyId = policy.policyId;
  const action = toAction(request, now);
  const givenKey = idempotencyKey ?? request.idempotency_key;
  const key = givenKey ?? newId('req');
  try {
    const result = await deps.ledger.check({
      agentId,
      timezone: bound.timezone,
      policy,
      action,
      idempotencyKey: key,
      requestHash: requestHash(request, policyId),
      metadata: request.metadata,
      now,
      simulate: request.simulate,
      startedAt,
      ...(deadline !== undefined ? { deadline } : {}),
    });
    const d = result.decision;
    if (!result.replayed && !request.simulate) recordDecision(deps.metrics, 'check', d, startedAt);
    const body: CheckResponse = {
      check_id: result.checkId,
      agent_id: agentId,
      policy_id: d.policyId,
      decision: d.decision,
      confidence: d.confidence,
      reason_code: d.reasonCode,
      message: d.message,
      violated_rule_id: d.violatedRuleId,
      violated_rule_description: d.violatedRuleDescription,
      policy_version: d.policyVersion,
      latency_ms: result.latencyMs,
      timestamp: result.createdAt.toISOString(),
      ...(request.simulate ? { simulated: true as const } : {}),
    };
    const reserved = !result.replayed && result.status === 'reserved' ? { key, generated: givenKey === undefined, reservation: result.reservation } : undefined;
    return { body, replayed: result.replayed, ...(reserved ? { reserved } : {}) };
  } catch (error) {
    if (error instanceof IdempotencyConflict) throw new AppError('idempotency_error', error.message);
    if (error instanceof DeadlineExceeded) throw new AppError('unavailable', 'The check was not started: its deadline had passed.');
    throw error;
  }
}
