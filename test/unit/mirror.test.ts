// The mirror's pure parts: which calls move money, which are refused, how amounts are found, and
// which spending controls a new card gets.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { moneyAction } from '../../src/mirror/actions.js';
import type { StripeLookup } from '../../src/mirror/actions.js';
import { cardControlParams, cardSpendingControls } from '../../src/mirror/card-controls.js';
import { classify } from '../../src/mirror/classify.js';
import { UnreadableForm, ambiguousParameter, parseForm } from '../../src/mirror/form.js';
import { upstreamIdempotencyKey } from '../../src/mirror/forward.js';
import { isCanonicalPath, isMirrorPath } from '../../src/mirror/routes.js';
import { compilePolicy } from '../../src/policy/compile.js';

describe('classify()', () => {
  const cases: [string, string, string, string][] = [
    ['POST', '/v1/payment_intents', 'amount=500&currency=usd&confirm=true', 'money:payment_intent_create'],
    ['POST', '/v1/payment_intents', 'amount=500&currency=usd', 'other'],
    // stripe-python 5 sends Python's True; anything Stripe might read as true is checked.
    ['POST', '/v1/payment_intents', 'amount=500&currency=usd&confirm=True', 'money:payment_intent_create'],
    ['POST', '/v1/payment_intents', 'amount=500&currency=usd&confirm=TRUE', 'money:payment_intent_create'],
    ['POST', '/v1/payment_intents', 'amount=500&currency=usd&confirm=1', 'money:payment_intent_create'],
    ['POST', '/v1/payment_intents', 'amount=500&currency=usd&confirm=', 'money:payment_intent_create'],
    ['POST', '/v1/payment_intents', 'amount=500&currency=usd&confirm=False', 'other'],
    ['POST', '/v1/payment_intents', 'amount=500&currency=usd&confirm=false', 'other'],
    ['POST', '/v1/payment_intents/pi_1/confirm', '', 'money:payment_intent_confirm'],
    ['POST', '/v1/payment_intents/pi_1/capture', '', 'money:payment_intent_capture'],
    ['POST', '/v1/payment_intents/pi_1/cancel', 'cancellation_reason=abandoned', 'cancel'],
    ['GET', '/v1/payment_intents/pi_1/cancel', '', 'other'],
    ['POST', '/v1/payment_intents/pi_1/increment_authorization', 'amount=9000', 'privileged'],
    ['POST', '/v1/charges', 'amount=1&currency=usd', 'money:charge_create'],
    ['POST', '/v1/charges/ch_1/capture', '', 'money:charge_capture'],
    ['POST', '/v1/charges/ch_1/refunds', '', 'money:charge_refund'],
    ['POST', '/v1/charges/ch_1/refund', '', 'money:charge_refund'],
    ['POST', '/v1/refunds', 'charge=ch_1', 'money:refund_create'],
    ['POST', '/v1/transfers', '', 'money:transfer_create'],
    ['POST', '/v1/payouts', '', 'money:payout_create'],
    ['POST', '/v1/topups', '', 'money:topup_create'],
    ['POST', '/v1/invoices/in_1/pay', '', 'money:invoice_pay'],
    ['POST', '/v1/issuing/cards', 'currency=usd&type=virtual', 'money:issuing_card_create'],
    ['POST', '/v1/issuing/cards/ic_1', 'status=active', 'privileged'],
    ['POST', '/v1/issuing/cards/ic_1', 'status=Active', 'privileged'],
    ['POST', '/v1/issuing/cards/ic_1', 'status[]=active', 'privileged'],
    ['POST', '/v1/issuing/cards/ic_1', 'status=inactive', 'other'],
    ['POST', '/v1/issuing/cards/ic_1', 'status=canceled&cancellation_reason=lost', 'other'],
    ['POST', '/v1/issuing/cardholders/ich_1', 'status=ACTIVE', 'privileged'],
    ['POST', '/v1/issuing/cardholders/ich_1', 'status=inactive', 'other'],
    ['POST', '/v1/issuing/cards/ic_1', 'status=inactive', 'other'],
    ['POST', '/v1/issuing/cards/ic_1', 'spending_controls[spending_limits][0][amount]=999999', 'privileged'],
    ['POST', '/v1/issuing/cards/ic_1', 'spending_controls=', 'privileged'],
    ['POST', '/v1/issuing/cards/ic_1', 'metadata[note]=x', 'other'],
    ['POST', '/v1/issuing/cardholders/ich_1', 'status=active', 'privileged'],
    ['POST', '/v1/issuing/authorizations/iauth_1/approve', '', 'privileged'],
    ['POST', '/v1/issuing/authorizations/iauth_1/decline', '', 'privileged'],
    ['POST', '/v1/webhook_endpoints', 'url=https://evil.example', 'privileged'],
    ['DELETE', '/v1/webhook_endpoints/we_1', '', 'privileged'],
    ['GET', '/v1/webhook_endpoints', '', 'other'],
    ['POST', '/v1/credit_notes', '', 'privileged'],
    ['POST', '/v1/treasury/outbound_payments', '', 'privileged'],
    ['POST', '/v2/core/accounts', '', 'privileged'],
    ['GET', '/v1/charges', '', 'other'],
    ['POST', '/v1/customers', 'email=a@b.c', 'other'],
    ['POST', '/v1/customers/cus_1', 'balance=-9999999', 'privileged'],
    ['POST', '/v1/customers', 'balance=-1', 'privileged'],
    ['POST', '/v1/subscriptions', 'customer=cus_1&items[0][price]=price_1', 'privileged'],
    ['POST', '/v1/subscriptions/sub_1', 'proration_behavior=always_invoice', 'privileged'],
    ['DELETE', '/v1/subscriptions/sub_1', '', 'privileged'],
    ['POST', '/v1/subscription_schedules', '', 'privileged'],
    ['POST', '/v1/invoices', 'customer=cus_1&auto_advance=true', 'privileged'],
    ['POST', '/v1/invoices/in_1/finalize', '', 'privileged'],
    ['POST', '/v1/invoiceitems', 'customer=cus_1&amount=100&currency=usd', 'privileged'],
    ['POST', '/v1/quotes/qt_1/accept', '', 'privileged'],
    ['POST', '/v1/payment_intents/pi_1/apply_customer_balance', '', 'privileged'],
    ['POST', '/v1/terminal/readers/tmr_1/process_payment_intent', '', 'privileged'],
    ['POST', '/v1/application_fees/fee_1/refund', 'amount=5000', 'privileged'],
    ['GET', '/v1/subscriptions', '', 'other'],
  ];
  for (const [method, path, body, expected] of cases) {
    test(`${method} ${path} ${body || '(no body)'} → ${expected}`, () => {
      const c = classify(method, path, parseForm(body));
      assert.equal(c.kind === 'money' ? `money:${c.endpoint}` : c.kind, expected);
    });
  }
});

