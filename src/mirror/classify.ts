// Which Stripe calls move money, which an agent may never make, and which simply pass through.
// Pure: method, path and the parsed form in; a classification out. Unknown money-moving surfaces
// are refused rather than forwarded unchecked (fail closed).
export type MoneyEndpoint =
  | 'payment_intent_create'
  | 'payment_intent_confirm'
  | 'payment_intent_capture'
  | 'charge_create'
  | 'charge_capture'
  | 'refund_create'
  | 'charge_refund'
  | 'transfer_create'
  | 'payout_create'
  | 'topup_create'
  | 'invoice_pay'
  | 'issuing_card_create';

export type Classification =
  | { kind: 'money'; endpoint: MoneyEndpoint; id?: string }
  | { kind: 'privileged'; reason: string }
  /** Cancels a PaymentIntent: forwarded, and frees what it counts if the gateway counted it (holds.ts). */
  | { kind: 'cancel'; id: string }
  | { kind: 'other' };

type Form = Record<string, unknown>;

interface Route {
  method: string;
  pattern: RegExp;
  classify: (form: Form, id: string | undefined) => Classification;
}

const money = (endpoint: MoneyEndpoint) => (_form: Form, id: string | undefined): Classification => ({ kind: 'money', endpoint, ...(id ? { id } : {}) });
const forbidden = (reason: string) => (): Classification => ({ kind: 'privileged', reason });
/**
 * Could Stripe read this as true? Older SDKs send Python's `True`, and a value Stripe might accept
 * must never skip the check: anything but absent or "false" (any case) counts as true. Checking a
 * call Stripe then rejects costs a released reservation; the other mistake would cost money.
 */
const truthy = (value: unknown) => value !== undefined && value !== false && !(typeof value === 'string' && value.toLowerCase() === 'false');

/**
 * An agent may only stop a card or cardholder: any status but the stopping ones (`Active`, `active`,
 * an array…) is refused, so no spelling Stripe might accept can reactivate one.
 */
function loosensStatus(status: unknown, stopping: string[]): boolean {
  return status !== undefined && !(typeof status === 'string' && stopping.includes(status));
}

/** Does the form touch spending controls (any spending_controls[...] parameter, even empty)? */
function touchesSpendingControls(form: Form): boolean {
  return Object.prototype.hasOwnProperty.call(form, 'spending_controls');
}

