// AUTH_FAIL_MODE: what a card authorization is answered when no decision can be made in time.
// "decline" (the default, fail closed) or "approve_under:<amount> <CURRENCY>": approve small
// amounts in that currency only, decline everything else.
import { parseAmountWithCurrency } from '../money.js';
import type { Money } from '../../adapters/processor.js';

export interface FailMode {
  /** As configured, for logs and answers. */
  describe: string;
  approves(amount: Money): boolean;
}

export function parseFailMode(value: string): FailMode {
  if (value === 'decline') return { describe: 'decline', approves: () => false };
  const match = /^approve_under:(.+)$/.exec(value);
  if (!match) throw new Error(`AUTH_FAIL_MODE must be "decline" or "approve_under:<amount> <CURRENCY>" (got "${value}")`);
  const limit = parseAmountWithCurrency((match[1] ?? '').trim().replace(/^(\d+(?:\.\d+)?)([A-Za-z]{3})$/, '$1 $2'));
  // "under" is strict: approve_under:10 USD approves 9.99 and declines 10.00.
  return { describe: value, approves: (amount) => amount.currency === limit.currency && amount.amount < limit.amount };
}
