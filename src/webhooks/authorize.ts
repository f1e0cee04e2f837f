// A real-time card authorization, start to finish: find the card's agent, decide with its policy
// and reserve in one ledger transaction, and answer — always before the deadline. Past the
// deadline the fail mode answers and whatever the late decision did is undone or kept to match.
import { createHash } from 'node:crypto';
import type { Knex } from 'knex';
import type { Logger } from 'pino';
import type { AuthorizationAnswer, AuthorizationRequest } from '../../adapters/processor.js';
import type { Lookups } from '../agents/lookup-cache.js';
import { AppError } from '../errors.js';
import { recordDecision } from '../http/metrics.js';
import type { Metrics } from '../http/metrics.js';
import { DeadlineExceeded } from '../ledger/ledger.js';
import type { CheckResult, Ledger } from '../ledger/ledger.js';
import type { FailMode } from './fail-mode.js';
import { cardOwner } from './owner.js';

export interface AuthorizeDeps {
  knex: Knex;
  lookups: Lookups;
  ledger: Ledger;
  metrics: Metrics;
  logger: Logger;
  deadlineMs: number;
  failMode: FailMode;
  now?: () => Date;
}

/** Time kept back from the deadline to write the answer. */
const SEND_MARGIN_MS = 20;

interface Decided {
  answer: AuthorizationAnswer;
  agentId?: string;
  idempotencyKey?: string;
  result?: CheckResult;
}

export async function answerAuthorization(deps: AuthorizeDeps, request: AuthorizationRequest, receivedAt: number): Promise<AuthorizationAnswer> {
  const deadline = receivedAt + deps.deadlineMs - SEND_MARGIN_MS;
  const work = decideAuthorization(deps, request, receivedAt, deadline);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), Math.max(0, deadline - performance.now()));
  });
  let first = await Promise.race([work.catch((error: unknown) => ({ error })), late]);
  clearTimeout(timer);
  if (first !== 'late' && !('error' in first)) return first.answer;
  // The ledger may drop the request a moment before the timer fires: that is the deadline too.
  if (first !== 'late' && first.error instanceof DeadlineExceeded) first = 'late';

  const answer = failModeAnswer(deps.failMode, request, first === 'late' ? 'deadline' : 'error');
  if (first !== 'late') {
    deps.logger.error({ err: first.error, authorization_id: request.authorizationId }, `authorization answered by AUTH_FAIL_MODE (${deps.failMode.describe}): the decision failed`);
  } else {
    deps.logger.warn({ authorization_id: request.authorizationId, deadline_ms: deps.deadlineMs }, `authorization answered by AUTH_FAIL_MODE (${deps.failMode.describe}): no decision within the deadline`);
    void work.then((decided) => reconcileLate(deps, request, decided, answer), (error: unknown) => {
      if (!(error instanceof DeadlineExceeded)) deps.logger.warn({ err: error, authorization_id: request.authorizationId }, 'late authorization decision failed; nothing was reserved');
    });
  }
  deps.metrics.decisions.inc({ decision: answer.approved ? 'allow' : 'block', reason: answer.reason, source: request.processor });
  return answer;
}

function failModeAnswer(failMode: FailMode, request: AuthorizationRequest, why: 'deadline' | 'error'): AuthorizationAnswer {
  const approved = failMode.approves(request.amount);
  return { approved, reason: 'fail_mode', metadata: { spend_decision: approved ? 'allow' : 'block', spend_reason: `fail_mode_${why}`, spend_fail_mode: failMode.describe } };
}

/**
 * The decision arrived after the fail mode answered. A reservation for money we declined is
 * released; one for money we approved stays. Money approved without a reservation is counted when
 * the processor's settlement events arrive. If this release fails, those events release it too.
 */
