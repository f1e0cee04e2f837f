// What a money-moving Stripe call would do, as a neutral Action: amount and currency found where
// Stripe finds them — the form, or the object upstream when the call names none (confirm, capture,
// refund of "the rest", invoice pay).
import { AppError } from '../errors.js';
import type { Action } from '../policy/model.js';
import type { MoneyEndpoint } from './classify.js';

/** The few upstream reads the mirror needs, in Stripe's own shapes (minor units). */
export interface StripeLookup {
  paymentIntent(id: string): Promise<{ id: string; amount: number; amount_capturable?: number; currency: string; customer?: string | null | { id: string }; latest_charge?: string | null | { id: string }; capture_method?: string }>;
  charge(id: string): Promise<{ id: string; amount: number; amount_refunded: number; currency: string; created: number; customer?: string | null | { id: string } }>;
  invoice(id: string): Promise<{ id: string; amount_remaining: number; currency: string; customer?: string | null | { id: string } }>;
}

type Form = Record<string, unknown>;

/** A Stripe-style "missing/invalid param" answer, before anything is decided or forwarded. */
function badParam(param: string, message: string): AppError {
  return new AppError('invalid_request', message, { param });
}

function integer(form: Form, param: string, required: boolean): number | undefined {
  const value = form[param];
  if (value === undefined || value === '') {
    if (required) throw badParam(param, `Missing required param: ${param}.`);
    return undefined;
  }
  if (typeof value !== 'string' || !/^\d{1,15}$/.test(value)) throw badParam(param, `Invalid integer: ${String(value)}`);
  return Number(value);
}

function text(form: Form, param: string): string | undefined {
  const value = form[param];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function currencyOf(form: Form): string {
  const value = text(form, 'currency');
  if (!value) throw badParam('currency', 'Missing required param: currency.');
  if (!/^[a-zA-Z]{3}$/.test(value)) throw badParam('currency', `Invalid currency: ${value}`);
  return value.toLowerCase();
}

const idOf = (v: string | null | undefined | { id: string }) => (typeof v === 'string' ? v : (v?.id ?? undefined));

export interface MoneyAction {
  action: Action;
  /** The Stripe object this call acts on, when known before forwarding (for captures). */
  objectId?: string;
}

export async function moneyAction(endpoint: MoneyEndpoint, form: Form, id: string | undefined, lookup: StripeLookup, now: Date): Promise<MoneyAction> {
  switch (endpoint) {
    case 'payment_intent_create':
      return { action: { actionType: 'payment', amount: integer(form, 'amount', true) ?? 0, currency: currencyOf(form), counterparty: text(form, 'customer') } };
    case 'payment_intent_confirm': {
      const intent = await lookup.paymentIntent(id ?? '');
      return { objectId: intent.id, action: { actionType: 'payment', amount: intent.amount, currency: intent.currency, counterparty: idOf(intent.customer) } };
    }
    case 'payment_intent_capture': {
      const intent = await lookup.paymentIntent(id ?? '');
      const amount = integer(form, 'amount_to_capture', false) ?? intent.amount_capturable ?? intent.amount;
      return { objectId: intent.id, action: { actionType: 'payment', amount, currency: intent.currency, counterparty: idOf(intent.customer) } };
    }
    case 'charge_create':
      return { action: { actionType: 'payment', amount: integer(form, 'amount', true) ?? 0, currency: currencyOf(form), counterparty: text(form, 'customer') } };
    case 'charge_capture': {
      const charge = await lookup.charge(id ?? '');
      const amount = integer(form, 'amount', false) ?? charge.amount;
      return { objectId: charge.id, action: { actionType: 'payment', amount, currency: charge.currency, counterparty: idOf(charge.customer) } };
    }
    case 'refund_create':
    case 'charge_refund':
      return refundAction(endpoint === 'charge_refund' ? { charge: id } : { charge: text(form, 'charge'), paymentIntent: text(form, 'payment_intent') }, form, lookup, now);
    case 'transfer_create':
      return { action: { actionType: 'transfer', amount: integer(form, 'amount', true) ?? 0, currency: currencyOf(form), counterparty: text(form, 'destination') } };
    case 'payout_create':
      return { action: { actionType: 'payout', amount: integer(form, 'amount', true) ?? 0, currency: currencyOf(form), counterparty: text(form, 'destination') } };
    case 'topup_create':
      return { action: { actionType: 'topup', amount: integer(form, 'amount', true) ?? 0, currency: currencyOf(form) } };
    case 'invoice_pay': {
      const invoice = await lookup.invoice(id ?? '');
      return { objectId: invoice.id, action: { actionType: 'invoice_payment', amount: invoice.amount_remaining, currency: invoice.currency, counterparty: idOf(invoice.customer) } };
    }
    case 'issuing_card_create':
      return { action: { actionType: 'card_creation', amount: 0, currency: currencyOf(form) } };
  }
}

/** A refund's amount (omitted = what remains refundable) and its age from the charge's real `created`. */
async function refundAction(target: { charge?: string; paymentIntent?: string }, form: Form, lookup: StripeLookup, now: Date): Promise<MoneyAction> {
  let chargeId = target.charge;
  if (!chargeId && target.paymentIntent) {
    const intent = await lookup.paymentIntent(target.paymentIntent);
    chargeId = idOf(intent.latest_charge);
    if (!chargeId) throw badParam('payment_intent', `PaymentIntent ${intent.id} has no charge to refund.`);
  }
  if (!chargeId) throw badParam('charge', 'Missing required param: charge or payment_intent.');
  const charge = await lookup.charge(chargeId);
  const remaining = Math.max(0, charge.amount - charge.amount_refunded);
  const amount = integer(form, 'amount', false) ?? remaining;
  return {
    objectId: charge.id,
    action: {
      actionType: 'refund',
      amount,
      currency: charge.currency,
      counterparty: idOf(charge.customer),
      refundAgeDays: Math.max(0, Math.floor((now.getTime() / 1000 - charge.created) / 86_400)),
    },
  };
}
