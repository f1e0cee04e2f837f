// Two gateway processes on one PostgreSQL, one fake Stripe: 200 concurrent one-dollar
// PaymentIntents against a fifty-dollar daily limit reach Stripe exactly 50 times.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import Stripe from 'stripe';
import { until } from '../helpers/cards.js';
import { startFakeStripe } from '../helpers/fake-stripe.js';
import type { FakeStripe } from '../helpers/fake-stripe.js';
import { databaseUrl, uniqueId } from '../helpers/gateway.js';
import { startGatewayProcesses } from '../helpers/gateway-process.js';
import type { GatewayProcess } from '../helpers/gateway-process.js';

const ADMIN = 'two-process-admin-token-0000';

let fake: FakeStripe;
let gateways: GatewayProcess[] = [];
before(async () => {
  fake = await startFakeStripe();
  // Exactly-once counting is what is tested, not the deadline: on a loaded CI machine 200 calls at
  // once can queue past MIRROR_DEADLINE_MS, and a 503'd call keeps its reservation for a retry.
  const env = { DATABASE_URL: databaseUrl(), SPEND_ADMIN_TOKEN: ADMIN, STRIPE_SECRET_KEY: 'sk_test_twoprocess', STRIPE_API_BASE: fake.url, MIRROR_DEADLINE_MS: '10000' };
  gateways = await startGatewayProcesses(2, env);
});
after(async () => {
  await Promise.all(gateways.map((g) => g.stop()));
  await fake.stop();
});

test('when 200 one-dollar PaymentIntents race through two gateway processes against a 50 USD daily limit, then Stripe sees exactly 50', async () => {
  const [a, b] = gateways as [GatewayProcess, GatewayProcess];
  const admin = (method: string, url: string, body: unknown) =>
    fetch(`http://127.0.0.1:${a.adminPort}/admin/v1${url}`, { method, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) }).then((r) => r.json() as Promise<Record<string, unknown>>);
  const agentId = uniqueId('racer');
  await admin('POST', '/policies', { policy_id: agentId, rules: [{ rule_id: 'daily', rule_type: 'velocity_limit', parameters: { limit: 50, currency: 'USD', window: 'daily' } }] });
  await admin('POST', '/agents', { id: agentId, owner: 'ops@example.com', policy_id: agentId });
  const key = (await admin('POST', `/agents/${agentId}/api-keys`, { mode: 'test' })).key as string;

  const clients = [a, b].map((g) => new Stripe(key, { host: '127.0.0.1', port: g.port, protocol: 'http', maxNetworkRetries: 0 }));
  const results = await Promise.allSettled(
    Array.from({ length: 200 }, (_, i) => (clients[i % 2] as Stripe).paymentIntents.create({ amount: 100, currency: 'usd', confirm: true, payment_method: 'pm_card_visa', metadata: { n: String(i) } })),
  );
  const created = results.filter((r) => r.status === 'fulfilled').length;
  const blocked = results.filter((r) => r.status === 'rejected' && (r.reason as { code?: string }).code === 'spend_policy_blocked').length;
  const reached = fake.requests.filter((r) => r.method === 'POST' && r.path === '/v1/payment_intents').length;
  assert.equal(created, 50);
  assert.equal(blocked, 150);
  assert.equal(reached, 50, 'Stripe saw exactly the allowed calls');
  // Each process answered its own half: 100 definite answers each, allowed or blocked.
  for (const g of [0, 1]) {
    const answered = results.filter((r, i) => i % 2 === g && (r.status === 'fulfilled' || (r.reason as { code?: string }).code === 'spend_policy_blocked')).length;
    assert.equal(answered, 100);
  }
  // Each settlement goes after its answer has left (within ~10 ms): the 50 are completed soon, never more.
  const completed = async () => ((await admin('GET', `/transactions?agent_id=${agentId}&status=completed&limit=100`, undefined)).pagination as { total_count: number }).total_count;
  await until('50 completed transactions', async () => (await completed()) >= 50, 2_000);
  const tx = await admin('GET', `/transactions?agent_id=${agentId}&limit=100`, undefined);
  assert.equal((tx.pagination as { total_count: number }).total_count, 200, 'every decision is a transaction');
  assert.equal(await completed(), 50);
});
