// The Stripe mirror end to end: the official stripe SDK as the agent, a real gateway in front of the
// recording fake Stripe. What reaches "Stripe" (bytes, headers, keys), what the agent sees back,
// which calls are checked, refused or forwarded, and what the ledger holds afterwards.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import Stripe from 'stripe';
import { freePort } from '../../src/db/embedded.js';
import { startFakeStripe } from '../helpers/fake-stripe.js';
import type { FakeStripe, RecordedRequest } from '../helpers/fake-stripe.js';
import { agentWithPolicy, startTestGateway, uniqueId } from '../helpers/gateway.js';
import type { TestGateway } from '../helpers/gateway.js';

const UPSTREAM_KEY = 'sk_test_fake123';

let fake: FakeStripe;
/** A second fake the SDK talks to directly: what the SDK itself encodes, to compare with what the gateway forwards. */
let direct: FakeStripe;
let gw: TestGateway;

before(async () => {
  fake = await startFakeStripe();
  direct = await startFakeStripe();
  // The deadline has its own tests (mirror-deadline.test.ts); here 200 calls at once must not meet it.
  gw = await startTestGateway({ STRIPE_SECRET_KEY: UPSTREAM_KEY, STRIPE_API_BASE: fake.url, STRIPE_TIMEOUT_MS: '1500', MIRROR_DEADLINE_MS: '10000' });
});

after(async () => {
  await gw.stop();
  await fake.stop();
  await direct.stop();
});

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

const MAX = { rule_id: 'max', rule_type: 'max_amount', description: 'At most $50', parameters: { limit: 50, currency: 'USD' } };
const ESCALATE = { rule_id: 'esc', rule_type: 'escalate_if', description: 'Approval above $30', parameters: { amount_above: 30, currency: 'USD' } };
const DAILY = { rule_id: 'daily', rule_type: 'velocity_limit', description: '$1000 a day', parameters: { limit: 1000, currency: 'USD', window: 'daily' } };
const POLICY = [MAX, ESCALATE, DAILY];
const FIFTY_A_DAY = [{ rule_id: 'daily', rule_type: 'velocity_limit', description: '$50 a day', parameters: { limit: 50, currency: 'USD', window: 'daily' } }];

/** An SDK client that talks to the gateway with a spendgate key. */
function sdk(key: string, gateway: TestGateway = gw): Stripe {
  return new Stripe(key, { host: '127.0.0.1', port: gateway.agentPort, protocol: 'http', maxNetworkRetries: 0 });
}

/** An SDK client that talks to the `direct` fake with a Stripe key (to see the SDK's own bytes). */
function sdkDirect(): Stripe {
  return new Stripe(UPSTREAM_KEY, { host: '127.0.0.1', port: direct.port, protocol: 'http', maxNetworkRetries: 0 });
}

/** Where the fake's request log stands now; `since(mark)` is what arrived after. Tests in a file run one at a time. */
const mark = () => fake.requests.length;
const since = (at: number): RecordedRequest[] => fake.requests.slice(at);
/** Everything but the mirror's own upstream lookups (GETs). */
const writes = (at: number): RecordedRequest[] => since(at).filter((r) => r.method !== 'GET');
const header = (r: RecordedRequest | undefined, name: string): string | undefined => {
  const value = r?.headers[name];
  return Array.isArray(value) ? value.join(',') : value;
};

/**
 * The agent's decisions once the gateway's deferred settlements are done (a settlement goes after
 * the agent has its answer: see checkedCall).
 */
async function decisions(agentId: string): Promise<Json[]> {
  await gw.deps.ledger.flush();
  return gw.knex('decisions').where({ agent_id: agentId }).orderBy('created_at', 'asc');
}

/** The agent's one daily usage counter (the DAILY rule's), numbers as numbers. */
async function dailyUsage(agentId: string): Promise<{ reserved: number; spent: number; count: number }> {
  await gw.deps.ledger.flush();
  const rows: Json[] = await gw.knex('usage_counters').where({ agent_id: agentId, window: 'daily' });
  assert.equal(rows.length, 1, `one daily counter expected, got ${JSON.stringify(rows)}`);
  const row = rows[0];
  return { reserved: Number(row.reserved), spent: Number(row.spent), count: Number(row.count) };
}

/** The policy refusal the SDK raises: StripeCardError with spendgate's code and decision details. */
async function assertRefused(call: Promise<unknown>, expected: { code: 'spend_policy_blocked' | 'spend_approval_required'; reason: string; ruleId: string }): Promise<string> {
  let checkId = '';
  await assert.rejects(call, (error: unknown) => {
    assert.ok(error instanceof Stripe.errors.StripeCardError, `expected a StripeCardError, got ${String(error)}`);
    assert.equal(error.statusCode, 402);
    assert.equal(error.code, expected.code);
    assert.equal(error.decline_code, expected.reason);
    const spend = (error.raw as { spend?: Json }).spend;
    assert.ok(spend, 'error.spend is present');
    assert.match(String(spend.check_id), /^chk_/);
    assert.equal(spend.decision, expected.code === 'spend_policy_blocked' ? 'block' : 'escalate');
    assert.equal(spend.reason_code, expected.reason);
    assert.equal(spend.violated_rule_id, expected.ruleId);
    assert.ok(Number.isInteger(spend.policy_version) && spend.policy_version >= 1, `policy_version ${spend.policy_version}`);
    checkId = String(spend.check_id);
    return true;
  });
  return checkId;
}

async function assertForbidden(call: Promise<unknown>): Promise<void> {
  await assert.rejects(call, (error: unknown) => {
    assert.ok(error instanceof Stripe.errors.StripePermissionError, `expected a StripePermissionError, got ${String(error)}`);
    assert.equal(error.statusCode, 403);
    assert.equal(error.code, 'spend_forbidden_operation');
    assert.equal(error.rawType, 'invalid_request_error');
    return true;
  });
}

const daysAgo = (days: number) => Math.floor(Date.now() / 1000) - days * 86_400;

function seedCharge(amount: number, opts: { refunded?: number; created?: number; captured?: boolean } = {}): string {
  const id = uniqueId('ch_seed').replace('-', '_');
  fake.put({
    id,
    object: 'charge',
    amount,
    amount_captured: opts.captured === false ? 0 : amount,
    amount_refunded: opts.refunded ?? 0,
    captured: opts.captured ?? true,
    currency: 'usd',
    created: opts.created ?? daysAgo(1),
    customer: null,
    livemode: false,
    metadata: {},
    paid: true,
    payment_intent: null,
    refunded: false,
    status: 'succeeded',
  });
  return id;
}

function seedIntent(amount: number, opts: { status?: string; captureMethod?: string; latestCharge?: string } = {}): string {
  const id = uniqueId('pi_seed').replace('-', '_');
  const status = opts.status ?? 'requires_confirmation';
  fake.put({
    id,
    object: 'payment_intent',
    amount,
    amount_capturable: status === 'requires_capture' ? amount : 0,
    amount_received: 0,
    capture_method: opts.captureMethod ?? 'automatic',
    currency: 'usd',
    customer: null,
    latest_charge: opts.latestCharge ?? null,
    livemode: false,
    metadata: {},
    payment_method: 'pm_card_visa',
    status,
  });
  return id;
}

function seedInvoice(amount: number): string {
  const id = uniqueId('in_seed').replace('-', '_');
  fake.put({ id, object: 'invoice', amount_due: amount, amount_paid: 0, amount_remaining: amount, attempt_count: 0, attempted: false, currency: 'usd', customer: 'cus_seed', livemode: false, status: 'open', status_transitions: {} });
  return id;
}

// ---------------------------------------------------------------------------------------------
// 1. Forwarding: bytes, headers, keys
// ---------------------------------------------------------------------------------------------

test('when an agent creates a customer with metadata and expand[] through the SDK, then Stripe receives the exact bytes, path and Stripe headers the SDK sent, with the real key', async () => {
  const { key } = await agentWithPolicy(gw, POLICY);
  const params: Stripe.CustomerCreateParams = {
    email: 'jenny.rosen@example.com',
    name: 'Jenny Rosen & Co. (ü)',
    metadata: { order_id: '6735', 'note with spaces': 'a=b&c=d', emoji: '✓' },
    expand: ['tax', 'default_source'],
  };
  const options = { stripeAccount: 'acct_1MirrorTest0001', idempotencyKey: 'cust-create-1' };

  const directAt = direct.requests.length;
  await sdkDirect().customers.create(params, options);
  const sent = direct.requests[directAt];
  assert.ok(sent, 'the SDK reached the direct fake');

  const at = mark();
  const customer = await sdk(key).customers.create(params, options);
  const [forwarded, ...rest] = since(at);
  assert.equal(rest.length, 0, 'exactly one request upstream');
  assert.ok(forwarded);
  assert.equal(customer.object, 'customer');
  assert.equal(customer.metadata.order_id, '6735');

  assert.equal(forwarded.method, 'POST');
  assert.equal(forwarded.path, '/v1/customers');
  assert.equal(forwarded.query, '');
  assert.equal(forwarded.body.toString('utf8'), sent.body.toString('utf8'), 'byte-identical form body');
  assert.ok(forwarded.body.equals(sent.body));
  assert.equal(header(forwarded, 'content-type'), header(sent, 'content-type'));
  assert.equal(header(forwarded, 'stripe-version'), header(sent, 'stripe-version'));
  assert.equal(header(forwarded, 'stripe-account'), 'acct_1MirrorTest0001');
  assert.equal(header(forwarded, 'authorization'), `Bearer ${UPSTREAM_KEY}`);
  assert.equal(header(forwarded, 'x-api-key'), undefined);
  assert.ok(!JSON.stringify(forwarded.headers).includes(key) && !forwarded.body.toString().includes(key), 'the agent key never goes upstream');
  // The agent's Idempotency-Key is namespaced upstream and handed back as the agent's own.
  assert.notEqual(header(forwarded, 'idempotency-key'), 'cust-create-1');
  assert.ok(header(forwarded, 'idempotency-key'));
  assert.equal(customer.lastResponse.idempotencyKey, 'cust-create-1');
});