describe('parseForm()', () => {
  test('indexed and empty-bracket arrays, encoded brackets and deep metadata all parse', () => {
    const form = parseForm('expand[0]=a&expand[1]=b&items[]=x&items[]=y&metadata%5Border%5D=6735&a[b][c][d][e][f][g]=deep');
    assert.deepEqual(form.expand, ['a', 'b']);
    assert.deepEqual(form.items, ['x', 'y']);
    assert.equal((form.metadata as Record<string, string>).order, '6735');
    assert.equal(JSON.stringify(form.a), '{"b":{"c":{"d":{"e":{"f":{"g":"deep"}}}}}}');
  });
  test('a body past the parameter limit (even of empty pieces) or the depth limit is refused, never truncated', () => {
    assert.throws(() => parseForm(`amount=1${'&'.repeat(100_001)}&confirm=true`), UnreadableForm);
    assert.throws(() => parseForm(`a${'[x]'.repeat(25)}=1`), UnreadableForm);
  });
  test('a raw ";" is treated as ambiguous, an encoded one is not', () => {
    assert.equal(ambiguousParameter('', 'description=a;confirm=true'), ';');
    assert.equal(ambiguousParameter('', 'description=a%3Bconfirm%3Dtrue'), undefined);
  });
  test('thousands of parameters in any order parse, and __proto__ does not pollute', () => {
    const body = Array.from({ length: 3000 }, (_, i) => `metadata[k${2999 - i}]=${i}`).join('&') + '&__proto__[polluted]=1&amount=5';
    const form = parseForm(body);
    assert.equal(Object.keys(form.metadata as object).length, 3000);
    assert.equal(form.amount, '5');
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });
});

