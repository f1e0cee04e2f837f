// Lithic messages → neutral events: an Auth Stream Access request (a CardAuthorization, bare or as
// the `card_authorization.approval_request` event) and `card_transaction.updated` (a Transaction:
// its authorization's state plus one capture per CLEARING and one refund per RETURN event).
// Field meanings: processors.md §3.2 and §3.9, the lithic SDK's CardAuthorization and Transaction.
import { PayloadError } from '../processor.js';
import type {
  AuthorizationRequest,
  AuthorizationStatus,
  AuthorizationUpdate,
  CardSnapshot,
  CardStatus,
  Merchant,
  Money,
  SettlementUpdate,
  TransactionUpdate,
  WebhookEvent,
} from '../processor.js';
import { countryAlpha2 } from './countries.js';
import { integer, isoTime, object, optionalString, string } from './payload.js';
import type { Json } from './payload.js';

export interface LithicContext {
  /** The `webhook-id` the message came with: the same on a redelivery, new for every message. */
  messageId: string;
  livemode: boolean;
}

export function normalizeLithicEvent(body: Json, context: LithicContext): WebhookEvent {
  const type = optionalString(body, 'event_type');
  // ASA endpoints receive the bare CardAuthorization; a Transaction names its card by token.
  const isTransaction = type === null && (Array.isArray(body.events) || typeof body.card_token === 'string');
  if (type === 'card_authorization.approval_request' || (type === null && !isTransaction)) {
    return { kind: 'authorization_request', request: authorizationRequest(body, context) };
  }
  if (type === 'card_transaction.updated' || isTransaction) {
    return { kind: 'settlement', eventId: context.messageId, updates: transactionUpdates(body, context.messageId) };
  }
  return { kind: 'ignored', eventId: context.messageId, type: type ?? 'unknown' };
}

function authorizationRequest(body: Json, context: LithicContext): AuthorizationRequest {
  const token = string(body, 'token', 'authorization');
  const amounts = body.amounts === undefined || body.amounts === null ? null : object(body.amounts, 'authorization.amounts');
  const amount = amounts ? money(amounts.cardholder, 'amounts.cardholder') : flatMoney(body, 'amount', 'cardholder_currency');
  const merchantAmount = amounts ? optionalMoney(amounts.merchant) : optionalFlatMoney(body, 'merchant_amount', 'merchant_currency');
  const card = object(body.card, 'authorization.card');
  const pos = optionalObject(body.pos);
  const terminal = optionalObject(pos?.terminal);
  const entryMode = optionalObject(pos?.entry_mode);
  const tokenInfo = optionalObject(body.token_info);
  const eventToken = optionalString(body, 'event_token');
  return {
    processor: 'lithic',
    eventId: context.messageId,
    authorizationId: token,
    // An incremental authorization reuses the token; its event token (when the program has them)
    // and its amount tell it apart from a redelivery.
    requestKey: `${token}:${eventToken ?? ''}:${amount.amount}`,
    amount,
    merchantAmount,
    amountControllable: terminal?.partial_approval_capable === true,
    merchant: merchant(body.merchant),
    card: {
      id: string(card, 'token', 'card'),
      // A memo is free text for people, not tags: agents are found by registration instead.
      metadata: {},
      cardholderId: null,
      cardholderMetadata: {},
      status: cardStatus(optionalString(card, 'state')),
    },
    wallet: optionalString(tokenInfo ?? {}, 'wallet_type')?.toLowerCase() ?? null,
    method: entryMethods[optionalString(entryMode ?? {}, 'pan') ?? ''] ?? null,
    livemode: context.livemode,
    apiVersion: null,
    createdAt: isoTime(body, 'created', 'authorization'),
  };
}

const entryMethods: Record<string, string> = {
  ICC: 'chip',
  CONTACTLESS: 'contactless',
  KEY_ENTERED: 'keyed_in',
  MANUAL: 'keyed_in',
  ECOMMERCE: 'online',
  CREDENTIAL_ON_FILE: 'online',
  MAGNETIC_STRIPE: 'swipe',
};

const cardStates: Record<string, CardStatus> = { OPEN: 'active', PAUSED: 'frozen', CLOSED: 'canceled' };