test('when an agent POSTs a money-moving form by hand, then Stripe receives the same bytes, headers and a namespaced Idempotency-Key, and the agent gets Stripe\'s answer, Request-Id and its own key back', async () => {
  const { key, agentId } = await agentWithPolicy(gw, POLICY);
  const body = 'amount=500&currency=usd&confirm=true&payment_method=pm_card_visa&metadata[a]=1&metadata%5Bb%5D=x%20y+z&expand[]=latest_charge&expand[]=customer';
  fake.on('POST', '/v1/payment_intents', { headers: { 'Request-Id': 'req_fromFakeMoney01' }, times: 1 });
  const at = mark();
  const res = await fetch(`${gw.agentUrl}/v1/payment_intents`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${key}`,
      'content-type': 'application/x-www-form-urlencoded',
      'stripe-version': '2024-06-20',
      'stripe-account': 'acct_1MirrorTest0002',
      'idempotency-key': 'agent-money-key-1',
    },
    body,
  });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  const writesUp = writes(at);
  assert.equal(writesUp.length, 1);
  const up = writesUp[0];
  assert.ok(up);
  assert.equal(up.method, 'POST');
  assert.equal(up.path, '/v1/payment_intents');
  assert.equal(up.query, '');
  assert.equal(up.body.toString('utf8'), body, 'byte-identical money-moving body');
  assert.equal(header(up, 'stripe-version'), '2024-06-20');
  assert.equal(header(up, 'stripe-account'), 'acct_1MirrorTest0002');
  assert.equal(header(up, 'authorization'), `Bearer ${UPSTREAM_KEY}`);
  assert.ok(!JSON.stringify(up.headers).includes(key), 'the agent key never goes upstream');
  const upstreamKey = header(up, 'idempotency-key');
  assert.ok(upstreamKey && upstreamKey !== 'agent-money-key-1', `namespaced upstream key, got ${upstreamKey}`);

  const intent = JSON.parse(text) as Json;
  assert.equal(intent.object, 'payment_intent');
  assert.equal(intent.amount, 500);
  assert.equal(intent.metadata.b, 'x y z');
  assert.equal(typeof intent.latest_charge, 'object', 'expand[] reached Stripe');
  assert.equal(fake.get(intent.id)?.amount, 500, 'the object is Stripe\'s');
  assert.equal(res.headers.get('request-id'), 'req_fromFakeMoney01');
  assert.equal(res.headers.get('idempotency-key'), 'agent-money-key-1');
  assert.equal(res.headers.get('stripe-version'), '2024-06-20');

  const [row] = await decisions(agentId);
  assert.equal(Number(row.amount), 500);
  assert.equal(row.idempotency_key, 'agent-money-key-1');
  assert.equal(row.status, 'committed');
  assert.equal(row.reference, intent.id);
});

test('when agents reuse Idempotency-Keys, then the upstream key is stable for one agent and differs across agents', async () => {
  const one = await agentWithPolicy(gw, POLICY);
  const two = await agentWithPolicy(gw, POLICY);
  const post = (key: string, idem: string, body: string) =>
    fetch(`${gw.agentUrl}/v1/customers`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/x-www-form-urlencoded', 'idempotency-key': idem }, body });

  const at = mark();
  const first = await post(one.key, 'shared-key', 'email=a%40example.com');
  const again = await post(one.key, 'shared-key', 'email=a%40example.com');
  const other = await post(two.key, 'shared-key', 'email=a%40example.com');
  for (const r of [first, again, other]) assert.equal(r.status, 200);
  const [r1, r2, r3] = since(at).map((r) => header(r, 'idempotency-key'));
  assert.ok(r1 && r1 !== 'shared-key');
  assert.equal(r2, r1, 'same agent + same key → same upstream key');
  assert.notEqual(r3, r1, 'another agent with the same key never shares the upstream key');
  assert.notEqual(r3, 'shared-key');
  // So the second agent gets its own object, not a replay of the first agent's.
  const [c1, c2, c3] = (await Promise.all([first.json(), again.json(), other.json()])) as Json[];
  assert.equal(c2.id, c1.id);
  assert.equal(again.headers.get('idempotent-replayed'), 'true');
  assert.notEqual(c3.id, c1.id);
  for (const r of [first, again, other]) assert.equal(r.headers.get('idempotency-key'), 'shared-key');

  // The same holds for money-moving calls.
  const money = (key: string) =>
    fetch(`${gw.agentUrl}/v1/charges`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/x-www-form-urlencoded', 'idempotency-key': 'shared-money' }, body: 'amount=100&currency=usd&source=tok_visa' });
  const m = mark();
  const [a, b] = [await money(one.key), await money(two.key)];
  assert.equal(a.status, 200);
  assert.equal(b.status, 200);
  const [u1, u2] = writes(m).map((r) => header(r, 'idempotency-key'));
  assert.ok(u1 && u2 && u1 !== u2 && u1 !== 'shared-money');
  assert.equal(a.headers.get('idempotency-key'), 'shared-money');
});

test('when an agent lists objects with a query string, then the path and query reach Stripe unchanged and the list comes back byte for byte with Stripe\'s Request-Id', async () => {
  const { key } = await agentWithPolicy(gw, POLICY);
  const email = `${uniqueId('list')}@example.com`;
  const stripe = sdk(key);
  for (let i = 0; i < 3; i++) await stripe.customers.create({ email, metadata: { i: String(i) } });

  const query = `limit=2&email=${encodeURIComponent(email)}&expand[]=data.default_source`;
  fake.on('GET', '/v1/customers', { headers: { 'Request-Id': 'req_fromFakeList001' }, times: 1 });
  const at = mark();
  const res = await fetch(`${gw.agentUrl}/v1/customers?${query}`, { headers: { authorization: `Bearer ${key}`, 'stripe-version': '2025-01-27.acacia' } });
  const viaGateway = await res.text();
  assert.equal(res.status, 200);
  const [up] = since(at);
  assert.equal(up?.method, 'GET');
  assert.equal(up?.path, '/v1/customers');
  assert.equal(up?.query, query);
  assert.equal(header(up, 'authorization'), `Bearer ${UPSTREAM_KEY}`);
  assert.equal(header(up, 'stripe-version'), '2025-01-27.acacia');
  assert.equal(res.headers.get('request-id'), 'req_fromFakeList001');
  assert.equal(res.headers.get('stripe-version'), '2025-01-27.acacia');

  const straight = await (await fetch(`${fake.url}/v1/customers?${query}`, { headers: { authorization: `Bearer ${UPSTREAM_KEY}`, 'stripe-version': '2025-01-27.acacia' } })).text();
  assert.equal(viaGateway, straight, 'the list is relayed unchanged');
  const list = JSON.parse(viaGateway) as Json;
  assert.equal(list.data.length, 2);
  assert.equal(list.has_more, true);

  // And through the SDK's auto-pagination, every page arrives.
  const all = await stripe.customers.list({ email, limit: 1 }).autoPagingToArray({ limit: 10 });
  assert.equal(all.length, 3);
});

// ---------------------------------------------------------------------------------------------
// 2. Every money-moving endpoint: allow, block, escalate
// ---------------------------------------------------------------------------------------------

interface MoneyCase {
  name: string;
  /** The upstream POST this call makes when allowed. */
  path: (id: string | undefined) => string;
  /** Seeds what the call needs upstream, then calls; the call moves `amount` minor units. */
  call: (stripe: Stripe, amount: number) => { id?: string; run: Promise<unknown> };
  actionType: string;
}

const MONEY_CASES: MoneyCase[] = [
  {
    name: 'PaymentIntent create with confirm=true',
    path: () => '/v1/payment_intents',
    call: (stripe, amount) => ({ run: stripe.paymentIntents.create({ amount, currency: 'usd', confirm: true, payment_method: 'pm_card_visa' }) }),
    actionType: 'payment',
  },
  {
    name: 'PaymentIntent confirm (amount read from Stripe)',
    path: (id) => `/v1/payment_intents/${id}/confirm`,
    call: (stripe, amount) => {
      const id = seedIntent(amount);
      return { id, run: stripe.paymentIntents.confirm(id, { payment_method: 'pm_card_visa' }) };
    },
    actionType: 'payment',
  },
  {
    name: 'Charge capture (amount read from Stripe)',
    path: (id) => `/v1/charges/${id}/capture`,
    call: (stripe, amount) => {
      const id = seedCharge(amount, { captured: false });
      return { id, run: stripe.charges.capture(id) };
    },
    actionType: 'payment',
  },
  {
    name: 'PaymentIntent capture (amount_capturable read from Stripe)',
    path: (id) => `/v1/payment_intents/${id}/capture`,
    call: (stripe, amount) => {
      const id = seedIntent(amount, { status: 'requires_capture', captureMethod: 'manual' });
      return { id, run: stripe.paymentIntents.capture(id) };
    },
    actionType: 'payment',
  },
  {
    name: 'Charge create',
    path: () => '/v1/charges',
    call: (stripe, amount) => ({ run: stripe.charges.create({ amount, currency: 'usd', source: 'tok_visa' }) }),
    actionType: 'payment',
  },
  {
    name: 'Refund create with an amount',
    path: () => '/v1/refunds',
    call: (stripe, amount) => ({ run: stripe.refunds.create({ charge: seedCharge(10_000), amount }) }),
    actionType: 'refund',
  },
  {
    name: 'Refund create without an amount (the remaining amount, looked up upstream)',
    path: () => '/v1/refunds',
    call: (stripe, amount) => ({ run: stripe.refunds.create({ charge: seedCharge(10_000, { refunded: 10_000 - amount }) }) }),
    actionType: 'refund',
  },
  {
    name: 'Refund create by payment_intent (its latest charge, remaining amount)',
    path: () => '/v1/refunds',
    call: (stripe, amount) => {
      const charge = seedCharge(10_000, { refunded: 10_000 - amount });
      const intent = seedIntent(10_000, { status: 'succeeded', latestCharge: charge });
      return { run: stripe.refunds.create({ payment_intent: intent }) };
    },
    actionType: 'refund',
  },
  {
    name: 'POST /v1/charges/:id/refunds',
    path: (id) => `/v1/charges/${id}/refunds`,
    call: (stripe, amount) => {
      const id = seedCharge(10_000);
      return { id, run: stripe.rawRequest('POST', `/v1/charges/${id}/refunds`, { amount }) };
    },
    actionType: 'refund',
  },
  {
    name: 'Transfer create',
    path: () => '/v1/transfers',
    call: (stripe, amount) => ({ run: stripe.transfers.create({ amount, currency: 'usd', destination: 'acct_1DestinationAcct' }) }),
    actionType: 'transfer',
  },
  {
    name: 'Payout create',
    path: () => '/v1/payouts',
    call: (stripe, amount) => ({ run: stripe.payouts.create({ amount, currency: 'usd' }) }),
    actionType: 'payout',
  },
  {
    name: 'Topup create',
    path: () => '/v1/topups',
    call: (stripe, amount) => ({ run: stripe.topups.create({ amount, currency: 'usd', description: 'float' }) }),
    actionType: 'topup',
  },
  {
    name: 'Invoice pay (amount_remaining read from Stripe)',
    path: (id) => `/v1/invoices/${id}/pay`,
    call: (stripe, amount) => {
      const id = seedInvoice(amount);
      return { id, run: stripe.invoices.pay(id) };
    },
    actionType: 'invoice_payment',
  },
];

for (const c of MONEY_CASES) {
  test(`when an agent makes a ${c.name} within, above the approval threshold of, and above its max_amount, then it is forwarded, escalated, and blocked with nothing forwarded`, async () => {
    const { key, agentId } = await agentWithPolicy(gw, POLICY);
    const stripe = sdk(key);

    // $10: allowed, forwarded once, committed against the budget.
    let at = mark();
    const allowed = c.call(stripe, 1000);
    const result = (await allowed.run) as Json;
    assert.ok(result && typeof result.id === 'string', 'Stripe\'s object comes back');
    const forwarded = writes(at);
    assert.equal(forwarded.length, 1, `one upstream write, got ${forwarded.map((r) => `${r.method} ${r.path}`).join(', ')}`);
    assert.equal(forwarded[0]?.path, c.path(allowed.id));
    assert.equal(header(forwarded[0], 'authorization'), `Bearer ${UPSTREAM_KEY}`);
    let rows = await decisions(agentId);
    assert.equal(rows.length, 1);
    assert.equal(rows[0].decision, 'allow');
    assert.equal(rows[0].action_type, c.actionType);
    assert.equal(Number(rows[0].amount), 1000, 'the amount the call moves (from the form or from Stripe)');
    assert.equal(rows[0].currency, 'usd');
    assert.equal(rows[0].status, 'committed');
    assert.deepEqual(await dailyUsage(agentId), { reserved: 0, spent: 1000, count: 1 });

    // $60: over max_amount → blocked, Stripe sees nothing.
    at = mark();
    const blockedId = await assertRefused(c.call(stripe, 6000).run, { code: 'spend_policy_blocked', reason: 'max_amount', ruleId: 'max' });
    assert.deepEqual(writes(at).map((r) => `${r.method} ${r.path}`), [], 'nothing forwarded for a blocked call');

    // $40: above the $30 approval threshold → escalated, Stripe sees nothing.
    at = mark();
    const escalatedId = await assertRefused(c.call(stripe, 4000).run, { code: 'spend_approval_required', reason: 'escalate_if', ruleId: 'esc' });
    assert.deepEqual(writes(at).map((r) => `${r.method} ${r.path}`), [], 'nothing forwarded for an escalated call');

    rows = await decisions(agentId);
    assert.equal(rows.length, 3);
    const byId = new Map(rows.map((r) => [r.id, r]));
    assert.equal(byId.get(blockedId)?.decision, 'block');
    assert.equal(Number(byId.get(blockedId)?.amount), 6000);
    assert.equal(byId.get(blockedId)?.status, null, 'a refusal reserves nothing');
    assert.equal(byId.get(escalatedId)?.decision, 'escalate');
    assert.equal(byId.get(escalatedId)?.status, null);
    assert.deepEqual(await dailyUsage(agentId), { reserved: 0, spent: 1000, count: 1 }, 'refusals are not counted');
  });
}

test('when an agent creates an Issuing card, then it is checked like any money-moving call: allowed and forwarded, blocked or escalated by its policy with nothing forwarded', async () => {
  const params: Stripe.Issuing.CardCreateParams = { cardholder: 'ich_1MirrorHolder', currency: 'usd', type: 'virtual' };

  const open = await agentWithPolicy(gw, POLICY);
  let at = mark();
  const card = await sdk(open.key).issuing.cards.create(params);
  assert.equal(card.object, 'issuing.card');
  assert.equal(writes(at).length, 1);
  assert.equal(writes(at)[0]?.path, '/v1/issuing/cards');
  const [row] = await decisions(open.agentId);
  assert.equal(row.action_type, 'card_creation');
  assert.equal(row.decision, 'allow');
  assert.equal(row.status, 'committed');
  assert.equal(row.reference, card.id);

  // Card creation moves no money itself (amount 0), so a policy blocks it by action type.
  const noCards = await agentWithPolicy(gw, [MAX, { rule_id: 'only-payments', rule_type: 'action_type_allowlist', parameters: { action_types: ['payment', 'refund'] } }]);
  at = mark();
  await assertRefused(sdk(noCards.key).issuing.cards.create(params), { code: 'spend_policy_blocked', reason: 'action_type_allowlist', ruleId: 'only-payments' });
  assert.equal(since(at).length, 0, 'nothing forwarded');

  const approval = await agentWithPolicy(gw, [MAX, { rule_id: 'cards-need-approval', rule_type: 'escalate_if', parameters: { action_types: ['card_creation'] } }]);
  at = mark();
  await assertRefused(sdk(approval.key).issuing.cards.create(params), { code: 'spend_approval_required', reason: 'escalate_if', ruleId: 'cards-need-approval' });
  assert.equal(since(at).length, 0, 'nothing forwarded');
});

// ---------------------------------------------------------------------------------------------
// 3. refund_age_limit reads the charge's real `created`
// ---------------------------------------------------------------------------------------------

test('when an agent refunds a charge created 40 days ago under a 30-day refund_age_limit, then the refund is blocked; a 10-day-old charge is refunded', async () => {
  const { key, agentId } = await agentWithPolicy(gw, [MAX, { rule_id: 'age', rule_type: 'refund_age_limit', description: 'Refunds within 30 days', parameters: { max_days: 30 } }]);
  const stripe = sdk(key);
  const old = seedCharge(1000, { created: daysAgo(40) });
  const recent = seedCharge(1000, { created: daysAgo(10) });

  let at = mark();
  const checkId = await assertRefused(stripe.refunds.create({ charge: old }), { code: 'spend_policy_blocked', reason: 'refund_age_limit', ruleId: 'age' });
  assert.equal(writes(at).length, 0, 'nothing forwarded');
  assert.ok(since(at).some((r) => r.method === 'GET' && r.path === `/v1/charges/${old}`), 'the charge was looked up upstream');
  await assertRefused(stripe.rawRequest('POST', `/v1/charges/${old}/refunds`, { amount: 100 }), { code: 'spend_policy_blocked', reason: 'refund_age_limit', ruleId: 'age' });
  assert.equal(writes(at).length, 0);
  const blocked = (await decisions(agentId)).find((r) => r.id === checkId);
  assert.equal(blocked?.decision, 'block');
  assert.equal(blocked?.reason_code, 'refund_age_limit');

  at = mark();
  const refund = await stripe.refunds.create({ charge: recent });
  assert.equal(refund.amount, 1000);
  assert.equal(writes(at).length, 1);
  assert.equal(fake.get(recent)?.amount_refunded, 1000);
});

test('when an agent confirms or refunds under a connected account (Stripe-Account), then the amount is read from that account, as Stripe would act on it', async () => {
  const { key, agentId } = await agentWithPolicy(gw, POLICY);
  const stripe = sdk(key);
  const account = { stripeAccount: 'acct_1MirrorConnect01' };
  const lookups = (at: number) => since(at).filter((r) => r.method === 'GET');

  let at = mark();
  const intent = seedIntent(6000);
  await assertRefused(stripe.paymentIntents.confirm(intent, { payment_method: 'pm_card_visa' }, account), { code: 'spend_policy_blocked', reason: 'max_amount', ruleId: 'max' });
  assert.equal(writes(at).length, 0, 'nothing forwarded');
  const [read] = lookups(at);
  assert.equal(read?.path, `/v1/payment_intents/${intent}`);
  assert.equal(header(read, 'stripe-account'), 'acct_1MirrorConnect01', "the intent is read in the agent's connected account");
  assert.equal(header(read, 'authorization'), `Bearer ${UPSTREAM_KEY}`);

  at = mark();
  const charge = seedCharge(1200);
  const refund = await stripe.refunds.create({ charge }, account);
  assert.equal(refund.amount, 1200);
  assert.deepEqual(lookups(at).map((r) => [r.path, header(r, 'stripe-account')]), [[`/v1/charges/${charge}`, 'acct_1MirrorConnect01']]);
  assert.equal(header(writes(at)[0], 'stripe-account'), 'acct_1MirrorConnect01');

  at = mark();
  const platform = seedCharge(700);
  await stripe.refunds.create({ charge: platform });
  assert.deepEqual(lookups(at).map((r) => [r.path, header(r, 'stripe-account')]), [[`/v1/charges/${platform}`, undefined]], 'no account named, none sent');
  assert.deepEqual((await decisions(agentId)).map((d) => [d.decision, Number(d.amount)]), [['block', 6000], ['allow', 1200], ['allow', 700]]);
});

// ---------------------------------------------------------------------------------------------
// 4. Privileged calls
// ---------------------------------------------------------------------------------------------

test('when an agent reactivates a card, loosens spending controls, approves or declines authorizations, or touches webhook endpoints, then it gets 403 spend_forbidden_operation and nothing is forwarded; freezing a card is forwarded', async () => {
  const { key, agentId } = await agentWithPolicy(gw, POLICY);
  const stripe = sdk(key);
  const cardId = uniqueId('ic_seed').replace('-', '_');
  fake.put({ id: cardId, object: 'issuing.card', status: 'inactive', currency: 'usd', livemode: false, type: 'virtual', metadata: { agent_id: agentId }, spending_controls: { spending_limits: [{ amount: 5000, interval: 'per_authorization', categories: null }], blocked_categories: null, allowed_categories: null } });

  const at = mark();
  await assertForbidden(stripe.issuing.cards.update(cardId, { status: 'active' }));
  await assertForbidden(stripe.issuing.cards.update(cardId, { spending_controls: { spending_limits: [{ amount: 1_000_000, interval: 'daily' }] } }));
  // '' clears the card's blocked categories (the SDK drops an empty array altogether).
  await assertForbidden(stripe.rawRequest('POST', `/v1/issuing/cards/${cardId}`, { spending_controls: { blocked_categories: '' } }));
  await assertForbidden(stripe.rawRequest('POST', `/v1/issuing/cards/${cardId}`, { spending_controls: '' }));
  await assertForbidden(stripe.issuing.cardholders.update('ich_1MirrorHolder', { spending_controls: { spending_limits: [{ amount: 1_000_000, interval: 'monthly' }] } }));
  await assertForbidden(stripe.issuing.authorizations.approve('iauth_1MirrorAuth'));
  await assertForbidden(stripe.issuing.authorizations.decline('iauth_1MirrorAuth'));
  await assertForbidden(stripe.webhookEndpoints.create({ url: 'https://attacker.example/hook', enabled_events: ['*'] }));
  await assertForbidden(stripe.webhookEndpoints.update('we_1MirrorHook', { disabled: true }));
  await assertForbidden(stripe.webhookEndpoints.del('we_1MirrorHook'));
  assert.deepEqual(since(at).map((r) => `${r.method} ${r.path}`), [], 'no privileged call reached Stripe');
  assert.equal(fake.get(cardId)?.status, 'inactive');

  const frozen = await stripe.issuing.cards.update(cardId, { status: 'inactive', metadata: { reason: 'suspicious' } });
  assert.equal(frozen.status, 'inactive');
  const [freeze] = writes(at);
  assert.equal(freeze?.path, `/v1/issuing/cards/${cardId}`);
  assert.equal(freeze?.form.status, 'inactive');
  assert.equal((fake.get(cardId)?.metadata as Json).reason, 'suspicious');
});

// ---------------------------------------------------------------------------------------------
// 5. Issuing card create: spending controls from the policy, metadata[agent_id]
// ---------------------------------------------------------------------------------------------

test('when an agent creates an Issuing card, then Stripe receives the agent\'s bytes plus metadata[agent_id] and spending_controls derived from its policy', async () => {
  const { key, agentId } = await agentWithPolicy(gw, [
    MAX,
    { rule_id: 'daily', rule_type: 'velocity_limit', parameters: { limit: 200, currency: 'USD', window: 'daily' } },
    { rule_id: 'no-gambling', rule_type: 'category_blocklist', parameters: { categories: ['gambling'] } },
  ]);
  const params: Stripe.Issuing.CardCreateParams = { cardholder: 'ich_1MirrorHolder', currency: 'usd', type: 'virtual', metadata: { purpose: 'ads' } };
  const directAt = direct.requests.length;
  await sdkDirect().issuing.cards.create(params);
  const agentBytes = direct.requests[directAt]?.body.toString('utf8') ?? '';
  assert.ok(agentBytes.length > 0);

  const at = mark();
  const card = await sdk(key).issuing.cards.create(params);
  const [up] = writes(at);
  assert.ok(up);
  assert.equal(up.path, '/v1/issuing/cards');
  const sent = up.body.toString('utf8');
  assert.ok(sent.startsWith(agentBytes), `the agent's own bytes come first: ${sent}`);
  assert.equal(up.form['metadata[agent_id]'], agentId);
  assert.equal(up.form['metadata[purpose]'], 'ads');
  const limits = Object.entries(up.form).filter(([k]) => k.startsWith('spending_controls[spending_limits]'));
  const byIndex = new Map<string, Record<string, string>>();
  for (const [k, v] of limits) {
    const [, index, field] = /^spending_controls\[spending_limits\]\[(\d+)\]\[(\w+)\]$/.exec(k) ?? [];
    assert.ok(index !== undefined && field !== undefined, k);
    byIndex.set(index, { ...byIndex.get(index), [field]: v });
  }
  const got = [...byIndex.values()].map((l) => `${l.interval}:${l.amount}`).sort();
  assert.deepEqual(got, ['daily:20000', 'per_authorization:5000']);
  const blocked = Object.entries(up.form).filter(([k]) => k.startsWith('spending_controls[blocked_categories]')).map(([, v]) => v);
  assert.ok(blocked.includes('betting_casino_gambling'), `blocked categories: ${blocked.join(', ')}`);

  // What Stripe made (and the agent sees) carries the controls.
  assert.equal(card.metadata.agent_id, agentId);
  assert.ok(card.spending_controls.spending_limits?.some((l) => l.interval === 'per_authorization' && l.amount === 5000));
  assert.ok(card.spending_controls.blocked_categories?.includes('betting_casino_gambling'));
});

test('when an agent creating a card sends its own spending_controls or another agent\'s metadata[agent_id], then it gets 403 and nothing is forwarded', async () => {
  const { key, agentId } = await agentWithPolicy(gw, POLICY);
  const stranger = await agentWithPolicy(gw, POLICY);
  const stripe = sdk(key);
  const at = mark();
  await assertForbidden(stripe.issuing.cards.create({ cardholder: 'ich_1MirrorHolder', currency: 'usd', type: 'virtual', spending_controls: { spending_limits: [{ amount: 10_000_000, interval: 'all_time' }] } }));
  await assertForbidden(stripe.issuing.cards.create({ cardholder: 'ich_1MirrorHolder', currency: 'usd', type: 'virtual', metadata: { agent_id: stranger.agentId } }));
  assert.equal(since(at).length, 0, 'nothing forwarded');
  assert.equal((await decisions(agentId)).filter((r) => r.status !== null).length, 0, 'nothing reserved');

  // Naming itself is fine.
  const mine = await stripe.issuing.cards.create({ cardholder: 'ich_1MirrorHolder', currency: 'usd', type: 'virtual', metadata: { agent_id: agentId } });
  assert.equal(mine.metadata.agent_id, agentId);
});

// ---------------------------------------------------------------------------------------------
// 6. Idempotent retries
// ---------------------------------------------------------------------------------------------

test('when an agent retries a PaymentIntent with the same Idempotency-Key, then it is decided and counted once, replayed by Stripe under the same upstream key; other parameters get StripeIdempotencyError', async () => {
  const { key, agentId } = await agentWithPolicy(gw, POLICY);
  const stripe = sdk(key);
  const params: Stripe.PaymentIntentCreateParams = { amount: 1500, currency: 'usd', confirm: true, payment_method: 'pm_card_visa' };

  const at = mark();
  const first = await stripe.paymentIntents.create(params, { idempotencyKey: 'k1' });
  const second = await stripe.paymentIntents.create(params, { idempotencyKey: 'k1' });
  assert.equal(second.id, first.id, 'Stripe replays the first answer');
  assert.equal(second.lastResponse.idempotencyKey, 'k1');
  assert.equal(second.lastResponse.headers['idempotent-replayed'], 'true');
  const upstream = writes(at);
  assert.equal(upstream.length, 2, 'the retry reaches Stripe');
  assert.equal(header(upstream[0], 'idempotency-key'), header(upstream[1], 'idempotency-key'));
  assert.notEqual(header(upstream[0], 'idempotency-key'), 'k1');

  let rows = await decisions(agentId);
  assert.equal(rows.length, 1, 'one decision');
  assert.equal(rows[0].idempotency_key, 'k1');
  assert.equal(rows[0].status, 'committed');
  assert.equal(rows[0].reference, first.id);
  assert.deepEqual(await dailyUsage(agentId), { reserved: 0, spent: 1500, count: 1 }, 'counted once');

  const before = mark();
  await assert.rejects(stripe.paymentIntents.create({ ...params, amount: 2500 }, { idempotencyKey: 'k1' }), (error: unknown) => {
    assert.ok(error instanceof Stripe.errors.StripeIdempotencyError, `expected StripeIdempotencyError, got ${String(error)}`);
    assert.equal(error.statusCode, 400);
    assert.equal(error.rawType, 'idempotency_error');
    return true;
  });
  assert.equal(writes(before).length, 0, 'nothing forwarded');
  rows = await decisions(agentId);
  assert.equal(rows.length, 1, 'no new decision');
  assert.deepEqual(await dailyUsage(agentId), { reserved: 0, spent: 1500, count: 1 });

  // A refused call retried gets the same refusal (same check) and still counts nothing.
  const a = await assertRefused(stripe.paymentIntents.create({ ...params, amount: 9000 }, { idempotencyKey: 'k2' }), { code: 'spend_policy_blocked', reason: 'max_amount', ruleId: 'max' });
  const b = await assertRefused(stripe.paymentIntents.create({ ...params, amount: 9000 }, { idempotencyKey: 'k2' }), { code: 'spend_policy_blocked', reason: 'max_amount', ruleId: 'max' });
  assert.equal(b, a, 'the same decision');
  assert.equal((await decisions(agentId)).length, 2);
});

// ---------------------------------------------------------------------------------------------
// 7. Stripe failures leave the ledger right
// ---------------------------------------------------------------------------------------------

test('when Stripe declines a charge (402) or rejects it (400), then the agent gets Stripe\'s error unchanged and the reservation is released', async () => {
  const { key, agentId } = await agentWithPolicy(gw, POLICY);
  const stripe = sdk(key);

  fake.on('POST', '/v1/charges', { status: 402, body: { error: { type: 'card_error', code: 'card_declined', decline_code: 'insufficient_funds', message: 'Your card was declined.', charge: 'ch_declined1' } }, headers: { 'Request-Id': 'req_declined00001' }, times: 1 });
  await assert.rejects(stripe.charges.create({ amount: 2000, currency: 'usd', source: 'tok_visa' }, { idempotencyKey: 'declined-1' }), (error: unknown) => {
    assert.ok(error instanceof Stripe.errors.StripeCardError);
    assert.equal(error.statusCode, 402);
    assert.equal(error.code, 'card_declined');
    assert.equal(error.decline_code, 'insufficient_funds');
    assert.equal(error.message, 'Your card was declined.');
    assert.equal(error.charge, 'ch_declined1');
    assert.equal(error.requestId, 'req_declined00001');
    assert.equal((error.raw as Json).spend, undefined, 'Stripe\'s own error, not a spendgate refusal');
    return true;
  });
  let [row] = await decisions(agentId);
  assert.equal(row.decision, 'allow');
  assert.equal(row.status, 'released');
  assert.deepEqual(await dailyUsage(agentId), { reserved: 0, spent: 0, count: 0 }, 'the budget is freed');

  fake.on('POST', '/v1/charges', { status: 400, body: { error: { type: 'invalid_request_error', code: 'parameter_invalid_integer', param: 'amount', message: 'Invalid integer: lots' } }, times: 1 });
  await assert.rejects(stripe.charges.create({ amount: 3000, currency: 'usd', source: 'tok_visa' }, { idempotencyKey: 'rejected-1' }), (error: unknown) => {
    assert.ok(error instanceof Stripe.errors.StripeInvalidRequestError);
    assert.equal(error.code, 'parameter_invalid_integer');
    assert.equal(error.param, 'amount');
    assert.equal(error.message, 'Invalid integer: lots');
    return true;
  });
  row = (await decisions(agentId)).find((r) => r.idempotency_key === 'rejected-1');
  assert.equal(row.status, 'released');
  assert.deepEqual(await dailyUsage(agentId), { reserved: 0, spent: 0, count: 0 });
});

test('when Stripe answers 500, then the agent sees a StripeAPIError and the reservation stays counted as unknown; a retry with the same key that succeeds commits it once', async () => {
  const { key, agentId } = await agentWithPolicy(gw, POLICY);
  const stripe = sdk(key);
  const params: Stripe.ChargeCreateParams = { amount: 2500, currency: 'usd', source: 'tok_visa' };

  fake.on('POST', '/v1/charges', { status: 500, times: 1 });
  const at = mark();
  await assert.rejects(stripe.charges.create(params, { idempotencyKey: 'flaky-1' }), (error: unknown) => {
    assert.ok(error instanceof Stripe.errors.StripeAPIError, `expected StripeAPIError, got ${String(error)}`);
    assert.equal(error.statusCode, 500);
    return true;
  });
  let [row] = await decisions(agentId);
  assert.equal(row.status, 'unknown');
  assert.deepEqual(await dailyUsage(agentId), { reserved: 2500, spent: 0, count: 1 }, 'still counted');

  const charge = await stripe.charges.create(params, { idempotencyKey: 'flaky-1' });
  assert.equal(charge.amount, 2500);
  const upstream = writes(at);
  assert.equal(upstream.length, 2);
  assert.equal(header(upstream[1], 'idempotency-key'), header(upstream[0], 'idempotency-key'), 'the retry carries the same upstream key');
  const rows = await decisions(agentId);
  assert.equal(rows.length, 1);
  [row] = rows;
  assert.equal(row.status, 'committed');
  assert.equal(row.reference, charge.id);
  assert.deepEqual(await dailyUsage(agentId), { reserved: 0, spent: 2500, count: 1 }, 'counted once');
});

test('when Stripe does not answer within STRIPE_TIMEOUT_MS, then the agent gets 504 api_error and the reservation is kept as unknown', async () => {
  const { key, agentId } = await agentWithPolicy(gw, POLICY);
  fake.on('POST', '/v1/charges', { action: 'hang', times: 1 });
  const started = Date.now();
  await assert.rejects(sdk(key).charges.create({ amount: 1200, currency: 'usd', source: 'tok_visa' }), (error: unknown) => {
    assert.ok(error instanceof Stripe.errors.StripeAPIError, `expected StripeAPIError, got ${String(error)}`);
    assert.equal(error.statusCode, 504);
    assert.equal(error.rawType, 'api_error');
    return true;
  });
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 1400 && elapsed < 6000, `answered after ${elapsed} ms`);
  const [row] = await decisions(agentId);
  assert.equal(row.status, 'unknown');
  assert.deepEqual(await dailyUsage(agentId), { reserved: 1200, spent: 0, count: 1 });
});

