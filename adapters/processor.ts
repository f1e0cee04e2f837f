// The neutral interface every card processor implements, and the neutral types it speaks. The
// gateway (src/) knows only these; each adapter (stripe/, lithic/) maps its processor's webhooks,
// answers and card calls to and from them. Adapters import this file and their own SDK, never src/.
//
// Conventions: money is integer minor units with a lower-case ISO currency; countries are ISO
// 3166-1 alpha-2 upper case; an MCC is a 4-character string (leading zeros kept); times are Dates.

export type ProcessorName = 'stripe' | 'lithic';

export interface Money {
  /** Integer minor units. */
  amount: number;
  /** Lower-case ISO 4217. */
  currency: string;
}

export type Headers = Record<string, string | string[] | undefined>;

// ---------------------------------------------------------------------------------------------
// Webhooks: verification, normalization, the synchronous answer.

/** The signature is missing, malformed, wrong, or too old. Nothing may happen after this. */
export class SignatureError extends Error {
  readonly code = 'signature_invalid';
}

/** The payload is signed but is not something we can read (bad JSON, missing fields). */
export class PayloadError extends Error {
  readonly code = 'payload_invalid';
}

export interface Merchant {
  name: string | null;
  /** Merchant id assigned by the network (Stripe `network_id`, Lithic `acceptor_id`). */
  networkId: string | null;
  /** Stripe Issuing category name when the processor gives one (Stripe only). */
  category: string | null;
  mcc: string | null;
  /** Alpha-2, upper case; null when unknown. */
  country: string | null;
  city: string | null;
  url: string | null;
}

export interface CardSnapshot {
  id: string;
  /** The card's own metadata (Stripe) or memo-derived tags; `agent_id` names the agent. */
  metadata: Record<string, string>;
  cardholderId: string | null;
  cardholderMetadata: Record<string, string>;
  /** The processor's view of the card in this event, mapped. */
  status: CardStatus | null;
}

/** A real-time request: approve or decline this much money now. */
export interface AuthorizationRequest {
  processor: ProcessorName;
  /** Event or message id as delivered (Stripe `evt_…`, Lithic `webhook-id`); for logs. */
  eventId: string;
  /** Stable across incremental requests and later events (Stripe `iauth_…`, Lithic token). */
  authorizationId: string;
  /**
   * Identifies this request among the authorization's requests: a redelivery has the same key,
   * an incremental request a new one. The ledger reserves once per key.
   */
  requestKey: string;
  /** The money asked for by this request (for an incremental request: the increment). */
  amount: Money;
  /** The merchant's own amount (differs on FX). */
  merchantAmount: Money | null;
  /** Partial approval is allowed (Stripe `is_amount_controllable`, Lithic terminal capable). */
  amountControllable: boolean;
  merchant: Merchant;
  card: CardSnapshot;
  wallet: string | null;
  /** chip, contactless, keyed_in, online, swipe… (lower case), null when unknown. */
  method: string | null;
  livemode: boolean;
  /** Stripe: the event's api_version, echoed as the answer's Stripe-Version. */
  apiVersion: string | null;
  createdAt: Date;
}

export interface AuthorizationAnswer {
  approved: boolean;
  /** Approve less than asked (only when the request is amount-controllable). */
  partialAmount?: number;
  /** A neutral reason code (policy rule type, `card_frozen`, `unknown_card`, `fail_mode`…). */
  reason: string;
  /** Strings stored on the processor's authorization where it supports that. */
  metadata: Record<string, string>;
}

/** What to send back over HTTP, exactly. */
export interface HttpReply {
  status: number;
  headers: Record<string, string>;
  body: unknown;
}

/** Where an authorization stands according to the processor. */
export type AuthorizationStatus = 'pending' | 'closed' | 'reversed' | 'expired' | 'declined';

