// Paths Stripe might read differently from the gateway are refused, never forwarded unchecked.
// (Dot segments are normalized away by the HTTP client itself; the unit tests cover them.)
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startFakeStripe } from '../helpers/fake-stripe.js';
import type { FakeStripe } from '../helpers/fake-stripe.js';
import { agentWithPolicy, startTestGateway } from '../helpers/gateway.js';
import type { TestGateway } from '../helpers/gateway.js';

let fake: FakeStripe;
let gw: TestGateway;
before(async () => {
  fake = await startFakeStripe();
  gw = await startTestGateway({ STRIPE_SECRET_KEY: 'sk_test_paths', STRIPE_API_BASE: fake.url });
});
after(async () => {
  await gw.stop();
  await fake.stop();
});

test('when a money-moving POST uses a non-canonical path, then it is a 400 and Stripe sees nothing', async () => {
  const { key } = await agentWithPolicy(gw, [{ rule_id: 'cap', rule_type: 'max_amount', parameters: { limit: 10, currency: 'USD' } }]);
  const body = 'amount=99900&currency=usd&confirm=true&payment_method=pm_card_visa';
  for (const path of ['/v1/payment_intents/', '/v1//payment_intents', '/v1/payment%5Fintents']) {
    const before = fake.requests.length;
    const res = await fetch(`${gw.agentUrl}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/x-www-form-urlencoded' }, body });
    assert.equal(res.status, 400, path);
    assert.equal(((await res.json()) as { error: { type: string } }).error.type, 'invalid_request_error');
    assert.equal(fake.requests.length, before, `${path} reached Stripe`);
  }
  const canonical = await fetch(`${gw.agentUrl}/v1/payment_intents`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/x-www-form-urlencoded' }, body });
  assert.equal(canonical.status, 402, 'the canonical path is checked and blocked');
});

test('when parameters are hidden behind 100,000 empty separators, then the request is refused and Stripe sees nothing', async () => {
  const { key } = await agentWithPolicy(gw, [{ rule_id: 'cap', rule_type: 'max_amount', parameters: { limit: 10, currency: 'USD' } }]);
  const before = fake.requests.length;
  const body = `amount=99900&currency=usd&payment_method=pm_card_visa${'&'.repeat(100_000)}&confirm=true`;
  const res = await fetch(`${gw.agentUrl}/v1/payment_intents`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/x-www-form-urlencoded' }, body });
  assert.equal(res.status, 400);
  assert.equal(fake.requests.length, before);
});

test('when a method other than GET, POST or DELETE is used, then it is a 405 and Stripe sees nothing', async () => {
  const { key } = await agentWithPolicy(gw, [{ rule_id: 'cap', rule_type: 'max_amount', parameters: { limit: 10, currency: 'USD' } }]);
  const before = fake.requests.length;
  for (const method of ['PUT', 'PATCH']) {
    const res = await fetch(`${gw.agentUrl}/v1/charges`, { method, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/x-www-form-urlencoded' }, body: 'amount=99900&currency=usd&source=tok_visa' });
    assert.equal(res.status, 405, method);
  }
  assert.equal(fake.requests.length, before);
});