test('when Stripe drops the connection after the call was sent, then the agent gets an api_error, the reservation stays unknown, and a retry with the same key counts once', async () => {
  const { key, agentId } = await agentWithPolicy(gw, POLICY);
  fake.on('POST', '/v1/charges', { action: 'reset', times: 1 });
  const stripe = sdk(key);
  const params = { amount: 1200, currency: 'usd', source: 'tok_visa' };
  const at = mark();
  await assert.rejects(stripe.charges.create(params, { idempotencyKey: 'dropped-1' }), (error: unknown) => {
    assert.ok(error instanceof Stripe.errors.StripeAPIError, `expected StripeAPIError, got ${String(error)}`);
    assert.equal(error.statusCode, 504, 'Stripe may have acted on it: no answer, not unreachable');
    assert.equal(error.rawType, 'api_error');
    return true;
  });
  assert.equal(writes(at).length, 1, 'the call reached Stripe');
  const [row] = await decisions(agentId);
  assert.equal(row.status, 'unknown');
  assert.deepEqual(await dailyUsage(agentId), { reserved: 1200, spent: 0, count: 1 });

  const charge = await stripe.charges.create(params, { idempotencyKey: 'dropped-1' });
  assert.equal(charge.amount, 1200);
  const rows = await decisions(agentId);
  assert.equal(rows.length, 1, 'one decision for the call and its retry');
  assert.equal(rows[0].status, 'committed');
  assert.equal(rows[0].reference, charge.id);
  assert.deepEqual(await dailyUsage(agentId), { reserved: 0, spent: 1200, count: 1 });
});