const ROUTES: Route[] = [
  { method: 'POST', pattern: /^\/v1\/payment_intents$/, classify: (form) => (truthy(form.confirm) ? { kind: 'money', endpoint: 'payment_intent_create' } : { kind: 'other' }) },
  { method: 'POST', pattern: /^\/v1\/payment_intents\/([^/]+)\/confirm$/, classify: money('payment_intent_confirm') },
  { method: 'POST', pattern: /^\/v1\/payment_intents\/([^/]+)\/capture$/, classify: money('payment_intent_capture') },
  { method: 'POST', pattern: /^\/v1\/payment_intents\/([^/]+)\/cancel$/, classify: (_form, id) => ({ kind: 'cancel', id: id ?? '' }) },
  { method: 'POST', pattern: /^\/v1\/payment_intents\/([^/]+)\/increment_authorization$/, classify: forbidden('incrementing an authorization is not supported by the gateway yet') },
  { method: 'POST', pattern: /^\/v1\/charges$/, classify: money('charge_create') },
  { method: 'POST', pattern: /^\/v1\/charges\/([^/]+)\/capture$/, classify: money('charge_capture') },
  { method: 'POST', pattern: /^\/v1\/charges\/([^/]+)\/refunds?$/, classify: money('charge_refund') },
  { method: 'POST', pattern: /^\/v1\/refunds$/, classify: money('refund_create') },
  { method: 'POST', pattern: /^\/v1\/transfers$/, classify: money('transfer_create') },
  { method: 'POST', pattern: /^\/v1\/payouts$/, classify: money('payout_create') },
  { method: 'POST', pattern: /^\/v1\/topups$/, classify: money('topup_create') },
  { method: 'POST', pattern: /^\/v1\/invoices\/([^/]+)\/pay$/, classify: money('invoice_pay') },
  { method: 'POST', pattern: /^\/v1\/issuing\/cards$/, classify: money('issuing_card_create') },
  {
    method: 'POST',
    pattern: /^\/v1\/issuing\/cards\/([^/]+)$/,
    classify: (form) => {
      if (loosensStatus(form.status, ['inactive', 'canceled'])) return { kind: 'privileged', reason: 'reactivating a card is for operators only' };
      if (touchesSpendingControls(form)) return { kind: 'privileged', reason: "changing a card's spending controls is for operators only" };
      return { kind: 'other' };
    },
  },
  {
    method: 'POST',
    pattern: /^\/v1\/issuing\/cardholders\/([^/]+)$/,
    classify: (form) => {
      if (loosensStatus(form.status, ['inactive', 'blocked'])) return { kind: 'privileged', reason: 'reactivating a cardholder is for operators only' };
      if (touchesSpendingControls(form)) return { kind: 'privileged', reason: "changing a cardholder's spending controls is for operators only" };
      return { kind: 'other' };
    },
  },
  { method: 'POST', pattern: /^\/v1\/issuing\/cardholders$/, classify: (form) => (touchesSpendingControls(form) ? { kind: 'privileged', reason: 'cardholder spending controls are for operators only' } : { kind: 'other' }) },
  { method: 'POST', pattern: /^\/v1\/issuing\/authorizations\/([^/]+)\/(approve|decline)$/, classify: forbidden('approving or declining card authorizations is for the gateway only') },
  { method: 'POST', pattern: /^\/v1\/test_helpers\/issuing\//, classify: () => ({ kind: 'other' }) },
  { method: '*', pattern: /^\/v1\/webhook_endpoints(\/|$)/, classify: forbidden('webhook endpoints are managed by operators only') },
  // Money moves here too, but the gateway does not check these yet: refuse, never forward unchecked.
  { method: 'POST', pattern: /^\/v1\/subscriptions(\/|$)/, classify: forbidden('subscriptions charge customers and are not supported by the gateway yet') },
  { method: 'DELETE', pattern: /^\/v1\/subscriptions\//, classify: forbidden('cancelling subscriptions can invoice at once and is not supported by the gateway yet') },
  { method: 'POST', pattern: /^\/v1\/subscription_schedules(\/|$)/, classify: forbidden('subscription schedules charge customers and are not supported by the gateway yet') },
  { method: 'POST', pattern: /^\/v1\/subscription_items(\/|$)/, classify: forbidden('subscription items change what customers are charged and are not supported by the gateway yet') },
  { method: 'POST', pattern: /^\/v1\/invoices$/, classify: forbidden('creating invoices can charge customers automatically and is not supported by the gateway yet') },
  { method: 'POST', pattern: /^\/v1\/invoices\/([^/]+)\/(finalize|send|mark_uncollectible|void|add_lines|remove_lines|update_lines)$/, classify: forbidden('invoice lifecycle changes are not supported by the gateway yet') },
  { method: 'POST', pattern: /^\/v1\/invoiceitems(\/|$)/, classify: forbidden('invoice items change what an invoice charges and are not supported by the gateway yet') },
  { method: 'POST', pattern: /^\/v1\/quotes\/([^/]+)\/accept$/, classify: forbidden('accepting quotes creates subscriptions or invoices and is not supported by the gateway yet') },
  { method: 'POST', pattern: /^\/v1\/payment_intents\/([^/]+)\/apply_customer_balance$/, classify: forbidden('applying customer balance is not supported by the gateway yet') },
  { method: 'POST', pattern: /^\/v1\/terminal\//, classify: forbidden('Terminal payments are not supported by the gateway yet') },
  { method: 'POST', pattern: /^\/v1\/application_fees\/([^/]+)\/refund$/, classify: forbidden('application fee refunds are not supported by the gateway yet') },
  {
    method: 'POST',
    pattern: /^\/v1\/customers(\/([^/]+))?$/,
    classify: (form) => (Object.prototype.hasOwnProperty.call(form, 'balance') ? { kind: 'privileged', reason: "setting a customer's balance moves money and is not supported by the gateway yet" } : { kind: 'other' }),
  },
  { method: 'POST', pattern: /^\/v1\/credit_notes$/, classify: forbidden('credit notes are not supported by the gateway yet') },
  { method: 'POST', pattern: /^\/v1\/customers\/([^/]+)\/balance_transactions$/, classify: forbidden('customer balance transactions are not supported by the gateway yet') },
  { method: 'POST', pattern: /^\/v1\/application_fees\/([^/]+)\/refunds$/, classify: forbidden('application fee refunds are not supported by the gateway yet') },
  { method: 'POST', pattern: /^\/v1\/treasury\/(outbound_payments|outbound_transfers)$/, classify: forbidden('Treasury outbound money movement is not supported by the gateway yet') },
  { method: 'POST', pattern: /^\/v1\/payment_intents\/([^/]+)\/verify_microdeposits$/, classify: () => ({ kind: 'other' }) },
];

export function classify(method: string, path: string, form: Form): Classification {
  if (path.startsWith('/v2/') || path === '/v2') return { kind: 'privileged', reason: 'Stripe API v2 is not supported by the gateway yet' };
  for (const route of ROUTES) {
    if (route.method !== '*' && route.method !== method) continue;
    if (route.method === '*' && method === 'GET') continue;
    const match = route.pattern.exec(path);
    if (match) return route.classify(form, match[1] ? decodeURIComponent(match[1]) : undefined);
  }
  return { kind: 'other' };
}
