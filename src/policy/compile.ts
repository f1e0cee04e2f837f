// JSON policy document → CompiledPolicy. Every problem is collected (not just the first) with the
// path of the key that caused it, so both front doors can point at the exact line or field.
import type { z } from 'zod';
import { MoneyError, isCurrency, toMinorUnits } from '../money.js';
import type { Money } from '../money.js';
import { resolveCategories } from './categories.js';
import { parseEndpointPattern } from './endpoints.js';
import { RULE_TYPES, policyDocumentSchema, ruleParameters } from './model.js';
import type { CategorySet, CompiledPolicy, CompiledRule, PolicyDocument, RuleType, Window } from './model.js';

export interface PolicyIssue {
  /** Dotted path inside the document, e.g. "rules[1].parameters.limit". */
  path: string;
  message: string;
}

export class PolicyError extends Error {
  constructor(readonly issues: PolicyIssue[]) {
    super(issues.map((i) => `${i.path || '(policy)'}: ${i.message}`).join('; '));
  }
}

export function formatPath(path: readonly PropertyKey[]): string {
  return path
    .map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`))
    .join('');
}

function zodIssues(error: z.ZodError, input: unknown, prefix: readonly PropertyKey[] = []): PolicyIssue[] {
  return error.issues.map((issue) => {
    const path = [...prefix, ...issue.path];
    const unknownKeys = issue.code === 'unrecognized_keys' ? issue.keys : [];
    if (unknownKeys.length > 0) {
      return { path: formatPath([...path, unknownKeys[0] ?? '']), message: `unknown key ${unknownKeys.map((k) => `"${k}"`).join(', ')}` };
    }
    const missing = issue.path.length > 0 && valueAt(input, issue.path) === undefined;
    return { path: formatPath(path), message: missing ? 'is required' : issue.message };
  });
}

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  return path.reduce<unknown>((v, key) => (v !== null && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[key] : undefined), value);
}

/** Validates and normalizes a document; throws PolicyError listing every issue. */
export function parsePolicyDocument(input: unknown): z.output<typeof policyDocumentSchema> {
  const parsed = policyDocumentSchema.safeParse(input);
  if (!parsed.success) throw new PolicyError(zodIssues(parsed.error, input));
  return parsed.data;
}

/** Rules as given, even when the document around them is invalid, so their issues are reported too. */
function rawRules(input: unknown): { rule_id: string; rule_type: string; description: string; parameters: Record<string, unknown> }[] {
  const rules = (input as { rules?: unknown } | null)?.rules;
  if (!Array.isArray(rules)) return [];
  return rules.map((r) => {
    const rule = (r ?? {}) as Record<string, unknown>;
    const parameters = rule.parameters && typeof rule.parameters === 'object' && !Array.isArray(rule.parameters) ? (rule.parameters as Record<string, unknown>) : {};
    return { rule_id: String(rule.rule_id ?? ''), rule_type: String(rule.rule_type ?? ''), description: typeof rule.description === 'string' ? rule.description : '', parameters };
  });
}

export function compilePolicy(input: unknown, version: number): CompiledPolicy {
  const issues: PolicyIssue[] = [];
  const parsed = policyDocumentSchema.safeParse(input);
  if (!parsed.success) issues.push(...zodIssues(parsed.error, input));
  const document = parsed.success ? parsed.data : { policy_id: '', default_currency: undefined, rules: rawRules(input) };
  const seenIds = new Set<string>();
  const defaultCurrency = document.default_currency?.toLowerCase() ?? soleCurrency(document);
  const rules: CompiledRule[] = [];

  document.rules.forEach((rule, index) => {
    const at = (...keys: PropertyKey[]) => formatPath(['rules', index, ...keys]);
    if (seenIds.has(rule.rule_id)) issues.push({ path: at('rule_id'), message: `duplicate rule_id "${rule.rule_id}"` });
    seenIds.add(rule.rule_id);
    if (!(RULE_TYPES as string[]).includes(rule.rule_type)) {
      const reported = issues.some((i) => i.path === at('rule_type'));
      if (!reported) issues.push({ path: at('rule_type'), message: `unknown rule_type "${rule.rule_type}" (one of ${RULE_TYPES.join(', ')})` });
      return;
    }
    const type = rule.rule_type as RuleType;
    const params = ruleParameters[type].safeParse(rule.parameters);
    if (!params.success) {
      issues.push(...zodIssues(params.error, rule.parameters, ['rules', index, 'parameters']));
      return;
    }
    const problems: PolicyIssue[] = [];
    const compiled = compileRule(type, params.data as Record<string, unknown>, {
      id: rule.rule_id,
      description: rule.description,
      defaultCurrency,
      fail: (key, message) => problems.push({ path: at('parameters', key), message }),
    });
    issues.push(...problems);
    if (compiled && problems.length === 0) rules.push(compiled);
  });

  const allowedEndpoints = (document.allowed_endpoints ?? []).flatMap((text, i) => {
    const pattern = parseEndpointPattern(text);
    if (typeof pattern === 'string') {
      issues.push({ path: formatPath(['allowed_endpoints', i]), message: pattern });
      return [];
    }
    return [pattern];
  });
  if (issues.length > 0) throw new PolicyError(issues);
  return {
    policyId: document.policy_id, version, rules,
    ...(document.partial_approval ? { partialApproval: true } : {}),
    ...(document.allowed_endpoints ? { allowedEndpoints } : {}),
  };
}

/** The only currency the document's rules name, if exactly one; rules without one inherit it. */
function soleCurrency(document: Pick<PolicyDocument, 'rules'>): string | undefined {
  const named = new Set(
    document.rules
      .map((r) => (r.parameters as Record<string, unknown> | undefined)?.currency)
      .filter((c): c is string => typeof c === 'string')
      .map((c) => c.toLowerCase()),
  );
  return named.size === 1 ? [...named][0] : undefined;
}

interface RuleContext {
  id: string;
  description: string;
  defaultCurrency: string | undefined;
  fail: (key: string, message: string) => void;
}

function compileRule(type: RuleType, p: Record<string, unknown>, ctx: RuleContext): CompiledRule | undefined {
  const base = { id: ctx.id, description: ctx.description, actionTypes: p.action_types as string[] | undefined };
  const currencyOf = (): string | undefined => {
    const code = (p.currency as string | undefined) ?? ctx.defaultCurrency;
    if (code === undefined) {
      ctx.fail('currency', 'currency is required (no default_currency and the rules name several or none)');
      return undefined;
    }
    if (!isCurrency(code)) {
      ctx.fail('currency', `unknown currency "${code}"`);
      return undefined;
    }
    return code.toLowerCase();
  };
  const money = (key: string, currency: string | undefined): Money | undefined => {
    const value = p[key] as number | string | undefined;
    if (value === undefined || currency === undefined) return undefined;
    try {
      return { amount: toMinorUnits(value, currency), currency };
    } catch (error) {
      ctx.fail(key, error instanceof MoneyError ? error.message : String(error));
      return undefined;
    }
  };
  const categories = (key: string): CategorySet => {
    const list = (p[key] as string[] | undefined) ?? [];
    const { resolved, unknown } = resolveCategories(list);
    for (const name of unknown) ctx.fail(key, `unknown category "${name}" (a Stripe Issuing category, a group such as "gambling", or a 4-digit MCC)`);
    return { mccs: resolved.mccs, stripeNames: new Set(resolved.stripeCategories) };
  };
  const upper = (list: unknown) => new Set((list as string[]).map((c) => c.toUpperCase()));

  switch (type) {
    case 'max_amount': {
      const limit = money('limit', currencyOf());
      return limit && { ...base, type, limit };
    }
    case 'escalate_if': {
      const currency = p.amount_above === undefined && p.notify_at_or_above === undefined
        ? (p.currency as string | undefined)?.toLowerCase() ?? ctx.defaultCurrency ?? ''
        : currencyOf();
      if (currency === undefined) return undefined;
      const above = money('amount_above', currency);
      const notifyAtOrAbove = money('notify_at_or_above', currency);
      if (above && notifyAtOrAbove && notifyAtOrAbove.amount > above.amount) {
        ctx.fail('notify_at_or_above', 'must not be greater than amount_above');
      }
      return { ...base, type, currency, above, notifyAtOrAbove };
    }
    case 'refund_age_limit':
      return { ...base, type, maxDays: p.max_days as number, ifUnknown: p.if_unknown as 'block' | 'escalate' };
    case 'velocity_limit': {
      const limit = money('limit', currencyOf());
      return limit && { ...base, type, limit, window: p.window as Window };
    }
    case 'rate_limit':
      return { ...base, type, maxCount: p.max_count as number, window: p.window as Window };
    case 'merchant_allowlist':
      return {
        ...base,
        type,
        merchants: (p.merchants as string[]).map(normalizeMerchant),
        categories: p.categories === undefined ? undefined : categories('categories'),
      };
    case 'merchant_blocklist':
      return { ...base, type, merchants: (p.merchants as string[]).map(normalizeMerchant) };
    case 'category_allowlist':
      return { ...base, type, categories: categories('categories') };
    case 'category_blocklist':
      return { ...base, type, categories: categories('categories') };
    case 'country_restriction':
      return {
        ...base,
        type,
        allowed: p.allowed_countries === undefined ? undefined : upper(p.allowed_countries),
        blocked: p.blocked_countries === undefined ? undefined : upper(p.blocked_countries),
      };
    case 'currency_allowlist': {
      for (const code of p.currencies as string[]) if (!isCurrency(code)) ctx.fail('currencies', `unknown currency "${code}"`);
      return { ...base, type, currencies: new Set((p.currencies as string[]).map((c) => c.toLowerCase())) };
    }
    case 'time_window': {
      const startMinute = minutesOf(p.start as string);
      const endMinute = minutesOf(p.end as string);
      if (startMinute === endMinute) ctx.fail('end', 'start and end must differ');
      return { ...base, type, days: new Set(p.days as string[]), startMinute, endMinute };
    }
    case 'counterparty_limit': {
      const limit = p.limit === undefined ? undefined : money('limit', currencyOf());
      if (p.limit !== undefined && !limit) return undefined;
      return { ...base, type, limit, maxCount: p.max_count as number | undefined, window: p.window as Window };
    }
    case 'duplicate_window':
      return { ...base, type, windowSeconds: p.window_seconds as number };
    case 'action_type_allowlist':
      return { id: ctx.id, description: ctx.description, type, allowed: new Set(p.action_types as string[]) };
  }
}

function minutesOf(clock: string): number {
  const [h, m] = clock.split(':').map(Number);
  return (h ?? 0) * 60 + (m ?? 0);
}

/** Merchants compare case-insensitively; a URL is reduced to its host without "www.". */
export function normalizeMerchant(value: string): string {
  let text = value.trim().toLowerCase();
  const url = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]+)/.exec(text);
  if (url) text = url[1] ?? text;
  return text.replace(/^www\./, '').replace(/:\d+$/, '');
}
