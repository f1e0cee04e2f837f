// Stripe Issuing events → neutral events: the real-time authorization request, the authorization's
// later states, and its captures and refunds. Field meanings: processors.md §1.2, §1.3, §1.6.
import { PayloadError } from '../processor.js';
import type {
  AuthorizationRequest,
  AuthorizationStatus,
  AuthorizationUpdate,
  CardSnapshot,
  CardStatus,
  Merchant,
  TransactionUpdate,
  WebhookEvent,
} from '../processor.js';
import { boolean, idOf, integer, object, optionalString, string, stringMap, timestamp } from './payload.js';
import type { Json } from './payload.js';

export function normalizeStripeEvent(event: Json): WebhookEvent {
  const eventId = string(event, 'id', 'event');
  const type = string(event, 'type', 'event');
  const data = () => object(object(event.data, 'event.data').object, 'event.data.object');
  switch (type) {
    case 'issuing_authorization.request':
      return { kind: 'authorization_request', request: authorizationRequest(event, eventId, data()) };
    case 'issuing_authorization.created':
    case 'issuing_authorization.updated':
      return { kind: 'settlement', eventId, updates: [authorizationUpdate(event, eventId, data())] };
    case 'issuing_transaction.created':
    case 'issuing_transaction.updated':
      return { kind: 'settlement', eventId, updates: [transactionUpdate(eventId, data())] };
    default:
      return { kind: 'ignored', eventId, type };
  }
}

function authorizationRequest(event: Json, eventId: string, auth: Json): AuthorizationRequest {
  const authorizationId = string(auth, 'id', 'authorization');
  const pending = object(auth.pending_request, 'authorization.pending_request');
  const amount = { amount: integer(pending, 'amount', 'pending_request'), currency: currency(pending, 'currency', 'pending_request') };
  const history = auth.request_history;
  if (!Array.isArray(history)) throw new PayloadError('stripe authorization.request_history is not an array');
  return {
    processor: 'stripe',
    eventId,
    authorizationId,
    // Each decided request adds one history entry, so the count names this request; the amount
    // guards against two requests seen at the same count.
    requestKey: `${authorizationId}:${history.length}:${amount.amount}`,
    amount,
    merchantAmount: optionalMoney(pending, 'merchant_amount', 'merchant_currency'),
    amountControllable: pending.is_amount_controllable === true,
    merchant: merchant(auth.merchant_data),
    card: cardSnapshot(auth.card, auth.cardholder),
    wallet: optionalString(auth, 'wallet'),
    method: optionalString(auth, 'authorization_method')?.toLowerCase() ?? null,
    livemode: boolean(event, 'livemode', 'event'),
    apiVersion: optionalString(event, 'api_version'),
    createdAt: timestamp(event, 'created', 'event'),
  };
}

const authorizationStatuses: Record<string, AuthorizationStatus> = { pending: 'pending', closed: 'closed', reversed: 'reversed', expired: 'expired' };

function authorizationUpdate(event: Json, eventId: string, auth: Json): AuthorizationUpdate {
  const approved = boolean(auth, 'approved', 'authorization');
  const status = authorizationStatuses[string(auth, 'status', 'authorization')];
  if (!status) throw new PayloadError('stripe authorization.status is not a known status');
  const card = cardSnapshot(auth.card, auth.cardholder);
  return {
    kind: 'authorization',
    processor: 'stripe',
    eventId,
    authorizationId: string(auth, 'id', 'authorization'),
    cardId: card.id,
    status: approved ? status : 'declined',
    approved,
    amount: { amount: integer(auth, 'amount', 'authorization'), currency: currency(auth, 'currency', 'authorization') },
    occurredAt: timestamp(event, 'created', 'event'),
    merchant: merchant(auth.merchant_data),
    card,
  };
}

function transactionUpdate(eventId: string, txn: Json): TransactionUpdate {
  const type = string(txn, 'type', 'transaction');
  if (type !== 'capture' && type !== 'refund') throw new PayloadError('stripe transaction.type is neither capture nor refund');
  const card = cardSnapshot(txn.card, txn.cardholder);
  return {
    kind: 'transaction',
    processor: 'stripe',
    eventId,
    transactionId: string(txn, 'id', 'transaction'),
    authorizationId: idOf(txn.authorization),
    cardId: card.id,
    type,
    // Stripe signs amounts from the balance's side: a capture is negative, a refund positive.
    amount: { amount: Math.abs(integer(txn, 'amount', 'transaction')), currency: currency(txn, 'currency', 'transaction') },
    occurredAt: timestamp(txn, 'created', 'transaction'),
    merchant: merchant(txn.merchant_data),
    card,
  };
}

function merchant(value: unknown): Merchant {
  const data = object(value, 'merchant_data');
  return {
    name: optionalString(data, 'name'),
    networkId: optionalString(data, 'network_id'),
    category: optionalString(data, 'category'),
    mcc: optionalString(data, 'category_code'),
    country: optionalString(data, 'country')?.toUpperCase() ?? null,
    city: optionalString(data, 'city'),
    url: optionalString(data, 'url'),
  };
}

const cardStatuses: Record<string, CardStatus> = { active: 'active', inactive: 'frozen', canceled: 'canceled' };

/** An authorization embeds the whole card (and its cardholder); a transaction only names them. */
function cardSnapshot(card: unknown, cardholder: unknown): CardSnapshot {
  const id = idOf(card);
  if (!id) throw new PayloadError('stripe card is missing');
  const full = typeof card === 'object' && card !== null ? (card as Json) : null;
  const holder = full?.cardholder ?? cardholder;
  const holderObject = typeof holder === 'object' && holder !== null ? (holder as Json) : null;
  const status = full ? optionalString(full, 'status') : null;
  return {
    id,
    metadata: stringMap(full?.metadata),
    cardholderId: idOf(holder) ?? idOf(cardholder),
    cardholderMetadata: stringMap(holderObject?.metadata),
    status: status ? (cardStatuses[status] ?? null) : null,
  };
}

function currency(o: Json, key: string, path: string): string {
  return string(o, key, path).toLowerCase();
}

function optionalMoney(o: Json, amountKey: string, currencyKey: string): { amount: number; currency: string } | null {
  const amount = o[amountKey];
  const code = optionalString(o, currencyKey);
  return typeof amount === 'number' && Number.isSafeInteger(amount) && code ? { amount, currency: code.toLowerCase() } : null;
}