const lookup: StripeLookup = {
  paymentIntent: async (id) => ({ id, amount: 4200, amount_capturable: 4000, currency: 'usd', customer: 'cus_1', latest_charge: 'ch_9', capture_method: 'automatic' }),
  charge: async (id) => ({ id, amount: 5000, amount_refunded: 1200, currency: 'eur', created: Date.parse('2026-10-01T00:00:00Z') / 1000, customer: { id: 'cus_2' } }),
  invoice: async (id) => ({ id, amount_remaining: 999, currency: 'usd', customer: 'cus_3' }),
};
const now = new Date('2026-11-01T00:00:00Z');

describe('moneyAction()', () => {
  test('a confirm reads the intent amount from Stripe', async () => {
    const { action } = await moneyAction('payment_intent_confirm', {}, 'pi_1', lookup, now);
    assert.deepEqual(action, { actionType: 'payment', amount: 4200, currency: 'usd', counterparty: 'cus_1' });
  });
  test('a capture without amount_to_capture uses the capturable amount', async () => {
    assert.equal((await moneyAction('payment_intent_capture', {}, 'pi_1', lookup, now)).action.amount, 4000);
    assert.equal((await moneyAction('payment_intent_capture', { amount_to_capture: '100' }, 'pi_1', lookup, now)).action.amount, 100);
  });
  test('a refund without amount refunds what remains, and its age comes from the charge', async () => {
    const { action } = await moneyAction('refund_create', { charge: 'ch_1' }, undefined, lookup, now);
    assert.deepEqual(action, { actionType: 'refund', amount: 3800, currency: 'eur', counterparty: 'cus_2', refundAgeDays: 31 });
  });
  test('a refund of a payment intent refunds its latest charge', async () => {
    const { action, objectId } = await moneyAction('refund_create', { payment_intent: 'pi_1', amount: '10' }, undefined, lookup, now);
    assert.equal(objectId, 'ch_9');
    assert.equal(action.amount, 10);
  });
  test('invoice pay uses the amount remaining', async () => {
    assert.equal((await moneyAction('invoice_pay', {}, 'in_1', lookup, now)).action.amount, 999);
  });
  test('missing or malformed amounts are Stripe-style parameter errors', async () => {
    await assert.rejects(moneyAction('transfer_create', { currency: 'usd' }, undefined, lookup, now), /Missing required param: amount/);
    await assert.rejects(moneyAction('payout_create', { amount: '1.5', currency: 'usd' }, undefined, lookup, now), /Invalid integer/);
    await assert.rejects(moneyAction('charge_create', { amount: '100' }, undefined, lookup, now), /currency/);
    await assert.rejects(moneyAction('refund_create', {}, undefined, lookup, now), /charge or payment_intent/);
  });
});

describe('cardControlParams()', () => {
  test('limits, categories and countries of the policy become Stripe spending controls for the card currency', () => {
    const policy = compilePolicy({ policy_id: 'p', rules: [
      { rule_id: 'per', rule_type: 'max_amount', parameters: { limit: 10, currency: 'USD' } },
      { rule_id: 'day', rule_type: 'velocity_limit', parameters: { limit: 25, currency: 'USD', window: 'daily' } },
      { rule_id: 'eur', rule_type: 'max_amount', parameters: { limit: 99, currency: 'EUR' } },
      { rule_id: 'cats', rule_type: 'category_blocklist', parameters: { categories: ['gambling'] } },
      { rule_id: 'geo', rule_type: 'country_restriction', parameters: { allowed_countries: ['US', 'CA'] } },
    ] }, 1);
    const form = parseForm(cardControlParams(policy, 'usd', 'agent-1'));
    const controls = form.spending_controls as Record<string, unknown>;
    assert.equal((form.metadata as Record<string, string>).agent_id, 'agent-1');
    assert.deepEqual(JSON.parse(JSON.stringify(controls.spending_limits)), [{ amount: '1000', interval: 'per_authorization' }, { amount: '2500', interval: 'daily' }]);
    assert.ok((controls.blocked_categories as string[]).includes('betting_casino_gambling'));
    assert.deepEqual(controls.allowed_merchant_countries, ['CA', 'US']);
  });
});

