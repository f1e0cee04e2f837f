// The rule model: what a policy document may say (JSON rules, seed 002) and the compiled form
// decide() reads. SPEND.md compiles to the same document, so there is one model, two front doors.
import { z } from 'zod';
import { isCurrency } from '../money.js';
import type { Money } from '../money.js';
import type { EndpointPattern } from './endpoints.js';

export const WINDOWS = ['hourly', 'daily', 'weekly', 'monthly'] as const;
export type Window = (typeof WINDOWS)[number];
const windowSchema = z
  .enum(['hourly', 'daily', 'weekly', 'monthly', 'hour', 'day', 'week', 'month'])
  .transform((w): Window => (w.endsWith('ly') ? (w as Window) : w === 'day' ? 'daily' : (`${w}ly` as Window)));

const major = z.union([z.number().nonnegative(), z.string().regex(/^\d+(\.\d+)?$/)]);
const currency = z.string().refine(isCurrency, { error: (issue) => `unknown currency "${String(issue.input)}" (an ISO 4217 code such as "USD")` });
const actionType = z.string().regex(/^[a-z][a-z0-9_.]{0,63}$/, 'must be a lower-case action name such as "refund"');
const actionTypes = z.array(actionType).min(1);
const names = z.array(z.string().trim().min(1).max(253));
const country = z.string().regex(/^[A-Za-z]{2}$/, 'must be an ISO 3166-1 alpha-2 code such as "US"');
const clock = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$|^24:00$/, 'must be HH:MM');
const day = z.enum(['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun']);

/** Each rule type's parameters; unknown keys are errors, so a typo never disables a control. */
export const ruleParameters = {
  max_amount: z.strictObject({ limit: major, currency: currency.optional(), action_types: actionTypes.optional() }),
  escalate_if: z.strictObject({
    amount_above: major.optional(),
    notify_at_or_above: major.optional(),
    currency: currency.optional(),
    action_types: actionTypes.optional(),
  }),
  refund_age_limit: z.strictObject({
    max_days: z.number().int().nonnegative(),
    if_unknown: z.enum(['block', 'escalate']).default('escalate'),
    action_types: actionTypes.default(['refund']),
  }),
  velocity_limit: z.strictObject({
    limit: major,
    currency: currency.optional(),
    window: windowSchema,
    action_types: actionTypes.optional(),
  }),
  rate_limit: z.strictObject({
    max_count: z.number().int().nonnegative(),
    window: windowSchema,
    action_types: actionTypes.optional(),
  }),
  merchant_allowlist: z.strictObject({
    merchants: names,
    categories: names.optional(),
    action_types: actionTypes.optional(),
  }),
  merchant_blocklist: z.strictObject({ merchants: names, action_types: actionTypes.optional() }),
  category_allowlist: z.strictObject({ categories: names, action_types: actionTypes.optional() }),
  category_blocklist: z.strictObject({ categories: names, action_types: actionTypes.optional() }),
  country_restriction: z
    .strictObject({
      allowed_countries: z.array(country).optional(),
      blocked_countries: z.array(country).optional(),
      action_types: actionTypes.optional(),
    })
    .refine((p) => (p.allowed_countries === undefined) !== (p.blocked_countries === undefined), {
      message: 'give exactly one of allowed_countries or blocked_countries',
    }),
  currency_allowlist: z.strictObject({ currencies: z.array(z.string().regex(/^[A-Za-z]{3}$/, 'must be a 3-letter ISO 4217 code')), action_types: actionTypes.optional() }),
  time_window: z.strictObject({
    days: z.array(day).min(1).default(['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun']),
    start: clock,
    end: clock,
    action_types: actionTypes.optional(),
  }),
  counterparty_limit: z
    .strictObject({
      limit: major.optional(),
      max_count: z.number().int().nonnegative().optional(),
      currency: currency.optional(),
      window: windowSchema,
      action_types: actionTypes.optional(),
    })
    .refine((p) => p.limit !== undefined || p.max_count !== undefined, {
      message: 'give limit, max_count or both',
    }),
  duplicate_window: z.strictObject({
    window_seconds: z.number().int().positive().max(31 * 24 * 3600),
    action_types: actionTypes.optional(),
  }),
  action_type_allowlist: z.strictObject({ action_types: z.array(actionType) }),
} as const;

