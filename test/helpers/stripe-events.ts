// Stripe Issuing webhook events for tests, shaped from Stripe's own sample objects
// (test/fixtures/stripe/), and the Stripe-Signature header that signs them. Import through
// test/helpers/processor-events.ts.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Stripe from 'stripe';

type Json = Record<string, unknown>;

function fixture(file: string, name: string): Json {
  const parsed = JSON.parse(readFileSync(new URL(`../fixtures/stripe/${file}`, import.meta.url), 'utf8')) as { resources: Record<string, Json> };
  const resource = parsed.resources[name];
  if (!resource) throw new Error(`no ${name} in ${file}`);
  return resource;
}
const authorizationFixture = fixture('fixtures.json', 'issuing.authorization');
const transactionFixture = fixture('issuing-transaction.json', 'issuing.transaction');

const nowSeconds = (): number => Math.floor(Date.now() / 1000);
const randomId = (prefix: string): string => `${prefix}_${randomBytes(12).toString('hex')}`;

/** A Stripe Event as it arrives on a webhook endpoint. */
export interface StripeEventBody {
  id: string;
  object: 'event';
  type: string;
  api_version: string | null;
  created: number;
  livemode: boolean;
  pending_webhooks: number;
  request: { id: string | null; idempotency_key: string | null };
  data: { object: Json };
}

export interface StripeMerchantOptions {
  name?: string;
  networkId?: string;
  /** Stripe's category name, e.g. 'computer_software_stores'. */
  category?: string;
  /** `category_code`, e.g. '5734'. */
  mcc?: string;
  /** Alpha-2 as Stripe sends it, e.g. 'US'. */
  country?: string;
  city?: string;
  url?: string | null;
}

export interface StripeAuthorizationOptions {
  eventId?: string;
  /** `iauth_…`; default a fresh one. Reuse it for an incremental request. */
  authorizationId?: string;
  cardId?: string;
  /** The card's `metadata.agent_id`; null leaves it out. Default 'agt_test'. */
  agentId?: string | null;
  cardholderId?: string;
  cardholderMetadata?: Record<string, string>;
  cardStatus?: 'active' | 'inactive' | 'canceled';
  /** Minor units: the pending request's amount (request) or the top-level amount (created/updated). Default 700. */
  amount?: number;
  currency?: string;
  merchantAmount?: number;
  merchantCurrency?: string;
  merchant?: StripeMerchantOptions;
  /** `pending_request.is_amount_controllable`. Default false. */
  controllable?: boolean;
  /** Decided requests before this one: 0 for a first request, 1+ for an incremental one. */
  requestHistoryLength?: number;
  /** Default the SDK's pinned version; null sends none. */
  apiVersion?: string | null;
  livemode?: boolean;
  /** Unix seconds; default now. */
  created?: number;
  authorizationMethod?: 'chip' | 'contactless' | 'keyed_in' | 'online' | 'swipe';
  wallet?: 'apple_pay' | 'google_pay' | 'samsung_pay' | null;
}

export interface StripeAuthorizationEventOptions extends StripeAuthorizationOptions {
  /** Default true. */
  approved?: boolean;
  /** Default 'pending' when approved, else 'closed'. */
  status?: 'pending' | 'closed' | 'reversed' | 'expired';
}

export interface StripeTransactionOptions {
  eventId?: string;
  eventType?: 'issuing_transaction.created' | 'issuing_transaction.updated';
  /** `ipi_…`; default a fresh one. */
  transactionId?: string;
  /** Default 'capture'. */
  type?: 'capture' | 'refund';
  /** Positive minor units; the helper applies Stripe's sign (capture negative). Default 700. */
  amount?: number;
  currency?: string;
  /** Default a fresh `iauth_…`; null for an unlinked capture or refund. */
  authorizationId?: string | null;
  cardId?: string;
  cardholderId?: string;
  merchant?: StripeMerchantOptions;
  apiVersion?: string | null;
  livemode?: boolean;
  created?: number;
}

function stripeEvent(type: string, object: Json, opts: { eventId?: string; apiVersion?: string | null; livemode?: boolean; created?: number }): StripeEventBody {
  return {
    id: opts.eventId ?? randomId('evt'),
    object: 'event',
    type,
    api_version: opts.apiVersion === undefined ? Stripe.API_VERSION : opts.apiVersion,
    created: opts.created ?? nowSeconds(),
    livemode: opts.livemode ?? false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    data: { object },
  };
}

function merchantData(base: unknown, m: StripeMerchantOptions = {}): Json {
  const data = { ...(base as Json) };
  if (m.name !== undefined) data.name = m.name;
  if (m.networkId !== undefined) data.network_id = m.networkId;
  if (m.category !== undefined) data.category = m.category;
  if (m.mcc !== undefined) data.category_code = m.mcc;
  if (m.country !== undefined) data.country = m.country;
  if (m.city !== undefined) data.city = m.city;
  if (m.url !== undefined) data.url = m.url;
  return data;
}

