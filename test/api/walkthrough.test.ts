// Seed 002's walkthrough, end to end over HTTP: create the policy, a $50 refund is allowed, $750 is
// blocked by r1, $300 is escalated by r2, and the violations log shows both.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startTestGateway, uniqueId } from '../helpers/gateway.js';
import type { TestGateway } from '../helpers/gateway.js';
import { seedRefundPolicy } from '../fixtures/policies.js';

let gw: TestGateway;
before(async () => {
  gw = await startTestGateway();
});
after(async () => {
  await gw.stop();
});

const refundPolicy = seedRefundPolicy;

test('when the seed-002 walkthrough is followed, then allow, block and escalate come back as documented', async () => {
  const policyId = uniqueId('my_refund_policy');
  const agentId = uniqueId('support-agent-v1');
  const created = await gw.admin('POST', '/policies', refundPolicy(policyId));
  assert.equal(created.status, 201);
  assert.equal(created.body.version, 1);
  assert.equal(created.body.rules.length, 3);
  assert.equal((await gw.admin('POST', '/agents', { id: agentId, owner: 'support@example.com', policy_id: policyId })).status, 201);
  const key = (await gw.admin('POST', `/agents/${agentId}/api-keys`, { mode: 'live' })).body.key as string;
  assert.match(key, /^sg_live_[0-9A-Za-z]{32,}$/);

  const check = (body: Record<string, unknown>) => gw.agent('POST', '/v1/checks', key, { agent_id: agentId, policy_id: policyId, action_type: 'refund', currency: 'USD', ...body });

  const allowed = await check({ amount: 50.0, counterparty: 'customer_123', metadata: { days_since_purchase: 5 } });
  assert.equal(allowed.status, 200);
  assert.match(allowed.body.check_id, /^chk_/);
  assert.equal(allowed.body.decision, 'allow');
  assert.equal(allowed.body.confidence, 'high');
  assert.equal(allowed.body.reason_code, null);
  assert.equal(allowed.body.violated_rule_id, null);
  assert.equal(allowed.body.policy_version, 1);
  assert.equal(typeof allowed.body.latency_ms, 'number');
  assert.ok(!Number.isNaN(Date.parse(allowed.body.timestamp)));

  const blocked = await check({ amount: 750.0, counterparty: 'customer_456' });
  assert.equal(blocked.body.decision, 'block');
  assert.equal(blocked.body.reason_code, 'max_amount');
  assert.equal(blocked.body.violated_rule_id, 'r1');
  assert.equal(blocked.body.violated_rule_description, 'Block refunds over $500');
  assert.equal(blocked.body.message, 'Amount 750.00 USD exceeds maximum allowed 500.00 USD');

  const escalated = await check({ amount: 300, counterparty: 'customer_789', metadata: { days_since_purchase: 3 } });
  assert.equal(escalated.body.decision, 'escalate');
  assert.equal(escalated.body.reason_code, 'escalate_if');
  assert.equal(escalated.body.violated_rule_id, 'r2');

  const log = await gw.admin('GET', `/violations?agent_id=${agentId}&limit=5`);
  assert.equal(log.status, 200);
  assert.equal(log.body.pagination.total_count, 2);
  assert.equal(log.body.pagination.has_more, false);
  assert.equal(log.body.pagination.next_cursor, null);
  const [newest, oldest] = log.body.data;
  assert.equal(newest.check_id, escalated.body.check_id);
  assert.equal(newest.decision, 'escalate');
  assert.equal(oldest.check_id, blocked.body.check_id);
  assert.match(oldest.violation_id, /^viol_/);
  assert.equal(oldest.amount, 750);
  assert.equal(oldest.currency, 'USD');
  assert.equal(oldest.counterparty, 'customer_456');
  assert.equal(oldest.policy_id, policyId);
  assert.equal(oldest.policy_version, 1);
  assert.equal(oldest.violated_rule_id, 'r1');
  assert.equal(oldest.violated_rule_description, 'Block refunds over $500');
});

test('when a refund of unknown age is checked, then refund_age_limit escalates it rather than guessing', async () => {
  const policyId = uniqueId('refunds');
  const agentId = uniqueId('agent');
  await gw.admin('POST', '/policies', refundPolicy(policyId));
  await gw.admin('POST', '/agents', { id: agentId, owner: 'o@example.com', policy_id: policyId });
  const key = (await gw.admin('POST', `/agents/${agentId}/api-keys`, { mode: 'test' })).body.key as string;
  const res = await gw.agent('POST', '/v1/checks', key, { action_type: 'refund', amount: 20, currency: 'USD' });
  assert.equal(res.body.decision, 'escalate');
  assert.equal(res.body.violated_rule_id, 'r3');
  assert.equal(res.body.confidence, 'medium');
  const old = await gw.agent('POST', '/v1/checks', key, { action_type: 'refund', amount: 20, currency: 'USD', metadata: { days_since_purchase: 31 } });
  assert.equal(old.body.decision, 'block');
  assert.equal(old.body.violated_rule_id, 'r3');
});