export type RuleType = keyof typeof ruleParameters;
export const RULE_TYPES = Object.keys(ruleParameters) as RuleType[];

export const ruleSchema = z.strictObject({
  rule_id: z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'letters, digits, _ . : - (1-64)'),
  rule_type: z.string(),
  description: z.string().max(500).default(''),
  parameters: z.record(z.string(), z.unknown()).default({}),
});

export const policyDocumentSchema = z.strictObject({
  policy_id: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, _ . - (1-64)'),
  name: z.string().max(200).optional(),
  description: z.string().max(2000).optional(),
  /** Currency of rules that name none; defaults to the one currency the rules name. */
  default_currency: currency.optional(),
  /** Card authorizations over a limit may be approved for what is left, where the merchant allows it. */
  partial_approval: z.boolean().optional(),
  /** The only Stripe API calls the mirror forwards for this agent (see endpoints.ts); unset = all but privileged ones. */
  allowed_endpoints: z.array(z.string().max(300)).max(200).optional(),
  rules: z.array(ruleSchema).max(500),
});
export type PolicyDocument = z.input<typeof policyDocumentSchema>;
export type RuleDocument = z.input<typeof ruleSchema>;

/** Categories resolved to MCCs, plus Stripe names ("miscellaneous" has no MCC of its own). */
export interface CategorySet {
  mccs: ReadonlySet<string>;
  stripeNames: ReadonlySet<string>;
}

/** Match rules only apply to some action types; undefined means every action. */
interface RuleBase {
  id: string;
  description: string;
  actionTypes?: readonly string[];
}

export type CompiledRule = RuleBase &
  (
    | { type: 'max_amount'; limit: Money }
    | { type: 'escalate_if'; above?: Money; notifyAtOrAbove?: Money; currency: string }
    | { type: 'refund_age_limit'; maxDays: number; ifUnknown: 'block' | 'escalate' }
    | { type: 'velocity_limit'; limit: Money; window: Window }
    | { type: 'rate_limit'; maxCount: number; window: Window }
    | { type: 'merchant_allowlist'; merchants: readonly string[]; categories?: CategorySet }
    | { type: 'merchant_blocklist'; merchants: readonly string[] }
    | { type: 'category_allowlist'; categories: CategorySet }
    | { type: 'category_blocklist'; categories: CategorySet }
    | { type: 'country_restriction'; allowed?: ReadonlySet<string>; blocked?: ReadonlySet<string> }
    | { type: 'currency_allowlist'; currencies: ReadonlySet<string> }
    | { type: 'time_window'; days: ReadonlySet<string>; startMinute: number; endMinute: number }
    | { type: 'counterparty_limit'; limit?: Money; maxCount?: number; window: Window }
    | { type: 'duplicate_window'; windowSeconds: number }
    | { type: 'action_type_allowlist'; allowed: ReadonlySet<string> }
  );

export interface CompiledPolicy {
  policyId: string;
  version: number;
  partialApproval?: boolean;
  allowedEndpoints?: readonly EndpointPattern[];
  rules: readonly CompiledRule[];
}

/** What an agent wants to do, normalized: money in minor units, codes in canonical case. */
export interface Action {
  actionType: string;
  amount: number;
  currency: string;
  counterparty?: string;
  merchant?: {
    name?: string;
    /** Domain such as "openai.com". */
    url?: string;
    networkId?: string;
    mcc?: string;
    category?: string;
    country?: string;
  };
  /** Days since the purchase a refund refers to, when known. */
  refundAgeDays?: number;
}