function cardStatus(state: string | null): CardStatus | null {
  if (state === null) return null;
  return cardStates[state] ?? 'pending';
}

const transactionStatuses: Record<string, AuthorizationStatus> = {
  PENDING: 'pending',
  SETTLED: 'closed',
  VOIDED: 'reversed',
  EXPIRED: 'expired',
  DECLINED: 'declined',
};

function transactionUpdates(body: Json, eventId: string): SettlementUpdate[] {
  const authorizationId = string(body, 'token', 'transaction');
  const approved = string(body, 'result', 'transaction') === 'APPROVED';
  const mapped = transactionStatuses[string(body, 'status', 'transaction')];
  if (!mapped) throw new PayloadError('lithic transaction.status is not a known status');
  const status = approved ? mapped : 'declined';
  const amounts = object(body.amounts, 'transaction.amounts');
  // While pending, what counts is what is held; afterwards, what the cardholder pays.
  const amount = status === 'pending' ? money(amounts.hold, 'amounts.hold') : money(amounts.cardholder, 'amounts.cardholder');
  const card: CardSnapshot = { id: string(body, 'card_token', 'transaction'), metadata: {}, cardholderId: null, cardholderMetadata: {}, status: null };
  const shop = merchant(body.merchant);
  const authorization: AuthorizationUpdate = {
    kind: 'authorization',
    processor: 'lithic',
    eventId,
    authorizationId,
    cardId: card.id,
    status,
    approved: approved && status !== 'declined',
    amount,
    occurredAt: isoTime(body, body.updated ? 'updated' : 'created', 'transaction'),
    merchant: shop,
    card,
  };
  const events = body.events === undefined ? [] : body.events;
  if (!Array.isArray(events)) throw new PayloadError('lithic transaction.events is not an array');
  const moves: TransactionUpdate[] = [];
  for (const [i, value] of events.entries()) {
    const event = object(value, `transaction.events[${i}]`);
    const kind = optionalString(event, 'type');
    if (kind !== 'CLEARING' && kind !== 'RETURN') continue;
    const eventAmounts = optionalObject(event.amounts);
    const moved = eventAmounts ? money(eventAmounts.cardholder, `events[${i}].amounts.cardholder`) : { amount: integer(event, 'amount', `events[${i}]`), currency: amount.currency };
    moves.push({
      kind: 'transaction',
      processor: 'lithic',
      eventId,
      transactionId: string(event, 'token', `transaction.events[${i}]`),
      authorizationId,
      cardId: card.id,
      type: kind === 'CLEARING' ? 'capture' : 'refund',
      amount: { amount: Math.abs(moved.amount), currency: moved.currency },
      occurredAt: isoTime(event, 'created', `transaction.events[${i}]`),
      merchant: shop,
      card,
    });
  }
  return [authorization, ...moves];
}

function merchant(value: unknown): Merchant {
  const m = object(value, 'merchant');
  return {
    name: optionalString(m, 'descriptor'),
    networkId: optionalString(m, 'acceptor_id'),
    category: null,
    mcc: optionalString(m, 'mcc'),
    country: countryAlpha2(optionalString(m, 'country')),
    city: optionalString(m, 'city'),
    url: null,
  };
}

function money(value: unknown, path: string): Money {
  const m = object(value, path);
  return { amount: integer(m, 'amount', path), currency: string(m, 'currency', path).toLowerCase() };
}

function optionalMoney(value: unknown): Money | null {
  const m = optionalObject(value);
  return m && Number.isSafeInteger(m.amount) && optionalString(m, 'currency') ? money(m, 'amounts.merchant') : null;
}

function flatMoney(body: Json, amountKey: string, currencyKey: string): Money {
  return { amount: integer(body, amountKey, 'authorization'), currency: string(body, currencyKey, 'authorization').toLowerCase() };
}

function optionalFlatMoney(body: Json, amountKey: string, currencyKey: string): Money | null {
  return Number.isSafeInteger(body[amountKey]) && optionalString(body, currencyKey) ? flatMoney(body, amountKey, currencyKey) : null;
}

function optionalObject(value: unknown): Json | null {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Json) : null;
}
