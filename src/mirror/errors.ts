// Answers the mirror writes itself, always in Stripe's error shape so the official SDKs raise the
// matching class: 401 → StripeAuthenticationError, 402 → StripeCardError, 403 → StripePermissionError,
// 400 idempotency_error → StripeIdempotencyError, 5xx → StripeAPIError.
import type { Response } from 'express';
import type { Decision } from '../policy/decide.js';

export interface StripeErrorBody {
  type: 'api_error' | 'card_error' | 'idempotency_error' | 'invalid_request_error' | 'authentication_error';
  code?: string;
  message: string;
  param?: string;
  decline_code?: string;
  spend?: Record<string, unknown>;
}

export function stripeError(res: Response, status: number, error: StripeErrorBody): void {
  res.status(status);
  // A refusal is final: tell the SDK not to retry it.
  if (status < 500) res.setHeader('Stripe-Should-Retry', 'false');
  res.json({ error });
}

export function policyRefusal(res: Response, checkId: string, decision: Decision): void {
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
