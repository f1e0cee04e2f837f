// Answers the mirror writes itself, always in Stripe's error shape so the official SDKs raise the
// matching class: 401 → StripeAuthenticationError, 402 → StripeCardError, 403 → StripePermissionError,
// 400 idempotency_error → StripeIdempotencyError, 5xx → StripeAPIError.
import type { ServerResponse } from 'node:http';
import type { Decision } from '../policy/decide.js';

export interface StripeErrorBody {
  type: 'api_error' | 'card_error' | 'idempotency_error' | 'invalid_request_error' | 'authentication_error';
  code?: string;
  message: string;
  param?: string;
  decline_code?: string;
  spend?: Record<string, unknown>;
}

export function stripeError(res: ServerResponse, status: number, error: StripeErrorBody): void {
  if (res.headersSent) return;
  const body = JSON.stringify({ error });
  // A refusal is final: tell the SDK not to retry it.
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...(status < 500 ? { 'stripe-should-retry': 'false' } : {}) });
  res.end(body);
}

/**
 * A forwarded call Stripe never answered: 504 if it was sent (Stripe may have acted on it; `outcome`
 * says what the gateway keeps), 502 if it never left.
 */
export function stripeUnanswered(res: ServerResponse, sent: boolean, outcome: string): void {
  stripeError(res, sent ? 504 : 502, {
    type: 'api_error',
    message: sent ? `Stripe did not answer in time. ${outcome}` : 'spendgate could not reach Stripe; nothing was sent. Retry later.',
  });
}

export function policyRefusal(res: ServerResponse, checkId: string, decision: Decision): void {
  const escalate = decision.decision === 'escalate';
  stripeError(res, 402, {
    type: 'card_error',
    code: escalate ? 'spend_approval_required' : 'spend_policy_blocked',
    decline_code: decision.reasonCode ?? undefined,
    message: `${escalate ? 'spendgate: human approval required' : 'spendgate: blocked by policy'}: ${decision.message ?? decision.reasonCode ?? ''}`,
    spend: {
      check_id: checkId,
      decision: decision.decision,
      reason_code: decision.reasonCode,
      violated_rule_id: decision.violatedRuleId,
      policy_version: decision.policyVersion,
    },
  });
}
