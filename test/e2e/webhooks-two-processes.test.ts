// Two gateway processes on one PostgreSQL answer Stripe's authorization webhooks: every request is
// delivered to both at once (a redelivery racing the first delivery), against a 50 USD daily limit.
// Each request gets one answer from both, and exactly 50 one-dollar authorizations are reserved.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Knex } from 'knex';
import { databaseUrl, testKnex, uniqueId } from '../helpers/gateway.js';
import { startGatewayProcesses } from '../helpers/gateway-process.js';
import type { GatewayProcess } from '../helpers/gateway-process.js';
import { signStripe, stripeAuthorizationRequest } from '../helpers/processor-events.js';

const ADMIN = 'two-process-webhook-admin-00';
const SECRET = 'whsec_two_processes';

let gateways: GatewayProcess[] = [];
let knex: Knex;
before(async () => {
  knex = testKnex(2);
  // What is tested is exactly-once, not the deadline (webhooks-deadline.test.ts): 200 deliveries at
  // once beside other test files on two cores can take longer than the default 1.5 s, and a
  // delivery answered by the fail mode would differ from its twin for that reason alone.
  const env = { DATABASE_URL: databaseUrl(), SPEND_ADMIN_TOKEN: ADMIN, STRIPE_WEBHOOK_SECRET: SECRET, AUTH_DEADLINE_MS: '10000' };
  gateways = await startGatewayProcesses(2, env);
});
after(async () => {
  await Promise.all(gateways.map((g) => g.stop()));
  await knex.destroy();
});

test('when 100 one-dollar authorizations are each delivered to both processes at once against a 50 USD daily limit, then 50 are approved, each once', async () => {
  const [a, b] = gateways as [GatewayProcess, GatewayProcess];
  const admin = (url: string, body: unknown) =>
    fetch(`http://127.0.0.1:${a.adminPort}/admin/v1${url}`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const agentId = uniqueId('swiper');
  await admin('/policies', { policy_id: agentId, rules: [{ rule_id: 'daily', rule_type: 'velocity_limit', parameters: { limit: 50, currency: 'USD', window: 'daily' } }] });
  await admin('/agents', { id: agentId, owner: 'ops@example.com', policy_id: agentId });

  const deliver = (port: number, body: string) =>
    fetch(`http://127.0.0.1:${port}/webhooks/stripe`, { method: 'POST', headers: { 'content-type': 'application/json', 'stripe-signature': signStripe(body, SECRET) }, body })
      .then((r) => r.json() as Promise<{ approved: boolean; metadata: Record<string, string> }>);
  const bodies = Array.from({ length: 100 }, () => JSON.stringify(stripeAuthorizationRequest({ agentId, amount: 100 })));
  const answers = await Promise.all(bodies.map((body) => Promise.all([deliver(a.port, body), deliver(b.port, body)])));

  for (const [first, second] of answers) {
    assert.equal(first.approved, second.approved, 'both deliveries of one request get the same answer');
    assert.equal(first.metadata.spend_check_id, second.metadata.spend_check_id);
  }
  assert.equal(answers.filter(([first]) => first.approved).length, 50);
  const reserved = await knex('decisions').where({ agent_id: agentId, status: 'reserved' });
  assert.equal(reserved.length, 50);
  const counter = await knex('usage_counters').where({ agent_id: agentId, window: 'daily' }).first();
  assert.equal(Number(counter.reserved), 5000);
});
