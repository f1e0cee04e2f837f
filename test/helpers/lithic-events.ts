// Lithic webhooks for tests: Auth Stream Access requests and card_transaction.updated events typed
// by the lithic SDK, and the Standard Webhooks headers that sign them. Import through
// test/helpers/processor-events.ts.
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import type Lithic from 'lithic';

const nowSeconds = (): number => Math.floor(Date.now() / 1000);

export type LithicAsaBody = Lithic.CardAuthorization & { event_type?: 'card_authorization.approval_request' };

export interface LithicMerchantOptions {
  descriptor?: string;
  acceptorId?: string;
  mcc?: string;
  city?: string;
  state?: string;
  /** Alpha-3 as Lithic sends it, e.g. 'USA'. */
  country?: string;
}

export interface LithicAsaOptions {
  /** The transaction token; reuse it for an incremental request. Default a fresh UUID. */
  token?: string;
  eventToken?: string;
  /** Add `event_type: card_authorization.approval_request` (the event-webhook form). Default false. */
  asEvent?: boolean;
  cardToken?: string;
  cardState?: Lithic.CardAuthorization.Card['state'];
  cardMemo?: string;
  /** Cardholder amount, minor units. Default 700. */
  amount?: number;
  /** Upper-case ISO 4217 as Lithic sends it. Default 'USD'. */
  currency?: string;
  merchantAmount?: number;
  merchantCurrency?: string;
  merchant?: LithicMerchantOptions;
  partialApprovalCapable?: boolean;
  panEntryMode?: NonNullable<Lithic.CardAuthorization.Pos.EntryMode['pan']>;
  walletType?: Lithic.TokenInfo['wallet_type'];
  created?: Date;
}

function lithicMerchant(m: LithicMerchantOptions = {}): Lithic.CardAuthorization.Merchant {
  return {
    descriptor: m.descriptor ?? 'ACME CLOUD',
    acceptor_id: m.acceptorId ?? '174030075991',
    acquiring_institution_id: '191231',
    mcc: m.mcc ?? '5734',
    city: m.city ?? 'NEW YORK',
    state: m.state ?? 'NY',
    country: m.country ?? 'USA',
    phone_number: null,
    postal_code: '10001',
    street_address: null,
  };
}

/** An Auth Stream Access request (Lithic's CardAuthorization). */
export function lithicAsaRequest(opts: LithicAsaOptions = {}): LithicAsaBody {
  const amount = opts.amount ?? 700;
  const currency = opts.currency ?? 'USD';
  const merchantAmount = opts.merchantAmount ?? amount;
  const merchantCurrency = opts.merchantCurrency ?? currency;
  const body: LithicAsaBody = {
    token: opts.token ?? randomUUID(),
    status: 'AUTHORIZATION',
    acquirer_fee: 0,
    amount,
    authorization_amount: amount,
    cardholder_currency: currency,
    merchant_amount: merchantAmount,
    merchant_currency: merchantCurrency,
    settled_amount: 0,
    cash_amount: 0,
    amounts: {
      cardholder: { amount, conversion_rate: '1.000000', currency },
      merchant: { amount: merchantAmount, currency: merchantCurrency },
      hold: { amount, currency },
      settlement: null,
    },
    avs: { address: '', zipcode: '10001', address_on_file_match: 'NOT_PRESENT' },
    card: {
      token: opts.cardToken ?? randomUUID(),
      last_four: '3860',
      memo: opts.cardMemo ?? 'agent card',
      spend_limit: 0,
      spend_limit_duration: 'TRANSACTION',
      state: opts.cardState ?? 'OPEN',
      type: 'VIRTUAL',
    },
    merchant: lithicMerchant(opts.merchant),
    name_validation: null,
    service_location: null,
    transaction_initiator: 'CARDHOLDER',
    created: (opts.created ?? new Date()).toISOString(),
    network: 'VISA',
    pos: {
      entry_mode: { card: 'NOT_PRESENT', cardholder: 'ELECTRONIC_ORDER', pan: opts.panEntryMode ?? 'ECOMMERCE', pin_entered: false },
      terminal: {
        attended: false,
        card_retention_capable: false,
        on_premise: false,
        operator: 'CARDHOLDER',
        partial_approval_capable: opts.partialApprovalCapable ?? false,
        pin_capability: 'NOT_CAPABLE',
        type: 'ECOMMERCE',
      },
    },
    token_info: opts.walletType ? { wallet_type: opts.walletType } : null,
  };
  if (opts.eventToken !== undefined) body.event_token = opts.eventToken;
  if (opts.asEvent) body.event_type = 'card_authorization.approval_request';
  return body;
}

