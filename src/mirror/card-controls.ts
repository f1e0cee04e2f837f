// Spending controls for cards an agent creates through the mirror, derived from its policy, so
// Stripe itself enforces the limits if the gateway is ever bypassed or down. Appended to the
// agent's form body as extra parameters; the agent's own bytes are kept as they were. The
// reconciliation job compares a card's controls at Stripe with the same derivation.
import type { SpendingControls, SpendingInterval } from '../../adapters/processor.js';
import type { CompiledPolicy } from '../policy/model.js';

export function cardSpendingControls(policy: CompiledPolicy, currency: string): SpendingControls {
  const limits: { amount: number; interval: SpendingInterval }[] = [];
  let allowed: string[] | undefined;
  const blocked = new Set<string>();
  let allowedCountries: string[] | undefined;
  const blockedCountries = new Set<string>();
  for (const rule of policy.rules) {
    if (rule.actionTypes && !rule.actionTypes.includes('card_authorization')) continue;
    switch (rule.type) {
      case 'max_amount':
        if (rule.limit.currency === currency) limits.push({ amount: rule.limit.amount, interval: 'per_authorization' });
        break;
      case 'velocity_limit':
        if (rule.limit.currency === currency && rule.window !== 'hourly') limits.push({ amount: rule.limit.amount, interval: rule.window });
        break;
      case 'category_allowlist': {
        const names = [...rule.categories.stripeNames];
        allowed = allowed ? allowed.filter((n) => names.includes(n)) : names;
        break;
      }
      case 'category_blocklist':
        for (const name of rule.categories.stripeNames) blocked.add(name);
        break;
      case 'country_restriction':
        if (rule.allowed) allowedCountries = allowedCountries ? allowedCountries.filter((c) => rule.allowed?.has(c)) : [...rule.allowed];
        for (const c of rule.blocked ?? []) blockedCountries.add(c);
        break;
      default:
        break;
    }
  }
  // Stripe takes allowed or blocked categories, not both: an allowlist minus the blocked ones.
  const orNull = (list: string[]) => (list.length > 0 ? list : null);
  return {
    limits,
    allowedCategories: allowed ? allowed.filter((n) => !blocked.has(n)) : null,
    blockedCategories: allowed ? null : orNull([...blocked].sort()),
    allowedCountries: allowedCountries ? allowedCountries.filter((c) => !blockedCountries.has(c)).sort() : null,
    blockedCountries: allowedCountries ? null : orNull([...blockedCountries].sort()),
  };
}

export function cardControlParams(policy: CompiledPolicy, currency: string, agentId: string): string {
  const controls = cardSpendingControls(policy, currency);
  const params: [string, string][] = [['metadata[agent_id]', agentId]];
  controls.limits.forEach(({ amount, interval }, i) => {
    params.push([`spending_controls[spending_limits][${i}][amount]`, String(amount)]);
    params.push([`spending_controls[spending_limits][${i}][interval]`, interval]);
  });
  if (controls.allowedCategories) controls.allowedCategories.forEach((n, i) => params.push([`spending_controls[allowed_categories][${i}]`, n]));
  else (controls.blockedCategories ?? []).forEach((n, i) => params.push([`spending_controls[blocked_categories][${i}]`, n]));
  if (controls.allowedCountries) controls.allowedCountries.forEach((c, i) => params.push([`spending_controls[allowed_merchant_countries][${i}]`, c]));
  else (controls.blockedCountries ?? []).forEach((c, i) => params.push([`spending_controls[blocked_merchant_countries][${i}]`, c]));
  return params.map(([k, v]) => `${encodeURIComponent(k).replace(/%5B/g, '[').replace(/%5D/g, ']')}=${encodeURIComponent(v)}`).join('&');
}
