// The seed-002 check request: its schema and its translation into a neutral Action (major units →
// minor units, exactly, at this boundary).
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { AppError } from '../errors.js';
import { MoneyError, isCurrency, toMinorUnits } from '../money.js';
import { normalizeMcc } from '../policy/categories.js';
import type { Action } from '../policy/model.js';

const merchant = z.strictObject({
  name: z.string().max(500).optional(),
  url: z.string().max(2000).optional(),
  network_id: z.string().max(200).optional(),
  mcc: z.union([z.string(), z.number()]).optional(),
  category: z.string().max(200).optional(),
  country: z.string().regex(/^[A-Za-z]{2}$/, 'must be an ISO 3166-1 alpha-2 code').optional(),
});

export const checkRequestSchema = z.strictObject({
  agent_id: z.string().min(1).max(64).optional(),
  policy_id: z.string().min(1).max(64).optional(),
  action_type: z.string().regex(/^[a-z][a-z0-9_.]{0,63}$/, 'must be a lower-case action name such as "refund"'),
  amount: z.union([z.number(), z.string()]),
  currency: z.string().refine(isCurrency, 'must be an ISO 4217 currency code such as "USD"'),
  counterparty: z.string().max(500).optional(),
  merchant: merchant.optional(),
  metadata: z.record(z.string(), z.unknown()).default({}),
  simulate: z.boolean().default(false),
  idempotency_key: z.string().min(1).max(255).optional(),
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
  const text = (value: unknown) => (typeof value === 'string' && value.trim() ? value.trim() : undefined);
  const m = request.merchant ?? {};
  const mcc = m.mcc ?? meta.mcc ?? meta.merchant_category_code;
  if (mcc !== undefined && normalizeMcc(mcc) === undefined) {
    throw new AppError('invalid_request', 'Invalid request: merchant.mcc must be a 4-digit merchant category code', [{ field: 'merchant.mcc', message: 'must be a 4-digit MCC' }]);
  }
  const action: Action = {
    actionType: request.action_type,
    amount,
    currency,
    counterparty: request.counterparty,
    merchant: {
      name: m.name ?? text(meta.merchant_name),
      url: m.url ?? text(meta.merchant_url) ?? text(meta.merchant_domain),
      networkId: m.network_id ?? text(meta.merchant_network_id),
      mcc: normalizeMcc(mcc),
      category: m.category ?? text(meta.merchant_category),
      country: (m.country ?? text(meta.merchant_country) ?? text(meta.country))?.toUpperCase(),
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
  const time = typeof when === 'number' ? when * 1000 : typeof when === 'string' ? Date.parse(when) : NaN;
  if (!Number.isFinite(time)) {
    throw new AppError('invalid_request', 'Invalid request: metadata.purchase_date must be an ISO date or unix seconds', [{ field: 'metadata.purchase_date', message: 'unreadable date' }]);
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