describe('cardSpendingControls()', () => {
  test('every card rule becomes the control Stripe enforces; rules Stripe cannot express on a card are left to the gateway', () => {
    const policy = compilePolicy({ policy_id: 'cards', rules: [
      { rule_id: 'per', rule_type: 'max_amount', parameters: { limit: 50, currency: 'USD' } },
      { rule_id: 'per-eur', rule_type: 'max_amount', parameters: { limit: 40, currency: 'EUR' } },
      { rule_id: 'day', rule_type: 'velocity_limit', parameters: { limit: 200, currency: 'USD', window: 'daily' } },
      { rule_id: 'week', rule_type: 'velocity_limit', parameters: { limit: 600, currency: 'USD', window: 'weekly' } },
      { rule_id: 'month', rule_type: 'velocity_limit', parameters: { limit: 1500.25, currency: 'USD', window: 'monthly' } },
      { rule_id: 'hour', rule_type: 'velocity_limit', parameters: { limit: 20, currency: 'USD', window: 'hourly' } },
      { rule_id: 'refunds', rule_type: 'max_amount', parameters: { limit: 5, currency: 'USD', action_types: ['refund'] } },
      { rule_id: 'saas-travel', rule_type: 'category_allowlist', parameters: { categories: ['software_saas', 'travel'] } },
      { rule_id: 'saas', rule_type: 'category_allowlist', parameters: { categories: ['software_saas'] } },
      { rule_id: 'where', rule_type: 'country_restriction', parameters: { allowed_countries: ['us', 'CA', 'DE'] } },
      { rule_id: 'not-de', rule_type: 'country_restriction', parameters: { blocked_countries: ['DE'] } },
    ] }, 1);
    const controls = cardSpendingControls(policy, 'usd');
    assert.deepEqual(controls.limits, [
      { amount: 5000, interval: 'per_authorization' },
      { amount: 20000, interval: 'daily' },
      { amount: 60000, interval: 'weekly' },
      { amount: 150025, interval: 'monthly' },
    ], 'USD limits only; no hourly interval at Stripe; a refund-only rule is not a card limit');
    const saas = compilePolicy({ policy_id: 'saas', rules: [{ rule_id: 'saas', rule_type: 'category_allowlist', parameters: { categories: ['software_saas'] } }] }, 1);
    assert.deepEqual(controls.allowedCategories, cardSpendingControls(saas, 'usd').allowedCategories, 'two allowlists: only what both allow');
    assert.ok((controls.allowedCategories ?? []).length > 0);
    assert.equal(controls.blockedCategories, null, 'Stripe takes allowed or blocked categories, not both');
    assert.deepEqual([controls.allowedCountries, controls.blockedCountries], [['CA', 'US'], null], 'allowed countries minus the blocked ones');

    const blockOnly = compilePolicy({ policy_id: 'b', rules: [
      { rule_id: 'no-gambling', rule_type: 'category_blocklist', parameters: { categories: ['gambling'] } },
      { rule_id: 'not-there', rule_type: 'country_restriction', parameters: { blocked_countries: ['KP'] } },
    ] }, 1);
    const blocked = cardSpendingControls(blockOnly, 'usd');
    assert.deepEqual([blocked.limits, blocked.allowedCategories, blocked.allowedCountries, blocked.blockedCountries], [[], null, null, ['KP']]);
    assert.ok(blocked.blockedCategories?.includes('betting_casino_gambling'));
  });
});

test('upstream idempotency keys are per agent and bounded', () => {
  assert.equal(upstreamIdempotencyKey('a', 'k'), upstreamIdempotencyKey('a', 'k'));
  assert.notEqual(upstreamIdempotencyKey('a', 'k'), upstreamIdempotencyKey('b', 'k'));
  assert.ok(upstreamIdempotencyKey('a', 'x'.repeat(255)).length <= 255);
});

describe('paths', () => {
  const canonical: [string, boolean][] = [
    ['/v1/refunds', true],
    ['/v1/payment_intents/pi_123/confirm', true],
    ['/v1//refunds', false],
    ['/v1/refunds/', false],
    ['/v1/re%66unds', false],
    ['/v1/./refunds', false],
    ['/v1/payment_intents/../refunds', false],
  ];
  for (const [path, expected] of canonical) {
    test(`isCanonicalPath(${path}) is ${expected}`, () => assert.equal(isCanonicalPath(path), expected));
  }
  test('the check API is not a Stripe path; everything else under /v1 and /v2 is', () => {
    assert.equal(isMirrorPath('/v1/checks'), false);
    assert.equal(isMirrorPath('/v1/checks?x=1'), false);
    assert.equal(isMirrorPath('/v1/checksums'), true);
    assert.equal(isMirrorPath('/v1/charges'), true);
    assert.equal(isMirrorPath('/v2/core/events'), true);
    assert.equal(isMirrorPath('/healthz'), false);
  });
});
