// Keys and agent policies are cached per gateway process; a change made through any process must
// reach every other one at once (LISTEN/NOTIFY), so a revoked key never keeps working.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { agentWithPolicy, startTestGateway } from '../helpers/gateway.js';
import type { TestGateway } from '../helpers/gateway.js';

let a: TestGateway;
let b: TestGateway;
before(async () => {
  [a, b] = await Promise.all([startTestGateway(), startTestGateway()]);
});
after(async () => {
  await Promise.all([a.stop(), b.stop()]);
});

const check = (gw: TestGateway, key: string, amount = 5) => gw.agent('POST', '/v1/checks', key, { action_type: 'purchase', amount, currency: 'USD' });

/** NOTIFY reaches the other process asynchronously, within milliseconds: poll briefly. */
async function eventually(probe: () => Promise<boolean>, ms = 1000): Promise<number> {
  const started = Date.now();
  while (!(await probe())) {
    if (Date.now() - started > ms) throw new Error(`not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return Date.now() - started;
}

test('when a key used (and cached) at gateway B is revoked through gateway A, then B refuses it within milliseconds', async () => {
  const { key } = await agentWithPolicy(a, [{ rule_id: 'cap', rule_type: 'max_amount', parameters: { limit: 100, currency: 'USD' } }]);
  assert.equal((await check(b, key)).status, 200);
  assert.equal((await check(b, key)).status, 200);
  const keys = await a.admin('GET', '/api-keys');
  const id = (keys.body.data as { id: string; prefix: string }[]).find((k) => key.endsWith(k.prefix.slice(-4)))?.id;
  assert.ok(id);
  assert.equal((await a.admin('POST', `/api-keys/${id}/revoke`)).status, 200);
  const waited = await eventually(async () => (await check(b, key)).status === 401);
  assert.ok(waited < 1000);
  assert.equal((await check(b, key)).status, 401);
});

test('when a policy changes through gateway A, then gateway B decides with the new version', async () => {
  const { key, policyId } = await agentWithPolicy(a, [{ rule_id: 'cap', rule_type: 'max_amount', parameters: { limit: 100, currency: 'USD' } }]);
  assert.equal((await check(b, key, 50)).body.decision, 'allow');
  const put = await a.admin('PUT', `/policies/${policyId}`, { policy_id: policyId, rules: [{ rule_id: 'cap', rule_type: 'max_amount', parameters: { limit: 10, currency: 'USD' } }] });
  assert.equal(put.status, 200);
  await eventually(async () => (await check(b, key, 50)).body.decision === 'block');
  const res = await check(b, key, 50);
  assert.equal(res.body.policy_version, 2);
});

test('when an agent is re-bound through gateway A, then gateway B uses the new binding', async () => {
  const { key, agentId } = await agentWithPolicy(a, [{ rule_id: 'cap', rule_type: 'max_amount', parameters: { limit: 100, currency: 'USD' } }]);
  assert.equal((await check(b, key, 50)).body.decision, 'allow');
  const strict = (await a.admin('POST', '/policies', { policy_id: `${agentId}-strict`, rules: [{ rule_id: 'tiny', rule_type: 'max_amount', parameters: { limit: 1, currency: 'USD' } }] })).body.policy_id as string;
  assert.equal((await a.admin('PATCH', `/agents/${agentId}`, { policy_id: strict })).status, 200);
  await eventually(async () => (await check(b, key, 50)).body.violated_rule_id === 'tiny');
});
