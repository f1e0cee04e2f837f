// Partial approval: when an amount limit blocks a card authorization the merchant lets us shorten,
// approve the largest amount the policy allows now.
import { decide } from '../policy/decide.js';
import type { Decision } from '../policy/decide.js';
import type { Action, CompiledPolicy } from '../policy/model.js';

/** Rules an amount caps: a smaller amount may pass them. Others (a blocked merchant) never will. */
export const PARTIAL_REASONS = new Set(['max_amount', 'velocity_limit', 'counterparty_limit']);

/** The largest amount below the asked one that the policy allows now (decide() is monotone in it). */
export function largestAllowed(input: { policy: CompiledPolicy; action: Action }, context: Parameters<typeof decide>[2]): { decision: Decision; amount: number } | undefined {
  let low = 0;
  let high = input.action.amount;
  let best: { decision: Decision; amount: number } | undefined;
  while (high - low > 1) {
    const mid = Math.floor((low + high) / 2);
    const decision = decide(input.policy, { ...input.action, amount: mid }, context);
    if (decision.decision === 'allow') {
      low = mid;
      best = { decision, amount: mid };
    } else {
      high = mid;
    }
  }
  return best;
}