export interface LithicTransactionEventOptions {
  /** A transaction event: CLEARING becomes a capture, RETURN a refund. Amount positive, minor units. */
  type: Lithic.Transaction.Event['type'];
  amount: number;
  /** Default a fresh UUID (it is the neutral transaction id). */
  token?: string;
  created?: Date;
}

export interface LithicTransactionOptions {
  /** The transaction (= authorization) token. Default a fresh UUID. */
  token?: string;
  cardToken?: string;
  /** Default 'PENDING'. */
  status?: Lithic.Transaction['status'];
  /** Default 'APPROVED', or 'DECLINED' when the status is. */
  result?: Lithic.Transaction['result'];
  /** Cardholder amount. Default 700. */
  amount?: number;
  /** Pending hold. Default `amount` while PENDING, else 0. */
  holdAmount?: number;
  currency?: string;
  merchant?: LithicMerchantOptions;
  /** Default one AUTHORIZATION event for `amount`. */
  events?: LithicTransactionEventOptions[];
  created?: Date;
  updated?: Date;
}

/** A `card_transaction.updated` event: a Transaction with its status and events. */
export function lithicTransactionEvent(opts: LithicTransactionOptions = {}): Lithic.CardTransactionUpdatedWebhookEvent {
  const status = opts.status ?? 'PENDING';
  const amount = opts.amount ?? 700;
  const currency = opts.currency ?? 'USD';
  const hold = opts.holdAmount ?? (status === 'PENDING' ? amount : 0);
  const created = opts.created ?? new Date();
  const events = (opts.events ?? [{ type: 'AUTHORIZATION', amount }]).map(
    (e): Lithic.Transaction.Event => ({
      token: e.token ?? randomUUID(),
      type: e.type,
      amount: e.amount,
      amounts: { cardholder: { amount: e.amount, conversion_rate: '1.000000', currency }, merchant: { amount: e.amount, currency }, settlement: null },
      created: (e.created ?? created).toISOString(),
      detailed_results: ['APPROVED'],
      effective_polarity: e.type === 'RETURN' ? 'CREDIT' : 'DEBIT',
      network_info: null,
      result: 'APPROVED',
      rule_results: [],
    }),
  );
  const asa = lithicAsaRequest({ amount, currency, merchant: opts.merchant });
  return {
    event_type: 'card_transaction.updated',
    token: opts.token ?? randomUUID(),
    account_token: randomUUID(),
    acquirer_fee: 0,
    acquirer_reference_number: null,
    amount,
    amounts: {
      cardholder: { amount, conversion_rate: '1.000000', currency },
      hold: { amount: hold, currency },
      merchant: { amount, currency },
      settlement: { amount: status === 'SETTLED' ? amount : 0, currency },
    },
    authorization_amount: amount,
    authorization_code: '123456',
    avs: null,
    card_token: opts.cardToken ?? randomUUID(),
    cardholder_authentication: null,
    created: created.toISOString(),
    updated: (opts.updated ?? created).toISOString(),
    financial_account_token: null,
    merchant: asa.merchant,
    merchant_amount: amount,
    merchant_authorization_amount: amount,
    merchant_currency: currency,
    network: 'VISA',
    network_risk_score: null,
    pos: { entry_mode: { card: 'NOT_PRESENT', cardholder: 'ELECTRONIC_ORDER', pan: 'ECOMMERCE', pin_entered: false }, terminal: asa.pos!.terminal! },
    result: opts.result ?? (status === 'DECLINED' ? 'DECLINED' : 'APPROVED'),
    service_location: null,
    settled_amount: status === 'SETTLED' ? amount : 0,
    status,
    tags: {},
    token_info: null,
    events,
  };
}

export interface LithicSignatureHeaders {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
}

/** A Lithic (Standard Webhooks) secret: `whsec_` + a base64 key. */
export function lithicSecret(): string {
  return `whsec_${randomBytes(24).toString('base64')}`;
}

/**
 * The Standard Webhooks headers Lithic sends with `body`: HMAC-SHA256 keyed with the secret's
 * base64-decoded key over `<id>.<timestamp>.<body>`, base64 (processors.md §3.5).
 */
export function signLithic(body: string, secret: string, opts: { id?: string; timestamp?: number } = {}): LithicSignatureHeaders {
  const id = opts.id ?? `msg_${randomBytes(12).toString('hex')}`;
  const timestamp = opts.timestamp ?? nowSeconds();
  const key = Buffer.from(secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret, 'base64');
  const signature = createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64');
  return { 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': `v1,${signature}` };
}