test('when Stripe refuses the connection, then the agent gets 502 api_error and the reservation is released', async () => {
  const closed = await freePort();
  const down = await startTestGateway({ STRIPE_SECRET_KEY: UPSTREAM_KEY, STRIPE_API_BASE: `http://127.0.0.1:${closed}`, STRIPE_TIMEOUT_MS: '1500' });
  try {
    const { key, agentId } = await agentWithPolicy(down, POLICY);
    await assert.rejects(sdk(key, down).charges.create({ amount: 1200, currency: 'usd', source: 'tok_visa' }), (error: unknown) => {
      assert.ok(error instanceof Stripe.errors.StripeAPIError, `expected StripeAPIError, got ${String(error)}`);
      assert.equal(error.statusCode, 502);
      assert.equal(error.rawType, 'api_error');
      return true;
    });
    const [row] = await decisions(agentId);
    assert.equal(row.decision, 'allow');
    assert.equal(row.status, 'released');
    assert.deepEqual(await dailyUsage(agentId), { reserved: 0, spent: 0, count: 0 });

    // A passthrough call fails the same way.
    await assert.rejects(sdk(key, down).customers.list(), (error: unknown) => error instanceof Stripe.errors.StripeAPIError && error.statusCode === 502);
  } finally {
    await down.stop();
  }
});

