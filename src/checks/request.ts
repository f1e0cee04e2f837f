// The seed-002 check request: its schema and its translation into a neutral Action (major units →
// minor units, exactly, at this boundary).
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { AppError } from '../errors.js';
import { MoneyError, isCurrency, toMinorUnits } from '../money.js';
import { isKnownCategoryName, normalizeMcc } from '../policy/categories.js';
import type { Action } from '../policy/model.js';

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Text PostgreSQL can store: no NUL, no lone UTF-16 surrogates. */
function isStorableText(s: string): boolean {
  return !s.includes('\u0000') && !LONE_SURROGATE.test(s);
}

const text = (max: number) => z.string().max(max).refine(isStorableText, 'must be valid text (no NUL or broken Unicode)');

const MAX_METADATA_BYTES = 16_384;
const MAX_METADATA_DEPTH = 8;

/** Metadata is stored as jsonb: bounded size and depth, and every string valid text. */
const metadataSchema = z.record(z.string(), z.unknown()).superRefine((value, ctx) => {
  const problem = metadataProblem(value);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

function metadataProblem(value: unknown): string | undefined {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop() as [unknown, number];
    if (depth > MAX_METADATA_DEPTH) return `must not nest deeper than ${MAX_METADATA_DEPTH} levels`;
    if (typeof v === 'string' && !isStorableText(v)) return 'must contain valid text only (no NUL or broken Unicode)';
    if (v && typeof v === 'object') {
      for (const [k, child] of Object.entries(v)) {
        if (!isStorableText(k)) return 'must have valid text keys';
        stack.push([child, depth + 1]);
      }
    }
  }
  return Buffer.byteLength(JSON.stringify(value)) > MAX_METADATA_BYTES ? `must be at most ${MAX_METADATA_BYTES} bytes as JSON` : undefined;
}

const country = z.string().regex(/^[A-Za-z]{2}$/, 'must be an ISO 3166-1 alpha-2 code such as "US"');
const category = text(200).refine(isKnownCategoryName, 'must be a Stripe Issuing category (e.g. "betting_casino_gambling") or a group such as "gambling"; send an unknown category as merchant.mcc');

const merchant = z.strictObject({
  name: text(500).optional(),
  url: text(2000).optional(),
  network_id: text(200).optional(),
  mcc: z.union([z.string(), z.number()]).optional(),
  category: category.optional(),
  country: country.optional(),
});

export const checkRequestSchema = z.strictObject({
  agent_id: z.string().min(1).max(64).optional(),
  policy_id: z.string().min(1).max(64).optional(),
  action_type: z.string().regex(/^[a-z][a-z0-9_.]{0,63}$/, 'must be a lower-case action name such as "refund"'),
  amount: z.union([z.number(), z.string()]),
  currency: z.string().refine(isCurrency, 'must be an ISO 4217 currency code such as "USD"'),
  counterparty: text(500).optional(),
  merchant: merchant.optional(),
  metadata: metadataSchema.default({}),
  simulate: z.boolean().default(false),
  idempotency_key: text(255).pipe(z.string().min(1)).optional(),
});
export type CheckRequest = z.output<typeof checkRequestSchema>;

export function toAction(request: CheckRequest, now: Date): Action {
  const currency = request.currency.toLowerCase();
  let amount: number;
  try {
    amount = toMinorUnits(request.amount, currency);
  } catch (error) {
    const message = error instanceof MoneyError ? error.message : String(error);
    throw new AppError('invalid_request', `Invalid request: amount: ${message}`, [{ field: 'amount', message }]);
  }
  const meta = request.metadata;
  const metaText = (value: unknown) => (typeof value === 'string' && value.trim() ? value.trim() : undefined);
  const m = request.merchant ?? {};
  const mcc = m.mcc ?? meta.mcc ?? meta.merchant_category_code;
  if (mcc !== undefined && normalizeMcc(mcc) === undefined) {
    throw new AppError('invalid_request', 'Invalid request: merchant.mcc must be a 4-digit merchant category code', [{ field: 'merchant.mcc', message: 'must be a 4-digit MCC' }]);
  }
  const fail = (field: string, message: string): never => {
    throw new AppError('invalid_request', `Invalid request: ${field}: ${message}`, [{ field, message }]);
  };
  const categoryName = m.category ?? metaText(meta.merchant_category);
  if (categoryName !== undefined && !isKnownCategoryName(categoryName)) fail('metadata.merchant_category', 'must be a Stripe Issuing category or a group such as "gambling"');
  const countryCode = m.country ?? metaText(meta.merchant_country) ?? metaText(meta.country);
  if (countryCode !== undefined && !/^[A-Za-z]{2}$/.test(countryCode)) fail('metadata.merchant_country', 'must be an ISO 3166-1 alpha-2 code such as "US"');
  const action: Action = {
    actionType: request.action_type,
    amount,
    currency,
    counterparty: request.counterparty,
    merchant: {
      name: m.name ?? metaText(meta.merchant_name),
      url: m.url ?? metaText(meta.merchant_url) ?? metaText(meta.merchant_domain),
      networkId: m.network_id ?? metaText(meta.merchant_network_id),
      mcc: normalizeMcc(mcc),
      category: categoryName,
      country: countryCode?.toUpperCase(),
    },
    refundAgeDays: refundAge(meta, now),
  };
  return action;
}

/** days_since_purchase, or the age of purchase_date / charge_created (ISO date or unix seconds). */
function refundAge(meta: Record<string, unknown>, now: Date): number | undefined {
  const days = meta.days_since_purchase;
  if (days !== undefined) {
    if (typeof days !== 'number' || !Number.isInteger(days) || days < 0) {
      throw new AppError('invalid_request', 'Invalid request: metadata.days_since_purchase must be a non-negative integer', [{ field: 'metadata.days_since_purchase', message: 'must be a non-negative integer' }]);
    }
    return days;
  }
  const when = meta.purchase_date ?? meta.charge_created;
  if (when === undefined) return undefined;
  const field = meta.purchase_date !== undefined ? 'metadata.purchase_date' : 'metadata.charge_created';
  const time = typeof when === 'number' ? when * 1000 : typeof when === 'string' ? Date.parse(when) : NaN;
  if (!Number.isFinite(time)) {
    throw new AppError('invalid_request', `Invalid request: ${field} must be an ISO date or unix seconds`, [{ field, message: 'unreadable date' }]);
  }
  // A date in the future (or milliseconds sent as seconds) would make an old purchase look new.
  if (time > now.getTime() + 86_400_000) {
    throw new AppError('invalid_request', `Invalid request: ${field} is in the future`, [{ field, message: 'is in the future (unix seconds expected, not milliseconds)' }]);
  }
  return Math.max(0, Math.floor((now.getTime() - time) / 86_400_000));
}

/** Same key + same parameters = the same request; anything else is an idempotency error. */
export function requestHash(request: CheckRequest, policyId: string): string {
  // agent_id is implied by the key (a mismatch is refused before this), so it is not a parameter.
  const { idempotency_key: _k, simulate: _s, agent_id: _a, ...rest } = request;
  return createHash('sha256').update(JSON.stringify(canonical({ ...rest, policy_id: policyId }))).digest('hex');
}

function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, canonical((value as Record<string, unknown>)[k])]));
  }
  return value;
}
