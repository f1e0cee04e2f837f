// Spending controls for cards an agent creates through the mirror, derived from its policy, so
// Stripe itself enforces the limits if the gateway is ever bypassed or down. Appended to the
// agent's form body as extra parameters; the agent's own bytes are kept as they were.
import type { CompiledPolicy } from '../policy/model.js';

export function cardControlParams(policy: CompiledPolicy, currency: string, agentId: string): string {
  const params: [string, string][] = [['metadata[agent_id]', agentId]];
  const limits: [number, string][] = [];
  let allowed: string[] | undefined;
  const blocked = new Set<string>();
  let allowedCountries: string[] | undefined;
  const blockedCountries = new Set<string>();
  for (const rule of policy.rules) {
    if (rule.actionTypes && !rule.actionTypes.includes('card_authorization')) continue;
    switch (rule.type) {
      case 'max_amount':
        if (rule.limit.currency === currency) limits.push([rule.limit.amount, 'per_authorization']);
        break;
      case 'velocity_limit':
        if (rule.limit.currency === currency && rule.window !== 'hourly') limits.push([rule.limit.amount, rule.window]);
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
  limits.forEach(([amount, interval], i) => {
    params.push([`spending_controls[spending_limits][${i}][amount]`, String(amount)]);
    params.push([`spending_controls[spending_limits][${i}][interval]`, interval]);
  });
  // Stripe takes allowed or blocked categories, not both: an allowlist minus the blocked ones.
  if (allowed) (allowed.filter((n) => !blocked.has(n))).forEach((n, i) => params.push([`spending_controls[allowed_categories][${i}]`, n]));
  else [...blocked].sort().forEach((n, i) => params.push([`spending_controls[blocked_categories][${i}]`, n]));
  if (allowedCountries) allowedCountries.filter((c) => !blockedCountries.has(c)).sort().forEach((c, i) => params.push([`spending_controls[allowed_merchant_countries][${i}]`, c]));
  else [...blockedCountries].sort().forEach((c, i) => params.push([`spending_controls[blocked_merchant_countries][${i}]`, c]));
  return params.map(([k, v]) => `${encodeURIComponent(k).replace(/%5B/g, '[').replace(/%5D/g, ']')}=${encodeURIComponent(v)}`).join('&');
}