test('when a call released after Stripe refused it is retried with the same key, then it is decided again against what is left of the budget', async () => {
  const DAILY_20 = { rule_id: 'daily', rule_type: 'velocity_limit', parameters: { limit: 20, currency: 'USD', window: 'daily' } };
  const { key, agentId } = await agentWithPolicy(gw, [DAILY_20]);
  const lockTimeout = { status: 429, body: { error: { type: 'invalid_request_error', code: 'lock_timeout', message: 'This object cannot be accessed right now because another API request or Stripe process is currently accessing it.' } }, times: 1 };

  // $12 refused by Stripe (nothing ran, nothing cached), then $15 of the $20 spent by another call.
  fake.on('POST', '/v1/charges', lockTimeout);
  await assert.rejects(sdk(key).charges.create({ amount: 1200, currency: 'usd', source: 'tok_visa' }, { idempotencyKey: 'twelve' }), (e: unknown) => e instanceof Stripe.errors.StripeError && e.statusCode === 429);
  await sdk(key).charges.create({ amount: 1500, currency: 'usd', source: 'tok_visa' }, { idempotencyKey: 'fifteen' });

  // The retry of the $12 would go past the limit now: refused, and nothing reaches Stripe.
  const at = mark();
  await assert.rejects(sdk(key).charges.create({ amount: 1200, currency: 'usd', source: 'tok_visa' }, { idempotencyKey: 'twelve' }), (e: unknown) => {
    assert.ok(e instanceof Stripe.errors.StripeCardError, String(e));
    assert.equal(e.code, 'spend_policy_blocked');
    assert.equal(e.decline_code, 'velocity_limit');
    return true;
  });
  assert.equal(writes(at).length, 0);
  assert.deepEqual(await dailyUsage(agentId), { reserved: 0, spent: 1500, count: 1 });

  // A $4 call released the same way and retried with room left: reserved again, forwarded once, counted once.
  fake.on('POST', '/v1/charges', lockTimeout);
  await assert.rejects(sdk(key).charges.create({ amount: 400, currency: 'usd', source: 'tok_visa' }, { idempotencyKey: 'four' }), (e: unknown) => e instanceof Stripe.errors.StripeError && e.statusCode === 429);
  const charge = await sdk(key).charges.create({ amount: 400, currency: 'usd', source: 'tok_visa' }, { idempotencyKey: 'four' });
  const again = await sdk(key).charges.create({ amount: 400, currency: 'usd', source: 'tok_visa' }, { idempotencyKey: 'four' });
  assert.equal(again.id, charge.id, 'a retry after success replays, as Stripe does');
  assert.deepEqual(await dailyUsage(agentId), { reserved: 0, spent: 1900, count: 2 });
  const rows = (await decisions(agentId)).filter((d) => d.idempotency_key.startsWith('four'));
  assert.deepEqual(rows.map((d) => [d.idempotency_key, d.status, d.reference, d.metadata.attempt]), [['four', 'released', null, undefined], ['four\u001f2', 'committed', charge.id, 2]]);
});