async function reconcileLate(deps: AuthorizeDeps, request: AuthorizationRequest, decided: Decided, answer: AuthorizationAnswer): Promise<void> {
  const { result, agentId, idempotencyKey } = decided;
  if (!result || !agentId || !idempotencyKey || !result.reserved || answer.approved) return;
  try {
    await deps.ledger.settle(agentId, idempotencyKey, 'released');
    deps.logger.info({ authorization_id: request.authorizationId, check_id: result.checkId }, 'late reservation released: the fail mode declined it');
  } catch (error) {
    deps.logger.warn({ err: error, authorization_id: request.authorizationId }, 'could not release a late reservation; settlement events will');
  }
}

async function decideAuthorization(deps: AuthorizeDeps, request: AuthorizationRequest, startedAt: number, deadline: number): Promise<Decided> {
  const decline = (reason: string, message: string): Decided => ({ answer: { approved: false, reason, metadata: { spend_decision: 'block', spend_reason: reason, spend_message: message.slice(0, 500) } } });
  const agentId = await cardOwner(deps.lookups, request.processor, request.card);
  if (!agentId) return decline('unknown_card', `card ${request.card.id} belongs to no agent known to the gateway`);
  const bound = deps.lookups.cached?.agentPolicy(agentId) ?? (await deps.lookups.agentPolicy(agentId).catch((error: unknown) => {
    if (error instanceof AppError && (error.code === 'not_found' || error.code === 'invalid_request')) return error;
    throw error;
  }));
  if (bound instanceof AppError) return decline('unknown_agent', bound.message);

  const { merchant } = request;
  const idempotencyKey = `${request.processor}:auth:${request.requestKey}`;
  const result = await deps.ledger.check({
    agentId,
    timezone: bound.timezone,
    policy: bound.policy,
    action: {
      actionType: 'card_authorization',
      amount: request.amount.amount,
      currency: request.amount.currency,
      ...(merchant.name ? { counterparty: merchant.name } : {}),
      merchant: defined({ name: merchant.name, url: merchant.url, networkId: merchant.networkId, mcc: merchant.mcc, category: merchant.category, country: merchant.country }),
    },
    idempotencyKey,
    requestHash: createHash('sha256').update(JSON.stringify([request.amount, request.card.id, merchant])).digest('hex'),
    metadata: defined({ card_id: request.card.id, authorization_id: request.authorizationId, event_id: request.eventId, merchant_name: merchant.name, mcc: merchant.mcc, wallet: request.wallet, method: request.method }),
    now: deps.now?.() ?? new Date(),
    simulate: false,
    startedAt,
    source: request.processor,
    reference: request.authorizationId,
    card: { processor: request.processor, id: request.card.id },
    deadline,
    openApproval: { processor: request.processor, authorization_id: request.authorizationId, card_id: request.card.id, merchant: defined({ ...merchant }) },
    allowPartial: request.amountControllable && bound.policy.partialApproval === true,
  });
  if (!result.replayed) recordDecision(deps.metrics, request.processor, result.decision, startedAt);
  const d = result.decision;
  const approved = result.status === 'reserved' || result.status === 'committed';
  const metadata = defined({
    spend_check_id: result.checkId,
    spend_decision: approved ? 'allow' : d.decision,
    spend_reason: d.reasonCode ?? (approved ? 'allowed' : 'released'),
    spend_rule_id: d.violatedRuleId,
    spend_approval_id: d.decision === 'escalate' ? `apr_${result.checkId.slice(4)}` : null,
  });
  const answer: AuthorizationAnswer = {
    approved,
    reason: approved ? (result.partialAmount !== undefined ? 'partial' : 'allowed') : (d.reasonCode ?? 'released'),
    metadata,
    ...(approved && result.partialAmount !== undefined ? { partialAmount: result.partialAmount } : {}),
  };
  return { answer, agentId, idempotencyKey, result };
}

/** Strings only, nulls dropped: processor metadata is a string map. */
function defined(values: Record<string, string | null | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key in values) {
    const value = values[key];
    if (value !== null && value !== undefined) out[key] = value;
  }
  return out;
}