function authorizationObject(opts: StripeAuthorizationOptions, created: number): Json {
  const auth = structuredClone(authorizationFixture);
  const card = auth.card as Json;
  const cardholder = card.cardholder as Json;
  const currency = opts.currency ?? 'usd';
  if (opts.cardId !== undefined) card.id = opts.cardId;
  const agentId = opts.agentId === undefined ? 'agt_test' : opts.agentId;
  card.metadata = agentId === null ? {} : { agent_id: agentId };
  card.status = opts.cardStatus ?? 'active';
  card.currency = currency;
  if (opts.cardholderId !== undefined) cardholder.id = opts.cardholderId;
  cardholder.metadata = opts.cardholderMetadata ?? {};
  auth.id = opts.authorizationId ?? randomId('iauth');
  auth.cardholder = cardholder.id;
  auth.currency = currency;
  auth.merchant_currency = opts.merchantCurrency ?? currency;
  auth.merchant_data = merchantData(auth.merchant_data, opts.merchant);
  auth.authorization_method = opts.authorizationMethod ?? 'online';
  auth.wallet = opts.wallet ?? null;
  auth.livemode = opts.livemode ?? false;
  auth.created = created;
  auth.request_history = Array.from({ length: opts.requestHistoryLength ?? 0 }, () => ({
    amount: 100,
    amount_details: { atm_fee: null, cashback_amount: null },
    approved: true,
    authorization_code: 'S498162',
    created,
    currency,
    merchant_amount: 100,
    merchant_currency: auth.merchant_currency,
    network_risk_score: null,
    reason: 'webhook_approved',
    reason_message: null,
    requested_at: created,
  }));
  return auth;
}

/** An `issuing_authorization.request` event: the money asked for is in `pending_request`. */
export function stripeAuthorizationRequest(opts: StripeAuthorizationOptions = {}): StripeEventBody {
  const created = opts.created ?? nowSeconds();
  const auth = authorizationObject(opts, created);
  const amount = opts.amount ?? 700;
  Object.assign(auth, { amount: 0, merchant_amount: 0, approved: false, status: 'pending' });
  auth.pending_request = {
    amount,
    amount_details: { atm_fee: null, cashback_amount: null },
    currency: auth.currency,
    is_amount_controllable: opts.controllable ?? false,
    merchant_amount: opts.merchantAmount ?? amount,
    merchant_currency: auth.merchant_currency,
    network_risk_score: null,
  };
  return stripeEvent('issuing_authorization.request', auth, { ...opts, created });
}

/** `issuing_authorization.created` / `.updated`: the decision made, `amount` held or final. */
export function stripeAuthorizationEvent(
  type: 'issuing_authorization.created' | 'issuing_authorization.updated',
  opts: StripeAuthorizationEventOptions = {},
): StripeEventBody {
  const created = opts.created ?? nowSeconds();
  const auth = authorizationObject({ requestHistoryLength: 1, ...opts }, created);
  const approved = opts.approved ?? true;
  const amount = opts.amount ?? 700;
  Object.assign(auth, {
    amount,
    merchant_amount: opts.merchantAmount ?? amount,
    approved,
    status: opts.status ?? (approved ? 'pending' : 'closed'),
    pending_request: null,
  });
  return stripeEvent(type, auth, { ...opts, created });
}

/** `issuing_transaction.created` (or `.updated`): a capture or a refund. */
export function stripeTransactionEvent(opts: StripeTransactionOptions = {}): StripeEventBody {
  const created = opts.created ?? nowSeconds();
  const txn = structuredClone(transactionFixture);
  const type = opts.type ?? 'capture';
  const amount = (opts.amount ?? 700) * (type === 'capture' ? -1 : 1);
  Object.assign(txn, {
    id: opts.transactionId ?? randomId('ipi'),
    type,
    amount,
    merchant_amount: amount,
    currency: opts.currency ?? 'usd',
    merchant_currency: opts.currency ?? 'usd',
    authorization: opts.authorizationId === undefined ? randomId('iauth') : opts.authorizationId,
    created,
    livemode: opts.livemode ?? false,
    merchant_data: merchantData(txn.merchant_data, opts.merchant),
  });
  if (opts.cardId !== undefined) txn.card = opts.cardId;
  if (opts.cardholderId !== undefined) txn.cardholder = opts.cardholderId;
  return stripeEvent(opts.eventType ?? 'issuing_transaction.created', txn, { ...opts, created });
}

/** The `Stripe-Signature` header value for `payload` (the exact bytes to send). */
export function signStripe(payload: string, secret: string, timestamp: number = nowSeconds()): string {
  return Stripe.webhooks.generateTestHeaderString({ payload, secret, timestamp });
}