// ---------------------------------------------------------------------------------------------
// 8. Concurrency: no overspend through one gateway
// ---------------------------------------------------------------------------------------------

test('when an agent with a $50 daily limit fires 200 concurrent $1 PaymentIntents, then exactly 50 reach Stripe and 150 are blocked', async () => {
  const { key, agentId } = await agentWithPolicy(gw, FIFTY_A_DAY);
  const stripe = sdk(key);
  const run = uniqueId('burst');
  const at = mark();
  const results = await Promise.allSettled(
    Array.from({ length: 200 }, () => stripe.paymentIntents.create({ amount: 100, currency: 'usd', confirm: true, payment_method: 'pm_card_visa', metadata: { run } })),
  );
  const ok = results.filter((r) => r.status === 'fulfilled');
  const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  const unexpected = refused.filter((r) => !(r.reason instanceof Stripe.errors.StripeCardError && r.reason.code === 'spend_policy_blocked' && r.reason.decline_code === 'velocity_limit'));
  assert.deepEqual(unexpected.map((r) => String(r.reason)), [], 'every refusal is a velocity_limit block');
  assert.equal(ok.length, 50);
  assert.equal(refused.length, 150);
  const reached = since(at).filter((r) => r.method === 'POST' && r.path === '/v1/payment_intents' && r.form['metadata[run]'] === run);
  assert.equal(reached.length, 50, 'exactly 50 reached Stripe');
  assert.deepEqual(await dailyUsage(agentId), { reserved: 0, spent: 5000, count: 50 });
  const rows = await decisions(agentId);
  assert.equal(rows.length, 200);
  assert.equal(rows.filter((r) => r.status === 'committed').length, 50);
});

// ---------------------------------------------------------------------------------------------
// 9. Authentication
// ---------------------------------------------------------------------------------------------

test('when a request carries no key, a revoked key or a garbage key, then the SDK raises StripeAuthenticationError and nothing is forwarded', async () => {
  const { key, agentId } = await agentWithPolicy(gw, POLICY);
  const spare = await gw.admin('POST', `/agents/${agentId}/api-keys`, { mode: 'test' });
  assert.equal(spare.status, 201);
  const revoked = await gw.admin('POST', `/api-keys/${spare.body.id}/revoke`);
  assert.equal(revoked.status, 200, JSON.stringify(revoked.body));

  const noKey = new Stripe('', { host: '127.0.0.1', port: gw.agentPort, protocol: 'http', maxNetworkRetries: 0, authenticator: async () => undefined });
  const clients: [string, Stripe][] = [
    ['no key', noKey],
    ['revoked key', sdk(spare.body.key as string)],
    ['garbage sg_ key', sdk(`sg_test_${'Z'.repeat(40)}`)],
    ['garbage', sdk('not-a-key-at-all')],
    ['a Stripe key', sdk(UPSTREAM_KEY)],
  ];
  const at = mark();
  for (const [label, client] of clients) {
    for (const call of [() => client.customers.list(), () => client.charges.create({ amount: 100, currency: 'usd', source: 'tok_visa' })]) {
      await assert.rejects(call(), (error: unknown) => {
        assert.ok(error instanceof Stripe.errors.StripeAuthenticationError, `${label}: expected StripeAuthenticationError, got ${String(error)}`);
        assert.equal(error.statusCode, 401);
        assert.equal(error.rawType, 'authentication_error');
        return true;
      });
    }
  }
  assert.equal(since(at).length, 0, 'nothing forwarded');
  // The working key still works.
  assert.equal((await sdk(key).customers.list({ limit: 1 })).object, 'list');
});