export interface AuthorizationUpdate {
  kind: 'authorization';
  processor: ProcessorName;
  eventId: string;
  authorizationId: string;
  cardId: string;
  status: AuthorizationStatus;
  approved: boolean;
  /** The money currently held (pending) or finally authorized, in the card's currency. */
  amount: Money;
  /** When the processor says this state was reached; later states win over earlier ones. */
  occurredAt: Date;
  /** Data for finding the agent and recording the spend when no request reached us. */
  merchant: Merchant;
  card: CardSnapshot;
}

export interface TransactionUpdate {
  kind: 'transaction';
  processor: ProcessorName;
  eventId: string;
  transactionId: string;
  /** Null for an unlinked capture or refund. */
  authorizationId: string | null;
  cardId: string;
  type: 'capture' | 'refund';
  /** Always positive: money spent (capture) or given back (refund). */
  amount: Money;
  occurredAt: Date;
  merchant: Merchant;
  card: CardSnapshot;
}

export type SettlementUpdate = AuthorizationUpdate | TransactionUpdate;

export type WebhookEvent =
  | { kind: 'authorization_request'; request: AuthorizationRequest }
  /** One event may say several things (a Lithic transaction: its authorization and its clearings). */
  | { kind: 'settlement'; eventId: string; updates: SettlementUpdate[] }
  | { kind: 'ignored'; eventId: string; type: string };

export interface WebhookAdapter {
  readonly name: ProcessorName;
  /**
   * Check the signature on the exact bytes received, then parse and normalize. Throws
   * SignatureError (answer 400, change nothing) or PayloadError.
   */
  readWebhook(rawBody: Buffer, headers: Headers, now?: Date): WebhookEvent;
  /** The processor's answer format for a decision on `request`. */
  formatAnswer(request: AuthorizationRequest, answer: AuthorizationAnswer): HttpReply;
}

// ---------------------------------------------------------------------------------------------
// Cards: state and controls at the processor.

/** active: authorizations may be approved; frozen: reversible stop; canceled: permanent. */
export type CardStatus = 'active' | 'frozen' | 'canceled' | 'pending';

export interface Card {
  processor: ProcessorName;
  id: string;
  status: CardStatus;
  /** The agent named in the card's metadata (Stripe `metadata.agent_id`), if any. */
  agentId: string | null;
  last4: string | null;
  currency: string | null;
  metadata: Record<string, string>;
  spendingControls: SpendingControls | null;
}

export type SpendingInterval = 'per_authorization' | 'daily' | 'weekly' | 'monthly' | 'yearly' | 'all_time';

export interface SpendingControls {
  /** Amounts in the card's currency, minor units. */
  limits: { amount: number; interval: SpendingInterval }[];
  allowedCategories: string[] | null;
  blockedCategories: string[] | null;
  allowedCountries: string[] | null;
  blockedCountries: string[] | null;
}

/**
 * A processor call failed. declined: the processor refused for good (e.g. the card is canceled);
 * retryable: try again later (429, 5xx, connection refused); indeterminate: it may or may not
 * have happened (timeout) — read the card before deciding; invalid: our request was wrong.
 */
export class ProcessorError extends Error {
  constructor(
    message: string,
    readonly kind: 'declined' | 'retryable' | 'indeterminate' | 'invalid',
    readonly status?: number,
  ) {
    super(message);
  }
}

export interface CardAdapter {
  readonly name: ProcessorName;
  getCard(cardId: string): Promise<Card>;
  /** Cards naming `agentId` in their metadata, page by page. */
  listCards(options: { agentId?: string; cursor?: string; limit?: number }): Promise<{ cards: Card[]; nextCursor: string | null }>;
  freezeCard(cardId: string): Promise<Card>;
  unfreezeCard(cardId: string): Promise<Card>;
  applySpendingControls(cardId: string, controls: SpendingControls): Promise<Card>;
}

export interface Processor extends WebhookAdapter, CardAdapter {
  readonly name: ProcessorName;
}
