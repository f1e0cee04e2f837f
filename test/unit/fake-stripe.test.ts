// The fake Stripe (test/helpers/fake-stripe.ts), driven through the official stripe SDK where the SDK
// can express the call, and through fetch where the test needs exact bytes or headers.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import Stripe from 'stripe';
import { startFakeStripe } from '../helpers/fake-stripe.js';
import type { FakeStripe } from '../helpers/fake-stripe.js';

let fake: FakeStripe;
let stripe: Stripe;

function sdk(key = 'sk_test_123', extra: Record<string, unknown> = {}): Stripe {
  return new Stripe(key, { host: '127.0.0.1', port: fake.port, protocol: 'http', maxNetworkRetries: 0, ...extra });
}

/** fetch against the fake with a test key; answers the status, parsed body and headers. */
async function call(method: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}) {
  const res = await fetch(`${fake.url}${path}`, {
    method,
    headers: { authorization: 'Bearer sk_test_123', 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body,
  });
  return { status: res.status, body: (await res.json()) as Record<string, any>, headers: res.headers }; // eslint-disable-line @typescript-eslint/no-explicit-any
}

before(async () => {
  fake = await startFakeStripe();
  stripe = sdk();
});

after(async () => {
  await fake.stop();
});

beforeEach(() => {
  fake.reset();
});

test('a confirmed PaymentIntent succeeds, creates its charge and can be retrieved', async () => {
  const created = await stripe.paymentIntents.create({ amount: 500, currency: 'USD', confirm: true, metadata: { agent_id: 'a1' } });
  assert.match(created.id, /^pi_[A-Za-z0-9]{24}$/);
  assert.equal(created.object, 'payment_intent');
  assert.equal(created.status, 'succeeded');
  assert.equal(created.amount, 500);
  assert.equal(created.amount_received, 500);
  assert.equal(created.currency, 'usd');
  assert.deepEqual(created.metadata, { agent_id: 'a1' });
  assert.equal(created.livemode, false);
  assert.ok(Math.abs(created.created - Date.now() / 1000) < 5);
  assert.match(String(created.latest_charge), /^ch_/);

  const retrieved = await stripe.paymentIntents.retrieve(created.id);
  assert.equal(retrieved.id, created.id);
  assert.equal(retrieved.status, 'succeeded');

  const charge = await stripe.charges.retrieve(String(created.latest_charge));
  assert.equal(charge.payment_intent, created.id);
  assert.equal(charge.amount_captured, 500);
  assert.equal(charge.amount_refunded, 0);

  const expanded = await stripe.paymentIntents.retrieve(created.id, { expand: ['latest_charge'] });
  assert.equal((expanded.latest_charge as Stripe.Charge).object, 'charge');
  assert.equal(fake.requests.at(-1)?.query, 'expand[0]=latest_charge');
});

test('a PaymentIntent without confirm waits; update, confirm and manual capture move it on', async () => {
  const intent = await stripe.paymentIntents.create({ amount: 1000, currency: 'eur', capture_method: 'manual' });
  assert.equal(intent.status, 'requires_confirmation');
  assert.equal(intent.latest_charge, null);

  const updated = await stripe.paymentIntents.update(intent.id, { amount: 1500, metadata: { step: 'two' } });
  assert.equal(updated.amount, 1500);
  assert.deepEqual(updated.metadata, { step: 'two' });

  const confirmed = await stripe.paymentIntents.confirm(intent.id);
  assert.equal(confirmed.status, 'requires_capture');
  assert.equal(confirmed.amount_capturable, 1500);

  const captured = await stripe.paymentIntents.capture(intent.id, { amount_to_capture: 1200 });
  assert.equal(captured.status, 'succeeded');
  assert.equal(captured.amount_received, 1200);
  assert.equal(fake.get(String(captured.latest_charge))?.amount_captured, 1200);

  await assert.rejects(stripe.paymentIntents.confirm(intent.id), (error: unknown) => {
    assert.ok(error instanceof Stripe.errors.StripeInvalidRequestError);
    assert.equal(error.code, 'payment_intent_unexpected_state');
    return true;
  });
  await assert.rejects(stripe.paymentIntents.update(intent.id, { amount: 1 }), Stripe.errors.StripeInvalidRequestError);
});

test('refunds: part, then the rest by default, then too much is refused like Stripe', async () => {
  const intent = await stripe.paymentIntents.create({ amount: 1000, currency: 'usd', confirm: true });
  const part = await stripe.refunds.create({ payment_intent: intent.id, amount: 300, reason: 'requested_by_customer' });
  assert.match(part.id, /^re_/);
  assert.equal(part.amount, 300);
  assert.equal(part.charge, intent.latest_charge);
  assert.equal(part.payment_intent, intent.id);
  assert.equal(part.status, 'succeeded');

  await assert.rejects(stripe.refunds.create({ charge: String(intent.latest_charge), amount: 800 }), (error: unknown) => {
    assert.ok(error instanceof Stripe.errors.StripeInvalidRequestError);
    assert.equal(error.statusCode, 400);
    assert.equal(error.code, 'amount_too_large');
    assert.equal(error.param, 'amount');
    return true;
  });

  const rest = await stripe.refunds.create({ charge: String(intent.latest_charge) });
  assert.equal(rest.amount, 700);
  const charge = await stripe.charges.retrieve(String(intent.latest_charge));
  assert.equal(charge.amount_refunded, 1000);
  assert.equal(charge.refunded, true);

  await assert.rejects(stripe.refunds.create({ payment_intent: intent.id, amount: 1 }), (error: unknown) => {
    assert.ok(error instanceof Stripe.errors.StripeInvalidRequestError);
    assert.equal(error.code, 'charge_already_refunded');
    return true;
  });
  await assert.rejects(stripe.refunds.create({ charge: 'ch_missing' }), (error: unknown) => {
    assert.ok(error instanceof Stripe.errors.StripeInvalidRequestError);
    assert.equal(error.statusCode, 404);
    assert.equal(error.code, 'resource_missing');
    assert.equal(error.param, 'charge');
    return true;
  });
});

test('charges and the legacy refund routes', async () => {
  const charge = await stripe.charges.create({ amount: 2000, currency: 'usd', source: 'tok_visa', description: 'coffee' });
  assert.equal(charge.status, 'succeeded');
  assert.equal(charge.amount_refunded, 0);
  assert.equal(charge.description, 'coffee');

  const refund = await call('POST', `/v1/charges/${charge.id}/refunds`, 'amount=500');
  assert.equal(refund.status, 200);
  assert.equal(refund.body.object, 'refund');
  assert.equal(refund.body.amount, 500);
  const legacy = await call('POST', `/v1/charges/${charge.id}/refund`, '');
  assert.equal(legacy.body.object, 'charge');
  assert.equal(legacy.body.amount_refunded, 2000);
});

test('transfers, payouts, top-ups, customers, balance and a seeded invoice', async () => {
  const transfer = await stripe.transfers.create({ amount: 700, currency: 'usd', destination: 'acct_1', metadata: { agent_id: 'a1' } });
  assert.match(transfer.id, /^tr_/);
  assert.equal(transfer.amount, 700);
  assert.equal(transfer.destination, 'acct_1');
  const payout = await stripe.payouts.create({ amount: 900, currency: 'usd' });
  assert.match(payout.id, /^po_/);
  assert.equal(payout.status, 'pending');
  const topup = await stripe.topups.create({ amount: 10000, currency: 'usd' });
  assert.match(topup.id, /^tu_/);
  const customer = await stripe.customers.create({ email: 'a@example.com' });
  assert.equal((await stripe.customers.retrieve(customer.id)).id, customer.id);
  const balance = await stripe.balance.retrieve();
  assert.equal(balance.object, 'balance');

  await assert.rejects(stripe.transfers.create({ amount: 700, currency: 'usd' } as Stripe.TransferCreateParams), (error: unknown) => {
    assert.ok(error instanceof Stripe.errors.StripeInvalidRequestError);
    assert.equal(error.code, 'parameter_missing');
    assert.equal(error.param, 'destination');
    return true;
  });

  fake.put({ id: 'in_seeded', object: 'invoice', amount_due: 1200, amount_paid: 0, amount_remaining: 1200, status: 'open', livemode: false });
  assert.equal((await stripe.invoices.retrieve('in_seeded')).amount_remaining, 1200);
  const paid = await stripe.invoices.pay('in_seeded');
  assert.equal(paid.status, 'paid');
  assert.equal(paid.amount_paid, 1200);
  assert.equal(paid.amount_remaining, 0);
  await assert.rejects(stripe.invoices.pay('in_seeded'), Stripe.errors.StripeInvalidRequestError);
});

test('issuing cards: create, update, list', async () => {
  const card = await stripe.issuing.cards.create({
    currency: 'usd',
    type: 'virtual',
    cardholder: 'ich_agent',
    spending_controls: { spending_limits: [{ amount: 5000, interval: 'daily' }], blocked_categories: ['betting_casino_gambling'] },
    metadata: { agent_id: 'a1' },
  });
  assert.match(card.id, /^ic_/);
  assert.equal(card.status, 'inactive');
  assert.equal(card.type, 'virtual');
  assert.equal(card.cardholder.id, 'ich_agent');
  assert.deepEqual(card.spending_controls.spending_limits, [{ amount: 5000, interval: 'daily', categories: null }]);
  assert.deepEqual(card.spending_controls.blocked_categories, ['betting_casino_gambling']);
  assert.deepEqual(card.metadata, { agent_id: 'a1' });
  assert.equal(
    fake.requests.at(-1)?.body.toString(),
    'currency=usd&type=virtual&cardholder=ich_agent&spending_controls[spending_limits][0][amount]=5000&spending_controls[spending_limits][0][interval]=daily&spending_controls[blocked_categories][0]=betting_casino_gambling&metadata[agent_id]=a1',
  );

  const active = await stripe.issuing.cards.update(card.id, { status: 'active', spending_controls: { spending_limits: [{ amount: 9000, interval: 'weekly' }] } });
  assert.equal(active.status, 'active');
  assert.equal(active.spending_controls.spending_limits?.[0]?.amount, 9000);
  assert.deepEqual(active.spending_controls.blocked_categories, ['betting_casino_gambling']);

  const other = await stripe.issuing.cards.create({ currency: 'usd', type: 'physical', status: 'active' });
  const all = await stripe.issuing.cards.list();
  assert.equal(all.object, 'list');
  assert.equal(all.url, '/v1/issuing/cards');
  assert.equal(all.has_more, false);
  assert.deepEqual(all.data.map((c) => c.id), [other.id, card.id]);
  const virtual = await stripe.issuing.cards.list({ type: 'virtual' });
  assert.deepEqual(virtual.data.map((c) => c.id), [card.id]);
  const byHolder = await stripe.issuing.cards.list({ cardholder: 'ich_agent', limit: 1 });
  assert.deepEqual(byHolder.data.map((c) => c.id), [card.id]);

  const canceled = await stripe.issuing.cards.update(card.id, { status: 'canceled' });
  assert.equal(canceled.status, 'canceled');
  await assert.rejects(stripe.issuing.cards.update(card.id, { status: 'active' }), Stripe.errors.StripeInvalidRequestError);
});

test('idempotency: same key and body replays; same key, other body is an idempotency_error', async () => {
  const params = { amount: 4200, currency: 'usd', confirm: true };
  const first = await stripe.paymentIntents.create(params, { idempotencyKey: 'order-1' });
  const again = await stripe.paymentIntents.create(params, { idempotencyKey: 'order-1' });
  assert.equal(again.id, first.id);
  assert.equal(again.lastResponse.headers['idempotent-replayed'], 'true');
  assert.equal(again.lastResponse.headers['idempotency-key'], 'order-1');
  assert.equal(first.lastResponse.headers['idempotent-replayed'], undefined);
  assert.equal((await stripe.paymentIntents.list()).data.length, 1);

  await assert.rejects(stripe.paymentIntents.create({ ...params, amount: 4300 }, { idempotencyKey: 'order-1' }), (error: unknown) => {
    assert.ok(error instanceof Stripe.errors.StripeIdempotencyError);
    assert.equal(error.statusCode, 400);
    assert.equal(error.type, 'StripeIdempotencyError');
    assert.match(error.message, /same parameters/);
    return true;
  });

  // Errors from execution are replayed too; another API key is another key space.
  const failed = await call('POST', '/v1/refunds', 'charge=ch_nope', { 'idempotency-key': 'r-1' });
  assert.equal(failed.status, 404);
  const failedAgain = await call('POST', '/v1/refunds', 'charge=ch_nope', { 'idempotency-key': 'r-1' });
  assert.equal(failedAgain.status, 404);
  const otherKey = await call('POST', '/v1/payment_intents', 'amount=1&currency=usd', { 'idempotency-key': 'order-1', authorization: 'Bearer sk_test_other' });
  assert.equal(otherKey.status, 200);
  assert.equal(otherKey.headers.get('idempotent-replayed'), null);
});

test('the SDK keys every POST itself, and the fake echoes it', async () => {
  const customer = await stripe.customers.create({ name: 'n' });
  const request = fake.requests.at(-1);
  assert.match(String(request?.headers['idempotency-key']), /^stripe-node-retry-[0-9a-f-]{36}$/);
  assert.equal(customer.lastResponse.headers['idempotency-key'], request?.headers['idempotency-key']);
  assert.match(customer.lastResponse.requestId, /^req_/);
  assert.equal(customer.lastResponse.headers['stripe-version'], request?.headers['stripe-version']);
  assert.equal(request?.headers['content-type'], 'application/x-www-form-urlencoded');
  assert.match(String(request?.headers['user-agent']), /^Stripe\/v1 NodeBindings\//);
  const get = await call('GET', `/v1/customers/${customer.id}`);
  assert.equal(get.headers.get('stripe-version'), '2026-07-29.dahlia');
  assert.equal(get.headers.get('idempotency-key'), null);
  assert.equal(get.headers.get('content-type'), 'application/json');
});

test('auth: a bad key is a StripeAuthenticationError that does not echo the key', async () => {
  const key = 'sk_tset_thisIsNotARealKeyAtAll9876';
  await assert.rejects(sdk(key).balance.retrieve(), (error: unknown) => {
    assert.ok(error instanceof Stripe.errors.StripeAuthenticationError);
    assert.equal(error.statusCode, 401);
    assert.equal(error.rawType, 'invalid_request_error');
    assert.ok(!error.message.includes('thisIsNotARealKey'));
    assert.match(error.message, /^Invalid API Key provided: \*+9876$/);
    return true;
  });
  await assert.rejects(sdk('pk_test_123').balance.retrieve(), Stripe.errors.StripeAuthenticationError);
  const none = await call('GET', '/v1/balance', undefined, { authorization: '' });
  assert.equal(none.status, 401);
  assert.match(none.body.error.message, /You did not provide an API key/);
  const basic = await call('GET', '/v1/balance', undefined, { authorization: `Basic ${Buffer.from('sk_test_123:').toString('base64')}` });
  assert.equal(basic.status, 200);
  const restricted = await call('GET', '/v1/balance', undefined, { authorization: 'Bearer rk_live_abc' });
  assert.equal(restricted.status, 200);
  assert.equal(restricted.body.livemode, true);

  // With apiKeys, only those keys work, like a real account's.
  const account = await startFakeStripe({ apiKeys: ['sk_test_upstream0000000001'] });
  try {
    const client = (k: string) => new Stripe(k, { host: '127.0.0.1', port: account.port, protocol: 'http', maxNetworkRetries: 0 });
    assert.equal((await client('sk_test_upstream0000000001').balance.retrieve()).object, 'balance');
    await assert.rejects(client('sk_test_agent00000000000002').balance.retrieve(), (error: unknown) => {
      assert.ok(error instanceof Stripe.errors.StripeAuthenticationError);
      assert.match(error.message, /^Invalid API Key provided: sk_test_\*+0002$/);
      return true;
    });
  } finally {
    await account.stop();
  }
});

test('live keys make live objects, invisible to test keys', async () => {
  const live = await sdk('sk_live_abc').paymentIntents.create({ amount: 100, currency: 'usd' });
  assert.equal(live.livemode, true);
  await assert.rejects(stripe.paymentIntents.retrieve(live.id), (error: unknown) => {
    assert.ok(error instanceof Stripe.errors.StripeInvalidRequestError);
    assert.equal(error.statusCode, 404);
    assert.match(error.message, /exists in live mode/);
    return true;
  });
});

test('unknown ids and routes are 404s shaped like Stripe', async () => {
  await assert.rejects(stripe.paymentIntents.retrieve('pi_missing'), (error: unknown) => {
    assert.ok(error instanceof Stripe.errors.StripeInvalidRequestError);
    assert.equal(error.statusCode, 404);
    assert.equal(error.code, 'resource_missing');
    assert.equal(error.param, 'id');
    assert.equal(error.message, "No such payment_intent: 'pi_missing'");
    return true;
  });
  const route = await call('GET', '/v1/no_such_things/x_1');
  assert.equal(route.status, 404);
  assert.equal(route.body.error.type, 'invalid_request_error');
  assert.match(route.body.error.message, /^Unrecognized request URL \(GET: \/v1\/no_such_things\/x_1\)/);
  // Any GET of a seeded id answers it, even on routes the fake does not model.
  fake.put({ id: 'txn_seeded', object: 'balance_transaction', amount: 5 });
  assert.equal((await call('GET', '/v1/balance_transactions/txn_seeded')).body.amount, 5);
  assert.equal((await stripe.balanceTransactions.retrieve('txn_seeded')).amount, 5);
});

test('the raw body is recorded byte for byte; the form is parsed from raw or %-encoded brackets', async () => {
  await stripe.paymentIntents.create({ amount: 500, currency: 'usd', allowed_payment_method_types: ['card'], metadata: { agent_id: 'a1', note: "it's (fine)!" } });
  const sdkRequest = fake.requests.at(-1);
  assert.equal(
    sdkRequest?.body.toString(),
    'amount=500&currency=usd&allowed_payment_method_types[0]=card&metadata[agent_id]=a1&metadata[note]=it%27s%20%28fine%29%21',
  );
  assert.deepEqual(sdkRequest?.form, {
    amount: '500',
    currency: 'usd',
    'allowed_payment_method_types[0]': 'card',
    'metadata[agent_id]': 'a1',
    'metadata[note]': "it's (fine)!",
  });

  const raw = Buffer.from('amount=250&currency=usd&metadata%5Bagent_id%5D=a+2&metadata[x]=%E2%82%AC&payment_method_types[]=card&payment_method_types%5B%5D=link&expand[]=latest_charge');
  const res = await call('POST', '/v1/payment_intents', raw);
  assert.equal(res.status, 200);
  assert.deepEqual(res.body.metadata, { agent_id: 'a 2', x: '€' });
  assert.deepEqual(res.body.payment_method_types, ['card', 'link']);
  assert.equal(res.body.amount, 250);
  const recorded = fake.requests.at(-1);
  assert.ok(recorded?.body.equals(raw));
  assert.equal(recorded?.form['metadata[agent_id]'], 'a 2');
  assert.equal(recorded?.form['payment_method_types[1]'], 'link');

  const bad = await call('POST', '/v1/payment_intents', 'amount=ten&currency=usd');
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error.code, 'parameter_invalid_integer');
  assert.equal(bad.body.error.param, 'amount');

  // curl style: a new array element starts when a child key repeats (Rack's rule, which Stripe uses).
  const card = await call('POST', '/v1/issuing/cards', 'currency=usd&type=virtual&spending_controls[spending_limits][][amount]=100&spending_controls[spending_limits][][interval]=daily&spending_controls[spending_limits][][amount]=900&spending_controls[spending_limits][][interval]=monthly');
  assert.deepEqual(card.body.spending_controls.spending_limits, [
    { amount: 100, interval: 'daily', categories: null },
    { amount: 900, interval: 'monthly', categories: null },
  ]);
});

test('on(): a one-off 500, then normal behaviour again', async () => {
  fake.on('POST', '/v1/payment_intents', { status: 500, times: 1 });
  await assert.rejects(stripe.paymentIntents.create({ amount: 100, currency: 'usd' }), (error: unknown) => {
    assert.ok(error instanceof Stripe.errors.StripeAPIError);
    assert.equal(error.statusCode, 500);
    return true;
  });
  assert.equal(fake.requests.length, 1); // maxNetworkRetries: 0 → no retry of the 500
  const ok = await stripe.paymentIntents.create({ amount: 100, currency: 'usd' });
  assert.equal(ok.status, 'requires_confirmation');

  fake.on('*', '/v1/payment_intents/:id', { status: 402, body: { error: { type: 'card_error', code: 'card_declined', message: 'Declined' } } });
  await assert.rejects(stripe.paymentIntents.retrieve(ok.id), Stripe.errors.StripeCardError);
  await assert.rejects(stripe.paymentIntents.retrieve(ok.id), Stripe.errors.StripeCardError);
  // The newest matching override wins: a delay-only one delays the normal answer, once.
  fake.on('GET', /^\/v1\/payment_intents\//, { delayMs: 50, times: 1 });
  const started = Date.now();
  assert.equal((await stripe.paymentIntents.retrieve(ok.id)).id, ok.id);
  assert.ok(Date.now() - started >= 45);
  await assert.rejects(stripe.paymentIntents.retrieve(ok.id), Stripe.errors.StripeCardError);
});

test("on(): 'hang' never answers (the SDK times out); 'reset' drops the socket (the SDK retries that once)", async () => {
  fake.on('GET', '/v1/balance', { action: 'hang' });
  const impatient = sdk('sk_test_123', { timeout: 200 });
  const started = Date.now();
  await assert.rejects(impatient.balance.retrieve(), (error: unknown) => {
    assert.ok(error instanceof Stripe.errors.StripeConnectionError);
    assert.match(error.message, /timeout/);
    return true;
  });
  assert.ok(Date.now() - started >= 190);

  fake.on('POST', '/v1/customers', { action: 'reset', times: 1 });
  const customer = await stripe.customers.create({ name: 'after reset' });
  assert.match(customer.id, /^cus_/);
  const posts = fake.requests.filter((r) => r.path === '/v1/customers');
  assert.equal(posts.length, 2); // retried despite maxNetworkRetries: 0 ...
  assert.equal(posts[0]?.headers['idempotency-key'], posts[1]?.headers['idempotency-key']); // ... with the same key

  fake.on('POST', '/v1/customers', { action: 'reset' });
  await assert.rejects(stripe.customers.create({ name: 'never' }), Stripe.errors.StripeConnectionError);
});

test('latencyMs delays every answer', async () => {
  const slow = await startFakeStripe({ latencyMs: 80 });
  try {
    const started = Date.now();
    const res = await fetch(`${slow.url}/v1/balance`, { headers: { authorization: 'Bearer sk_test_1' } });
    assert.equal(res.status, 200);
    assert.ok(Date.now() - started >= 75);
  } finally {
    await slow.stop();
  }
});

test('standalone: prints its port as one JSON line and stops on SIGTERM', async () => {
  const file = fileURLToPath(new URL('../helpers/fake-stripe.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', file, '--latency-ms', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const [chunk] = (await once(child.stdout, 'data')) as [Buffer];
    const line = chunk.toString().trim();
    const { port } = JSON.parse(line) as { port: number };
    assert.ok(Number.isInteger(port) && port > 0);
    const res = await fetch(`http://127.0.0.1:${port}/v1/balance`, { headers: { authorization: 'Bearer sk_test_1' } });
    assert.equal(res.status, 200);
    assert.match(String(res.headers.get('request-id')), /^req_/);
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const [code] = (await exited) as [number | null];
    assert.equal(code, 0);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});