test('when an sg_live_ key is used against a gateway holding only a test key, then it gets 403 and nothing is forwarded', async () => {
  const { agentId } = await agentWithPolicy(gw, POLICY);
  const live = await gw.admin('POST', `/agents/${agentId}/api-keys`, { mode: 'live' });
  assert.equal(live.status, 201);
  assert.match(live.body.key, /^sg_live_/);
  const stripe = sdk(live.body.key as string);
  const at = mark();
  await assertForbidden(stripe.customers.list());
  await assertForbidden(stripe.paymentIntents.create({ amount: 100, currency: 'usd', confirm: true, payment_method: 'pm_card_visa' }));
  assert.equal(since(at).length, 0, 'nothing forwarded');
  assert.equal((await decisions(agentId)).length, 0);
});

test('when the gateway holds a live key, then an sg_live_ key reaches Stripe with it and an sg_test_ key gets 403 with nothing forwarded', async () => {
  const LIVE_KEY = 'sk_live_fakeLiveKey123';
  const live = await startTestGateway({ NODE_ENV: 'production', STRIPE_SECRET_KEY: LIVE_KEY, STRIPE_API_BASE: fake.url, STRIPE_TIMEOUT_MS: '1500' });
  try {
    const { agentId, key: testKey } = await agentWithPolicy(live, POLICY);
    const liveKey = await live.admin('POST', `/agents/${agentId}/api-keys`, { mode: 'live' });
    assert.equal(liveKey.status, 201);
    let at = mark();
    const payment = await sdk(liveKey.body.key as string, live).paymentIntents.create({ amount: 1000, currency: 'usd', confirm: true, payment_method: 'pm_card_visa' });
    assert.equal(payment.amount, 1000);
    const [sent] = writes(at);
    assert.equal(header(sent, 'authorization'), `Bearer ${LIVE_KEY}`);
    at = mark();
    await assertForbidden(sdk(testKey, live).customers.list());
    await assertForbidden(sdk(testKey, live).paymentIntents.create({ amount: 100, currency: 'usd', confirm: true, payment_method: 'pm_card_visa' }));
    assert.equal(since(at).length, 0, 'a test key never reaches Stripe with a live key');
  } finally {
    await live.stop();
  }
});

// ---------------------------------------------------------------------------------------------
// 10. Passthrough errors
// ---------------------------------------------------------------------------------------------

