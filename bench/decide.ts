// decide() on a 20-rule policy: time per decision, no I/O.
import { decide } from '../src/policy/decide.js';
import { compilePolicy } from '../src/policy/compile.js';
import type { Action } from '../src/policy/model.js';
import { usageKey, usageSpecs } from '../src/policy/usage.js';

export const twentyRules = [
  { rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 500, currency: 'USD' } },
  { rule_id: 'max_eur', rule_type: 'max_amount', parameters: { limit: 400, currency: 'EUR' } },
  { rule_id: 'esc', rule_type: 'escalate_if', parameters: { amount_above: 200, currency: 'USD', action_types: ['refund'] } },
  { rule_id: 'age', rule_type: 'refund_age_limit', parameters: { max_days: 30 } },
  { rule_id: 'day', rule_type: 'velocity_limit', parameters: { limit: 100000, currency: 'USD', window: 'daily' } },
  { rule_id: 'week', rule_type: 'velocity_limit', parameters: { limit: 500000, currency: 'USD', window: 'weekly' } },
  { rule_id: 'month', rule_type: 'velocity_limit', parameters: { limit: 1000000, currency: 'USD', window: 'monthly' } },
  { rule_id: 'rate', rule_type: 'rate_limit', parameters: { max_count: 1000000, window: 'hourly' } },
  { rule_id: 'allow', rule_type: 'merchant_allowlist', parameters: { merchants: ['openai.com', 'anthropic.com', 'aws.amazon.com', 'github.com'], categories: ['software_saas'] } },
  { rule_id: 'block', rule_type: 'merchant_blocklist', parameters: { merchants: ['evil.example', 'casino.example'] } },
  { rule_id: 'cats', rule_type: 'category_blocklist', parameters: { categories: ['gambling', 'cryptocurrency', 'money_transfer', 'cash', 'adult'] } },
  { rule_id: 'catsok', rule_type: 'category_allowlist', parameters: { categories: ['software_saas', 'travel', 'transport'] } },
  { rule_id: 'geo', rule_type: 'country_restriction', parameters: { allowed_countries: ['US', 'CA', 'GB', 'DE'] } },
  { rule_id: 'ccy', rule_type: 'currency_allowlist', parameters: { currencies: ['USD', 'EUR'] } },
  { rule_id: 'hours', rule_type: 'time_window', parameters: { start: '00:00', end: '24:00' } },
  { rule_id: 'cp', rule_type: 'counterparty_limit', parameters: { limit: 100000, currency: 'USD', window: 'daily' } },
  { rule_id: 'dup', rule_type: 'duplicate_window', parameters: { window_seconds: 60 } },
  { rule_id: 'types', rule_type: 'action_type_allowlist', parameters: { action_types: ['payment', 'refund', 'card_authorization'] } },
  { rule_id: 'notify', rule_type: 'escalate_if', parameters: { notify_at_or_above: 50, amount_above: 450, currency: 'USD' } },
  { rule_id: 'rate_cp', rule_type: 'counterparty_limit', parameters: { max_count: 100000, window: 'monthly' } },
];

export function benchDecide(): { rules: number; perDecisionUs: number; decisionsPerSecond: number } {
  const policy = compilePolicy({ policy_id: 'bench', rules: twentyRules }, 1);
  const now = new Date('2026-11-22T12:00:00Z');
  const action: Action = {
    actionType: 'payment', amount: 4200, currency: 'usd', counterparty: 'openai.com',
    merchant: { name: 'OpenAI', url: 'openai.com', mcc: '5734', country: 'US' },
  };
  const usage = new Map(usageSpecs(policy, action, now, 'America/New_York').map((s) => [usageKey(s), { amount: 1234, count: 3 }]));
  const recent = Array.from({ length: 20 }, (_, i) => ({ actionType: 'payment', amount: 100 + i, currency: 'usd', counterparty: 'x', occurredAt: now }));
  const ctx = { now, timezone: 'America/New_York', usage, recent };
  if (decide(policy, action, ctx).decision !== 'allow') throw new Error('bench policy should allow the bench action');
  for (let i = 0; i < 20_000; i++) decide(policy, action, ctx); // warm up
  const n = 200_000;
  const started = process.hrtime.bigint();
  for (let i = 0; i < n; i++) decide(policy, action, ctx);
  const ns = Number(process.hrtime.bigint() - started);
  return { rules: policy.rules.length, perDecisionUs: ns / n / 1000, decisionsPerSecond: Math.round(n / (ns / 1e9)) };
}
