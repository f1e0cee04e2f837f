// A check, start to finish: resolve the agent and its policy, decide under the ledger's lock,
// record, count it in the metrics, and answer in seed 002's shape.
import type { Knex } from 'knex';
import { AppError } from '../errors.js';
import type { Metrics } from '../http/metrics.js';
import { newId } from '../ids.js';
import type { Ledger } from '../ledger/ledger.js';
import { IdempotencyConflict } from '../ledger/ledger.js';
import { compiledPolicy } from '../policy/store.js';
import { requestHash, toAction } from './request.js';
import type { CheckRequest } from './request.js';

export interface CheckDeps {
  knex: Knex;
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

/**
 * `operator` (admin simulations) may name any policy; an agent may only name its own bound policy,
 * or a compromised key could pick a looser one.
 */
export async function runCheck(deps: CheckDeps, agentId: string, request: CheckRequest, idempotencyKey?: string, caller: 'agent' | 'operator' = 'agent'): Promise<{ body: CheckResponse; replayed: boolean }> {
  const startedAt = performance.now();
  const now = deps.now?.() ?? new Date();
  // One round trip: the agent, and the current version of the policy the check will use.
  const agent = await deps.knex('agents as a')
    .leftJoin('policies as p', 'p.id', deps.knex.raw('coalesce(?, a.policy_id)', [request.policy_id ?? null]))
    .where('a.id', agentId)
    .first('a.timezone', 'a.policy_id', 'p.current_version');
  if (!agent) throw new AppError('not_found', `No agent "${agentId}"`);
  if (caller === 'agent' && request.policy_id !== undefined && request.policy_id !== agent.policy_id) {
    throw new AppError('forbidden', `policy_id must be the policy bound to agent "${agentId}"${agent.policy_id ? ` ("${agent.policy_id}")` : ' (it has none: bind one with PATCH /admin/v1/agents)'}`);
  }
  const policyId = request.policy_id ?? agent.policy_id;
  if (!policyId) throw new AppError('invalid_request', `Agent "${agentId}" has no policy: bind one (PATCH /admin/v1/agents/${agentId}) or pass policy_id`);
  const version: number | undefined = agent.current_version ?? undefined;
  if (version === undefined) throw new AppError('not_found', `No policy "${policyId}"`, [{ field: 'policy_id', message: 'unknown policy' }]);
  const policy = await compiledPolicy(deps.knex, policyId, version);
  const action = toAction(request, now);
  try {
    const result = await deps.ledger.check({
      agentId,
      timezone: agent.timezone,
      policy,
      action,
      idempotencyKey: idempotencyKey ?? request.idempotency_key ?? newId('req'),
      requestHash: requestHash(request, policyId),
      metadata: request.metadata,
      now,
      simulate: request.simulate,
      startedAt,
    });
    const d = result.decision;
    if (!result.replayed && !request.simulate) {
      deps.metrics.decisions.inc({ decision: d.decision, reason: d.reasonCode ?? 'none', source: 'check' });
      deps.metrics.decisionSeconds.observe({ source: 'check' }, (performance.now() - startedAt) / 1000);
    }
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
    return { body, replayed: result.replayed };
  } catch (error) {
    if (error instanceof IdempotencyConflict) throw new AppError('idempotency_error', error.message);
    throw error;
  }
}