test('when an agent retrieves an object Stripe does not have, then Stripe\'s 404 comes back unchanged', async () => {
  const { key } = await agentWithPolicy(gw, POLICY);
  const at = mark();
  let viaGateway: Stripe.errors.StripeError | undefined;
  await assert.rejects(sdk(key).customers.retrieve('cus_doesNotExist'), (error: unknown) => {
    assert.ok(error instanceof Stripe.errors.StripeInvalidRequestError);
    viaGateway = error;
    return true;
  });
  assert.equal(since(at).length, 1);
  assert.equal(viaGateway?.statusCode, 404);
  assert.equal(viaGateway?.code, 'resource_missing');
  assert.equal(viaGateway?.param, 'id');
  assert.equal(viaGateway?.message, "No such customer: 'cus_doesNotExist'");
  assert.match(viaGateway?.requestId ?? '', /^req_/);

  const straight = await fetch(`${fake.url}/v1/customers/cus_doesNotExist`, { headers: { authorization: `Bearer ${UPSTREAM_KEY}` } });
  const res = await fetch(`${gw.agentUrl}/v1/customers/cus_doesNotExist`, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(res.status, 404);
  const strip = (t: string) => t.replace(/req_[A-Za-z0-9]+/g, 'req_X');
  assert.equal(strip(await res.text()), strip(await straight.text()), 'the body is Stripe\'s');
});

// ---------------------------------------------------------------------------------------------
// 11. A checked call counts once, and checks cannot be sidestepped by how the request is written
// ---------------------------------------------------------------------------------------------

test('when an agent authorizes a $30 manual-capture PaymentIntent and then captures it under a $50 daily limit, then the capture goes through and the payment is counted once', async () => {
  const { key, agentId } = await agentWithPolicy(gw, FIFTY_A_DAY);
  const stripe = sdk(key);
  const intent = await stripe.paymentIntents.create({ amount: 3000, currency: 'usd', confirm: true, capture_method: 'manual', payment_method: 'pm_card_visa' });
  assert.equal(intent.status, 'requires_capture');
  // Settled before the agent had the answer (no flush): a capture through any process finds it.
  const authorized = await gw.knex('decisions').where({ agent_id: agentId }).first('status', 'reference');
  assert.deepEqual({ ...authorized }, { status: 'committed', reference: intent.id });
  const at = mark();
  const captured = await stripe.paymentIntents.capture(intent.id);
  assert.equal(captured.status, 'succeeded');
  assert.equal(writes(at).length, 1);
  assert.deepEqual(await dailyUsage(agentId), { reserved: 0, spent: 3000, count: 1 }, 'one $30 payment counts $30 against the day');
});

test('when an agent creates a $30 charge with capture=false and then captures it under a $50 daily limit, then the capture goes through and the charge is counted once', async () => {
  const { key, agentId } = await agentWithPolicy(gw, FIFTY_A_DAY);
  const stripe = sdk(key);
  const charge = await stripe.charges.create({ amount: 3000, currency: 'usd', source: 'tok_visa', capture: false });
  assert.equal(charge.captured, false);
  const authorized = await gw.knex('decisions').where({ agent_id: agentId }).first('status', 'reference');
  assert.deepEqual({ ...authorized }, { status: 'committed', reference: charge.id });
  const at = mark();
  const captured = await stripe.charges.capture(charge.id);
  assert.equal(captured.captured, true);
  assert.equal(writes(at).length, 1, 'the capture reached Stripe once');
  assert.equal((await decisions(agentId)).length, 1, 'the capture is not a second decision');
  assert.deepEqual(await dailyUsage(agentId), { reserved: 0, spent: 3000, count: 1 }, 'one $30 charge counts $30 against the day');
  // The $20 left of the day still fits: counted twice, the charge would have used it all.
  const rest = await stripe.charges.create({ amount: 2000, currency: 'usd', source: 'tok_visa' });
  assert.equal(rest.status, 'succeeded');
});

test('when an agent captures $25 of a $40 manual-capture PaymentIntent, then the day counts the $25 captured and the $15 never taken is the agent\'s again', async () => {
  const { key, agentId } = await agentWithPolicy(gw, FIFTY_A_DAY);
  const stripe = sdk(key);
  const intent = await stripe.paymentIntents.create({ amount: 4000, currency: 'usd', confirm: true, capture_method: 'manual', payment_method: 'pm_card_visa' });
  assert.deepEqual(await dailyUsage(agentId), { reserved: 0, spent: 4000, count: 1 }, 'authorized: $40 counted');
  const at = mark();
  const captured = await stripe.paymentIntents.capture(intent.id, { amount_to_capture: 2500 }, { idempotencyKey: `cap-${intent.id}` });
  assert.equal(captured.amount_received, 2500);
  assert.equal(writes(at).length, 1);
  assert.deepEqual(await dailyUsage(agentId), { reserved: 0, spent: 2500, count: 1 }, 'what Stripe captured, not what was authorized');
  // The same capture retried (Stripe replays its answer) changes nothing.
  const replayed = await stripe.paymentIntents.capture(intent.id, { amount_to_capture: 2500 }, { idempotencyKey: `cap-${intent.id}` });
  assert.equal(replayed.id, intent.id);
  assert.deepEqual(await dailyUsage(agentId), { reserved: 0, spent: 2500, count: 1 });
  assert.equal((await decisions(agentId)).length, 1, 'neither capture is a decision of its own');
  // $25 left: exactly that fits, a cent more does not.
  await assertRefused(stripe.paymentIntents.create({ amount: 2501, currency: 'usd', confirm: true, payment_method: 'pm_card_visa' }), { code: 'spend_policy_blocked', reason: 'velocity_limit', ruleId: 'daily' });
  assert.equal((await stripe.paymentIntents.create({ amount: 2500, currency: 'usd', confirm: true, payment_method: 'pm_card_visa' })).status, 'succeeded');
});

test('when an agent captures $10 of a $30 charge made with capture=false, then the day counts $10', async () => {
  const { key, agentId } = await agentWithPolicy(gw, FIFTY_A_DAY);
  const stripe = sdk(key);
  const charge = await stripe.charges.create({ amount: 3000, currency: 'usd', source: 'tok_visa', capture: false });
  const captured = await stripe.charges.capture(charge.id, { amount: 1000 });
  assert.equal(captured.amount_captured, 1000);
  assert.deepEqual(await dailyUsage(agentId), { reserved: 0, spent: 1000, count: 1 });
  assert.equal((await stripe.charges.create({ amount: 4000, currency: 'usd', source: 'tok_visa' })).status, 'succeeded', 'the $20 never taken is free again');
});

test('when an agent cancels a manual-capture PaymentIntent it authorized, then its $40 is released; a cancel of an intent the gateway never counted passes through unchanged', async () => {
  const { key, agentId } = await agentWithPolicy(gw, FIFTY_A_DAY);
  const stripe = sdk(key);
  const intent = await stripe.paymentIntents.create({ amount: 4000, currency: 'usd', confirm: true, capture_method: 'manual', payment_method: 'pm_card_visa' });
  const canceled = await stripe.paymentIntents.cancel(intent.id);
  assert.equal(canceled.status, 'canceled');
  assert.deepEqual(await dailyUsage(agentId), { reserved: 0, spent: 0, count: 0 });
  assert.equal((await decisions(agentId))[0].status, 'released');
  const [canceledTx] = ((await gw.admin('GET', `/transactions?agent_id=${agentId}`)).body as { data: Json[] }).data;
  assert.deepEqual([canceledTx.stripe_object_id, canceledTx.status, canceledTx.amount_minor, canceledTx.counted_minor], [intent.id, 'failed', 4000, 0], 'listed as counting nothing now');
  assert.equal((await stripe.paymentIntents.create({ amount: 5000, currency: 'usd', confirm: true, payment_method: 'pm_card_visa' })).status, 'succeeded', 'the whole day is free again');

  const uncounted = await stripe.paymentIntents.create({ amount: 9000, currency: 'usd' }); // not confirmed: not checked, not counted
  const at = mark();
  assert.equal((await stripe.paymentIntents.cancel(uncounted.id, { cancellation_reason: 'abandoned' })).cancellation_reason, 'abandoned');
  assert.equal(since(at)[0]?.body.toString(), 'cancellation_reason=abandoned', 'forwarded as sent');
  // Stripe refuses a second cancel; its error comes back and nothing is counted or released.
  await assert.rejects(stripe.paymentIntents.cancel(intent.id), (error: unknown) => error instanceof Stripe.errors.StripeInvalidRequestError);
  assert.deepEqual(await dailyUsage(agentId), { reserved: 0, spent: 5000, count: 1 });
});

test('when an intent counted twice awaiting 3D Secure is raised to $10,000 and confirmed with another card, then that confirm is checked and refused: a confirm never passes unchecked', async () => {
  const { key, agentId } = await agentWithPolicy(gw, FIFTY_A_DAY);
  const stripe = sdk(key);
  const intent = await stripe.paymentIntents.create({ amount: 100, currency: 'usd', confirm: true, confirmation_method: 'manual', payment_method: 'pm_card_authenticationRequired' });
  assert.equal(intent.status, 'requires_action');
  await stripe.paymentIntents.update(intent.id, { amount: 101 }); // not money-moving: forwarded
  assert.equal((await stripe.paymentIntents.confirm(intent.id)).status, 'requires_action', 'checked, counted, and waiting for the customer again');
  assert.equal((await decisions(agentId)).length, 2);
  await stripe.paymentIntents.update(intent.id, { amount: 1_000_000 });
  const at = mark();
  await assertRefused(stripe.paymentIntents.confirm(intent.id, { payment_method: 'pm_card_visa' }), { code: 'spend_policy_blocked', reason: 'velocity_limit', ruleId: 'daily' });
  assert.equal(writes(at).length, 0, 'nothing reached Stripe');
  assert.deepEqual(await dailyUsage(agentId), { reserved: 0, spent: 201, count: 2 }, 'each confirm Stripe accepted counts (more than moved, never less)');
});

test('when an agent tries to capture more than it was authorized for, then it gets StripePermissionError and nothing reaches Stripe', async () => {
  const { key, agentId } = await agentWithPolicy(gw, FIFTY_A_DAY);
  const stripe = sdk(key);
  const intent = await stripe.paymentIntents.create({ amount: 2000, currency: 'usd', confirm: true, capture_method: 'manual', payment_method: 'pm_card_visa' });
  const at = mark();
  await assert.rejects(stripe.paymentIntents.capture(intent.id, { amount_to_capture: 2001 }), (error: unknown) => {
    assert.ok(error instanceof Stripe.errors.StripePermissionError);
    assert.equal(error.code, 'spend_forbidden_operation');
    assert.match(error.message, /counted 20\.00 USD .* capturing more \(20\.01 USD\) is not supported/);
    return true;
  });
  assert.equal(writes(at).length, 0);
  assert.deepEqual(await dailyUsage(agentId), { reserved: 0, spent: 2000, count: 1 });
});

/** POST a hand-written form (as curl would) with the agent key. */
async function postForm(key: string, pathAndQuery: string, body: string | FormData): Promise<{ status: number; body: Json }> {
  const res = await fetch(`${gw.agentUrl}${pathAndQuery}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, ...(typeof body === 'string' ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
    body,
  });
  const text = await res.text();
  let parsed: Json = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, body: parsed };
}

interface SidestepCase {
  name: string;
  /** Path with query, and form body, of the crafted call; `card` is the id of a seeded inactive card. */
  request: (card: string) => [string, string];
  /** What Stripe would do with it had it been forwarded. */
  harm: string;
}

const SIDESTEPS: SidestepCase[] = [
  { name: 'repeats confirm (confirm=false&confirm=true) on a $60 PaymentIntent', request: () => ['/v1/payment_intents', 'amount=6000&currency=usd&payment_method=pm_card_visa&confirm=false&confirm=true'], harm: 'Stripe reads the last value and confirms a $60 payment over the $50 max_amount' },
  { name: 'repeats status (status=inactive&status=active) on a card update', request: (card) => [`/v1/issuing/cards/${card}`, 'status=inactive&status=active'], harm: 'Stripe reads the last value and reactivates the card' },
  { name: 'puts confirm=true in the query string of a $60 PaymentIntent create', request: () => ['/v1/payment_intents?confirm=true', 'amount=6000&currency=usd&payment_method=pm_card_visa'], harm: 'Stripe merges query parameters into a POST and confirms a $60 payment' },
  { name: 'puts status=active in the query string of a card update', request: (card) => [`/v1/issuing/cards/${card}?status=active`, 'metadata[note]=x'], harm: 'Stripe merges query parameters into a POST and reactivates the card' },
  { name: 'puts spending_controls in the query string of a card update', request: (card) => [`/v1/issuing/cards/${card}?spending_controls[spending_limits][0][amount]=99999999&spending_controls[spending_limits][0][interval]=daily`, ''], harm: 'Stripe merges query parameters into a POST and loosens the card\'s limits' },
];

for (const c of SIDESTEPS) {
  test(`when an agent ${c.name}, then the call is checked or refused, never forwarded unchecked`, async () => {
    const { key, agentId } = await agentWithPolicy(gw, POLICY);
    const cardId = uniqueId('ic_seed').replace('-', '_');
    fake.put({ id: cardId, object: 'issuing.card', status: 'inactive', currency: 'usd', livemode: false, type: 'virtual', metadata: { agent_id: agentId }, spending_controls: { spending_limits: [], blocked_categories: null, allowed_categories: null } });
    const [pathAndQuery, body] = c.request(cardId);
    const at = mark();
    const res = await postForm(key, pathAndQuery, body);
    assert.deepEqual(
      writes(at).map((r) => `${r.method} ${r.path}${r.query ? `?${r.query}` : ''} ${r.body.toString()}`),
      [],
      `forwarded unchecked (${c.harm}); the gateway answered ${res.status}`,
    );
    assert.ok([400, 402, 403].includes(res.status), `refused, got ${res.status}`);
    assert.equal(fake.get(cardId)?.status, 'inactive');
  });
}

test('when an agent sends a money-moving call as multipart/form-data, then it is not forwarded unchecked', async () => {
  const { key } = await agentWithPolicy(gw, POLICY);
  const form = new FormData();
  form.set('amount', '6000');
  form.set('currency', 'usd');
  form.set('confirm', 'true');
  form.set('payment_method', 'pm_card_visa');
  const at = mark();
  const res = await postForm(key, '/v1/payment_intents', form);
  assert.deepEqual(writes(at).map((r) => `${r.method} ${r.path} ${String(r.headers['content-type'])}`), [], `the gateway cannot read a multipart body, so it must not forward it to a money-moving endpoint (answered ${res.status})`);
  assert.ok(res.status >= 400 && res.status < 500, `refused, got ${res.status}`);
});

test('when the policy lists security.allowed_endpoints, then listed calls go through and every other call, money or not, gets 403 spend_forbidden_operation with nothing forwarded', async () => {
  const { key } = await agentWithPolicy(gw, [MAX], { policy: { allowed_endpoints: ['GET /v1/customers', 'POST /v1/payment_intents'] } });
  const stripe = sdk(key);
  const listed = await stripe.customers.list({ limit: 2 });
  assert.equal(listed.object, 'list');
  const intent = await stripe.paymentIntents.create({ amount: 1000, currency: 'usd' });
  assert.match(intent.id, /^pi_/);
  const at = mark();
  for (const call of [() => stripe.balance.retrieve(), () => stripe.customers.create({ email: 'x@example.com' }), () => stripe.refunds.create({ payment_intent: intent.id, amount: 100 })]) {
    await assert.rejects(call(), (error: unknown) => {
      assert.ok(error instanceof Stripe.errors.StripePermissionError);
      assert.equal(error.code, 'spend_forbidden_operation');
      assert.match(error.message, /allowed_endpoints/);
      return true;
    });
  }
  assert.equal(since(at).length, 0, 'nothing reached Stripe');
  const res = await fetch(`${gw.agentUrl}/v1//customers`, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(res.status, 403, 'a non-canonical spelling of an allowed path is refused too');
});
