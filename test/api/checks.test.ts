// The check API over HTTP (SPEC §3, §4, §8, seed 002): how an agent presents its key, what a check
// request may contain, limits, idempotency, simulation, the violations log, metrics and health.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { agentWithPolicy, startTestGateway, uniqueId } from '../helpers/gateway.js';
import type { TestGateway } from '../helpers/gateway.js';

let gw: TestGateway;
before(async () => {
  gw = await startTestGateway();
});
after(async () => {
  await gw.stop();
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

/** POST /v1/checks with exactly the headers given (no X-API-Key added). */
async function rawCheck(headers: Record<string, string>, body: string): Promise<{ status: number; body: Json; headers: Headers }> {
  const res = await fetch(`${gw.agentUrl}/v1/checks`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, body: parsed, headers: res.headers };
}

const purchase = (extra: Record<string, unknown> = {}) => ({ action_type: 'purchase', amount: 1, currency: 'USD', ...extra });

function check(key: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}) {
  return gw.agent('POST', '/v1/checks', key, purchase(extra), headers);
}

function assertAgentError(res: { status: number; body: Json }, status: number, type: string): void {
  assert.equal(res.status, status, JSON.stringify(res.body));
  assert.equal(res.body.error.type, type);
  assert.equal(typeof res.body.error.message, 'string');
  assert.ok(res.body.error.message.length > 0);
}

/** The fields (and messages) an error's details name. */
function detailFields(body: Json): string[] {
  assert.ok(Array.isArray(body?.error?.details), `expected error.details, got ${JSON.stringify(body)}`);
  return (body.error.details as { field?: string; message?: string }[]).map((d) => `${d.field ?? ''} ${d.message ?? ''}`);
}

const cap1000 = [{ rule_id: 'cap', rule_type: 'max_amount', description: 'At most $1000', parameters: { limit: 1000, currency: 'USD' } }];
const daily100 = [{ rule_id: 'daily', rule_type: 'velocity_limit', description: '$100 a day', parameters: { limit: 100, currency: 'USD', window: 'daily' } }];

async function violations(agentId: string): Promise<Json> {
  const res = await gw.admin('GET', `/violations?agent_id=${agentId}&limit=100`);
  assert.equal(res.status, 200);
  return res.body;
}

// ---------------------------------------------------------------------------------------------
// Key transports and authentication
// ---------------------------------------------------------------------------------------------

test('when the key is sent as X-API-Key, then the check is answered', async () => {
  const { agentId, key } = await agentWithPolicy(gw, cap1000);
  const res = await rawCheck({ 'x-api-key': key }, JSON.stringify(purchase()));
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(res.body.decision, 'allow');
  assert.equal(res.body.agent_id, agentId);
});

test('when the key is sent as a Bearer token, then the check is answered', async () => {
  const { agentId, key } = await agentWithPolicy(gw, cap1000);
  const res = await rawCheck({ authorization: `Bearer ${key}` }, JSON.stringify(purchase()));
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(res.body.agent_id, agentId);
});

test('when the key is sent as the HTTP basic user name, then the check is answered', async () => {
  const { agentId, key } = await agentWithPolicy(gw, cap1000);
  const res = await rawCheck({ authorization: `Basic ${Buffer.from(`${key}:`).toString('base64')}` }, JSON.stringify(purchase()));
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(res.body.agent_id, agentId);
});

test('when no key is sent, then the check answers 401 authentication_error', async () => {
  const res = await rawCheck({}, JSON.stringify(purchase()));
  assertAgentError(res, 401, 'authentication_error');
  assert.equal(typeof res.body.error.request_id, 'string');
  assert.equal(res.body.error.request_id, res.headers.get('request-id'));
  assertAgentError(await rawCheck({ authorization: 'Bearer ' }, JSON.stringify(purchase())), 401, 'authentication_error');
});

test('when a garbage or unknown key is sent, then the check answers 401', async () => {
  assertAgentError(await check('not-a-key'), 401, 'authentication_error');
  assertAgentError(await check(`sg_test_${'a'.repeat(40)}`), 401, 'authentication_error');
  assertAgentError(await rawCheck({ authorization: `Bearer sg_live_${'Z'.repeat(40)}` }, JSON.stringify(purchase())), 401, 'authentication_error');
  assertAgentError(await rawCheck({ authorization: `Basic ${Buffer.from('nobody:').toString('base64')}` }, JSON.stringify(purchase())), 401, 'authentication_error');
});

test('when the key was revoked, then the check answers 401', async () => {
  const { agentId, key } = await agentWithPolicy(gw, cap1000);
  assert.equal((await check(key)).status, 200);
  const keyId = (await gw.admin('GET', `/agents/${agentId}/api-keys`)).body.data[0].id as string;
  assert.equal((await gw.admin('POST', `/api-keys/${keyId}/revoke`)).status, 200);
  assertAgentError(await check(key), 401, 'authentication_error');
});

test('when the key was rotated without grace, then the old key answers 401 and the new one 200', async () => {
  const { agentId, key } = await agentWithPolicy(gw, cap1000);
  const keyId = (await gw.admin('GET', `/agents/${agentId}/api-keys`)).body.data[0].id as string;
  const rotated = await gw.admin('POST', `/api-keys/${keyId}/rotate`, { grace_hours: 0 });
  assert.equal(rotated.status, 201);
  assertAgentError(await check(key), 401, 'authentication_error');
  assert.equal((await check(rotated.body.key)).status, 200);
});

test('when an admin credential is used on the check API, then it answers 401', async () => {
  const adminKey = await gw.admin('POST', '/admin-keys', {});
  assertAgentError(await check(adminKey.body.key), 401, 'authentication_error');
});

test('when a key rotated with a short grace period runs out of grace, then it answers 401 and is listed as expired', async () => {
  const { agentId, key } = await agentWithPolicy(gw, cap1000);
  const keyId = (await gw.admin('GET', `/agents/${agentId}/api-keys`)).body.data[0].id as string;
  const rotated = await gw.admin('POST', `/api-keys/${keyId}/rotate`, { grace_hours: 0.0003 }); // about a second
  assert.equal(rotated.status, 201, JSON.stringify(rotated.body));
  assert.ok(Date.parse(rotated.body.previous.expires_at) <= Date.now() + 2_000);
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  assertAgentError(await check(key), 401, 'authentication_error');
  assert.equal((await check(rotated.body.key)).status, 200);
  const listed = (await gw.admin('GET', `/agents/${agentId}/api-keys`)).body.data as Json[];
  assert.equal(listed.find((k) => k.id === keyId)?.status, 'expired');
  assert.equal(listed.find((k) => k.id === rotated.body.id)?.status, 'active');
});

// ---------------------------------------------------------------------------------------------
// Which agent and which policy
// ---------------------------------------------------------------------------------------------

test("when a check names another agent's agent_id, then it answers 403 and records nothing", async () => {
  const mine = await agentWithPolicy(gw, [{ rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 1, currency: 'USD' } }]);
  const theirs = await agentWithPolicy(gw, cap1000);
  const res = await check(mine.key, { agent_id: theirs.agentId, amount: 5 });
  assertAgentError(res, 403, 'invalid_request_error');
  assert.equal((await violations(mine.agentId)).pagination.total_count, 0);
  assert.equal((await violations(theirs.agentId)).pagination.total_count, 0);
});

test("when agent_id is omitted, then the key's agent and its bound policy are used", async () => {
  const { agentId, policyId, key } = await agentWithPolicy(gw, [{ rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 10, currency: 'USD' } }]);
  const res = await check(key, { amount: 11 });
  assert.equal(res.status, 200);
  assert.equal(res.body.agent_id, agentId);
  assert.equal(res.body.policy_id, policyId);
  assert.equal(res.body.decision, 'block');
  assert.equal(res.body.violated_rule_id, 'max');
  const own = await check(key, { agent_id: agentId, amount: 11 });
  assert.equal(own.status, 200);
  assert.equal(own.body.decision, 'block');
});

test('when an agent has no bound policy, then a check answers 400, and naming some policy is refused with 403', async () => {
  const agentId = uniqueId('unbound');
  await gw.admin('POST', '/agents', { id: agentId, owner: 'ops@example.com' });
  const key = (await gw.admin('POST', `/agents/${agentId}/api-keys`, { mode: 'test' })).body.key as string;
  assertAgentError(await check(key), 400, 'invalid_request_error');

  const policyId = uniqueId('policy');
  await gw.admin('POST', '/policies', { policy_id: policyId, rules: [] });
  const named = await check(key, { policy_id: policyId, amount: 11 });
  assert.equal(named.status, 403, JSON.stringify(named.body));
  assert.match(named.body.error.message, /bound/);
});

test('when an agent names a looser policy than its own, then it is refused with 403 and nothing is recorded', async () => {
  const { agentId, key, policyId } = await agentWithPolicy(gw, cap1000);
  const loose = uniqueId('loose');
  await gw.admin('POST', '/policies', { policy_id: loose, rules: [] });
  const res = await check(key, { policy_id: loose, amount: 5000 });
  assert.equal(res.status, 403);
  const unknown = await check(key, { policy_id: uniqueId('missing') });
  assert.equal(unknown.status, 403, 'an unknown id is refused the same way, so ids cannot be probed');
  const own = await check(key, { policy_id: policyId, amount: 5 });
  assert.equal(own.status, 200);
  const log = await gw.admin('GET', `/violations?agent_id=${agentId}`);
  assert.equal(log.body.pagination.total_count, 0);
});

// ---------------------------------------------------------------------------------------------
// Request validation
// ---------------------------------------------------------------------------------------------

test('when action_type is missing, then it answers 400 naming action_type', async () => {
  const { key } = await agentWithPolicy(gw, cap1000);
  const res = await gw.agent('POST', '/v1/checks', key, { amount: 1, currency: 'USD' });
  assertAgentError(res, 400, 'invalid_request_error');
  assert.ok(detailFields(res.body).some((d) => d.startsWith('action_type ')), JSON.stringify(res.body));
});

test('when the amount is negative, then it answers 400 naming amount and records nothing', async () => {
  const { agentId, key } = await agentWithPolicy(gw, [{ rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 1, currency: 'USD' } }]);
  const res = await check(key, { amount: -5 });
  assertAgentError(res, 400, 'invalid_request_error');
  assert.ok(detailFields(res.body).some((d) => d.startsWith('amount ')), JSON.stringify(res.body));
  assertAgentError(await check(key, { amount: '-5' }), 400, 'invalid_request_error');
  assert.equal((await violations(agentId)).pagination.total_count, 0);
});

test('when a USD amount has three decimals, then it answers 400 rather than rounding', async () => {
  const { key } = await agentWithPolicy(gw, cap1000);
  const res = await check(key, { amount: '12.345' });
  assertAgentError(res, 400, 'invalid_request_error');
  assert.ok(detailFields(res.body).some((d) => d.startsWith('amount ')), JSON.stringify(res.body));
  assertAgentError(await check(key, { amount: 12.345 }), 400, 'invalid_request_error');
  assertAgentError(await check(key, { amount: 'twelve' }), 400, 'invalid_request_error');
  assertAgentError(await check(key, { amount: 1e21 }), 400, 'invalid_request_error');
});

test('when the currency is unknown, then it answers 400 naming currency', async () => {
  const { key } = await agentWithPolicy(gw, cap1000);
  const res = await check(key, { currency: 'XYZ' });
  assertAgentError(res, 400, 'invalid_request_error');
  assert.ok(detailFields(res.body).some((d) => d.startsWith('currency ')), JSON.stringify(res.body));
});

test('when the body has an unknown field and several bad fields, then 400 lists them all', async () => {
  const { key } = await agentWithPolicy(gw, cap1000);
  const unknown = await check(key, { amount_cents: 100 });
  assertAgentError(unknown, 400, 'invalid_request_error');
  assert.ok(detailFields(unknown.body).some((d) => d.includes('amount_cents')), JSON.stringify(unknown.body));

  const several = await gw.agent('POST', '/v1/checks', key, { amount: 1, currency: 'XYZ', colour: 'red' });
  assertAgentError(several, 400, 'invalid_request_error');
  const fields = detailFields(several.body);
  assert.ok(fields.some((d) => d.startsWith('action_type ')), JSON.stringify(several.body));
  assert.ok(fields.some((d) => d.startsWith('currency ')), JSON.stringify(several.body));
  assert.ok(fields.some((d) => d.includes('colour')), JSON.stringify(several.body));
});

test('when a KWD amount has three decimals or a JPY amount none, then the check is accepted', async () => {
  const { key } = await agentWithPolicy(gw, [{ rule_id: 'types', rule_type: 'action_type_allowlist', parameters: { action_types: ['purchase'] } }]);
  const kwd = await check(key, { amount: '12.345', currency: 'KWD' });
  assert.equal(kwd.status, 200, JSON.stringify(kwd.body));
  assert.equal(kwd.body.decision, 'allow');
  const jpy = await check(key, { amount: 500, currency: 'JPY' });
  assert.equal(jpy.status, 200, JSON.stringify(jpy.body));
  assert.equal(jpy.body.decision, 'allow');
  assertAgentError(await check(key, { amount: '500.5', currency: 'JPY' }), 400, 'invalid_request_error');
  assertAgentError(await check(key, { amount: '1.2345', currency: 'KWD' }), 400, 'invalid_request_error');
});

test('when the body is malformed JSON, then it answers 400 invalid_request_error', async () => {
  const { key } = await agentWithPolicy(gw, cap1000);
  const res = await rawCheck({ 'x-api-key': key }, '{"action_type": "purchase", "amount": ');
  assertAgentError(res, 400, 'invalid_request_error');
});

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

test('when a daily velocity limit of 100 USD is used up, then 60 + 40 pass and one more cent is blocked', async () => {
  const { agentId, key } = await agentWithPolicy(gw, daily100);
  const first = await check(key, { amount: 60 });
  const second = await check(key, { amount: 40 });
  assert.equal(first.body.decision, 'allow');
  assert.equal(second.body.decision, 'allow');
  const cent = await check(key, { amount: '0.01' });
  assert.equal(cent.status, 200);
  assert.equal(cent.body.decision, 'block');
  assert.equal(cent.body.reason_code, 'velocity_limit');
  assert.equal(cent.body.violated_rule_id, 'daily');
  assert.equal(cent.body.violated_rule_description, '$100 a day');
  assert.equal(typeof cent.body.message, 'string');
  // a blocked check spends nothing: the next cent is blocked too, and nothing else
  assert.equal((await check(key, { amount: '0.01' })).body.decision, 'block');
  assert.equal((await violations(agentId)).pagination.total_count, 2);
});

test('when an amount is exactly at max_amount, then it is allowed, and one cent more is blocked', async () => {
  const { key } = await agentWithPolicy(gw, [{ rule_id: 'max', rule_type: 'max_amount', description: 'At most $100', parameters: { limit: 100, currency: 'USD' } }]);
  const exact = await check(key, { amount: '100.00' });
  assert.equal(exact.body.decision, 'allow');
  assert.equal(exact.body.reason_code, null);
  const over = await check(key, { amount: '100.01' });
  assert.equal(over.body.decision, 'block');
  assert.equal(over.body.reason_code, 'max_amount');
  assert.equal(over.body.violated_rule_id, 'max');
});

test('when a EUR check meets only USD limits, then it is blocked, never compared across currencies', async () => {
  const { key } = await agentWithPolicy(gw, [
    { rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 100, currency: 'USD' } },
    { rule_id: 'daily', rule_type: 'velocity_limit', parameters: { limit: 500, currency: 'USD', window: 'daily' } },
  ]);
  const eur = await check(key, { amount: 1, currency: 'EUR' });
  assert.equal(eur.status, 200);
  assert.equal(eur.body.decision, 'block');
  assert.equal(eur.body.violated_rule_id, 'max');
  assert.equal((await check(key, { amount: 1, currency: 'USD' })).body.decision, 'allow');
});

test('when a currency is written in lower case, then it counts against the same limit', async () => {
  const { key } = await agentWithPolicy(gw, daily100);
  assert.equal((await check(key, { amount: 60, currency: 'usd' })).body.decision, 'allow');
  assert.equal((await check(key, { amount: 40, currency: 'Usd' })).body.decision, 'allow');
  assert.equal((await check(key, { amount: '0.01', currency: 'USD' })).body.decision, 'block');
});

test('when 20 checks of 10 USD race against a 100 USD daily limit, then exactly 10 are allowed', async () => {
  const { agentId, key } = await agentWithPolicy(gw, daily100);
  const results = await Promise.all(Array.from({ length: 20 }, () => check(key, { amount: 10 })));
  assert.ok(results.every((r) => r.status === 200));
  const decisions = results.map((r) => r.body.decision);
  assert.equal(decisions.filter((d) => d === 'allow').length, 10);
  assert.equal(decisions.filter((d) => d === 'block').length, 10);
  assert.equal(new Set(results.map((r) => r.body.check_id)).size, 20);
  assert.equal((await violations(agentId)).pagination.total_count, 10);
});

// ---------------------------------------------------------------------------------------------
// Idempotency
// ---------------------------------------------------------------------------------------------

test('when the same Idempotency-Key header is sent twice, then the same decision is replayed and counted once', async () => {
  const { agentId, key } = await agentWithPolicy(gw, daily100);
  const idem = uniqueId('idem');
  const first = await check(key, { amount: 60 }, { 'Idempotency-Key': idem });
  const second = await check(key, { amount: 60 }, { 'Idempotency-Key': idem });
  assert.equal(first.status, 200);
  assert.equal(second.status, 200);
  assert.equal(first.headers.get('idempotent-replayed'), null);
  assert.equal(second.headers.get('idempotent-replayed'), 'true');
  assert.equal(second.body.check_id, first.body.check_id);
  assert.equal(second.body.decision, 'allow');
  assert.equal(second.body.timestamp, first.body.timestamp);
  // counted once: 40 more still fits in the 100 USD day, and then nothing does
  assert.equal((await check(key, { amount: 40 })).body.decision, 'allow');
  assert.equal((await check(key, { amount: '0.01' })).body.decision, 'block');
  assert.equal((await violations(agentId)).pagination.total_count, 1);
});

test('when a blocked check is retried with the same Idempotency-Key, then one violation is recorded', async () => {
  const { agentId, key } = await agentWithPolicy(gw, [{ rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 1, currency: 'USD' } }]);
  const idem = uniqueId('idem');
  const first = await check(key, { amount: 5 }, { 'Idempotency-Key': idem });
  const second = await check(key, { amount: 5 }, { 'Idempotency-Key': idem });
  assert.equal(first.body.decision, 'block');
  assert.equal(second.body.check_id, first.body.check_id);
  const log = await violations(agentId);
  assert.equal(log.pagination.total_count, 1);
  assert.equal(log.data[0].check_id, first.body.check_id);
});

test('when the same Idempotency-Key arrives several times at once, then all get one decision counted once', async () => {
  const { key } = await agentWithPolicy(gw, daily100);
  const idem = uniqueId('idem');
  const results = await Promise.all(Array.from({ length: 5 }, () => check(key, { amount: 60 }, { 'Idempotency-Key': idem })));
  assert.ok(results.every((r) => r.status === 200), JSON.stringify(results.map((r) => r.body)));
  assert.equal(new Set(results.map((r) => r.body.check_id)).size, 1);
  assert.equal(results.filter((r) => r.headers.get('idempotent-replayed') === 'true').length, 4);
  assert.equal((await check(key, { amount: 40 })).body.decision, 'allow');
  assert.equal((await check(key, { amount: '0.01' })).body.decision, 'block');
});

test('when an Idempotency-Key is reused with a different amount, then it answers 409 idempotency_error', async () => {
  const { key } = await agentWithPolicy(gw, daily100);
  const idem = uniqueId('idem');
  assert.equal((await check(key, { amount: 60 }, { 'Idempotency-Key': idem })).status, 200);
  const conflict = await check(key, { amount: 61 }, { 'Idempotency-Key': idem });
  assertAgentError(conflict, 409, 'idempotency_error');
  // the conflicting request reserved nothing: 40 more still fits
  assert.equal((await check(key, { amount: 40 })).body.decision, 'allow');
});

test('when idempotency_key is given in the body, then it behaves like the header', async () => {
  const { key } = await agentWithPolicy(gw, daily100);
  const idem = uniqueId('idem');
  const first = await check(key, { amount: 60, idempotency_key: idem });
  const second = await check(key, { amount: 60, idempotency_key: idem });
  assert.equal(second.body.check_id, first.body.check_id);
  assert.equal(second.headers.get('idempotent-replayed'), 'true');
  assertAgentError(await check(key, { amount: 61, idempotency_key: idem }), 409, 'idempotency_error');
  assert.equal((await check(key, { amount: 40 })).body.decision, 'allow');
  assert.equal((await check(key, { amount: '0.01' })).body.decision, 'block');
});

test('when two agents use the same Idempotency-Key, then their checks are independent', async () => {
  const a = await agentWithPolicy(gw, daily100);
  const b = await agentWithPolicy(gw, daily100);
  const idem = uniqueId('shared');
  const ra = await check(a.key, { amount: 60 }, { 'Idempotency-Key': idem });
  const rb = await check(b.key, { amount: 70 }, { 'Idempotency-Key': idem });
  assert.equal(rb.status, 200, JSON.stringify(rb.body));
  assert.notEqual(rb.body.check_id, ra.body.check_id);
  assert.equal(rb.headers.get('idempotent-replayed'), null);
  assert.equal(rb.body.agent_id, b.agentId);
});

test('when the Idempotency-Key header is longer than 255 characters, then it answers 400', async () => {
  const { key } = await agentWithPolicy(gw, cap1000);
  assertAgentError(await check(key, {}, { 'Idempotency-Key': 'k'.repeat(256) }), 400, 'invalid_request_error');
});

// ---------------------------------------------------------------------------------------------
// Simulation
// ---------------------------------------------------------------------------------------------

test('when simulate is true, then the decision is marked simulated and nothing is recorded or reserved', async () => {
  const { agentId, key } = await agentWithPolicy(gw, daily100);
  const allow = await check(key, { amount: 100, simulate: true });
  assert.equal(allow.status, 200);
  assert.equal(allow.body.decision, 'allow');
  assert.equal(allow.body.simulated, true);
  const block = await check(key, { amount: 150, simulate: true });
  assert.equal(block.body.decision, 'block');
  assert.equal(block.body.simulated, true);
  assert.equal(block.body.reason_code, 'velocity_limit');
  assert.equal((await violations(agentId)).pagination.total_count, 0);

  const real = await check(key, { amount: 100 });
  assert.equal(real.body.decision, 'allow');
  assert.equal(real.body.simulated, undefined);
  // a simulation after spending sees the spent budget but still records nothing
  const after = await check(key, { amount: 1, simulate: true });
  assert.equal(after.body.decision, 'block');
  assert.equal((await violations(agentId)).pagination.total_count, 0);
});

// ---------------------------------------------------------------------------------------------
// The violations log
// ---------------------------------------------------------------------------------------------

test('when checks block and escalate, then each lands in the violations log with its details; allows do not', async () => {
  const { agentId, policyId, key } = await agentWithPolicy(gw, [
    { rule_id: 'max', rule_type: 'max_amount', description: 'At most $100', parameters: { limit: 100, currency: 'USD' } },
    { rule_id: 'esc', rule_type: 'escalate_if', description: 'Escalate over $50', parameters: { amount_above: 50, currency: 'USD' } },
  ]);
  const allowed = await check(key, { amount: 10, counterparty: 'shop_1' });
  const escalated = await check(key, { amount: 60, counterparty: 'shop_2' });
  const blocked = await check(key, { amount: 150, counterparty: 'shop_3' });
  assert.equal(allowed.body.decision, 'allow');
  assert.equal(escalated.body.decision, 'escalate');
  assert.equal(blocked.body.decision, 'block');

  const log = await violations(agentId);
  assert.equal(log.pagination.total_count, 2);
  const ids = (log.data as Json[]).map((v) => v.check_id);
  assert.deepEqual(ids, [blocked.body.check_id, escalated.body.check_id]);
  assert.ok(!ids.includes(allowed.body.check_id));
  const [b, e] = log.data as Json[];
  assert.equal(b.decision, 'block');
  assert.equal(b.reason_code, 'max_amount');
  assert.equal(b.violated_rule_id, 'max');
  assert.equal(b.violated_rule_description, 'At most $100');
  assert.equal(b.policy_id, policyId);
  assert.equal(b.policy_version, 1);
  assert.equal(b.amount, 150);
  assert.equal(b.currency, 'USD');
  assert.equal(b.counterparty, 'shop_3');
  assert.equal(b.action_type, 'purchase');
  assert.match(b.violation_id, /^viol_/);
  assert.equal(e.decision, 'escalate');
  assert.equal(e.reason_code, 'escalate_if');
  assert.equal(e.violated_rule_id, 'esc');
  assert.equal(e.policy_version, 1);
  assert.equal(e.check_id, escalated.body.check_id);
});

// ---------------------------------------------------------------------------------------------
// Policy versions in decisions
// ---------------------------------------------------------------------------------------------

test('when a policy limit is changed, then checks report version 2 and earlier violations keep version 1', async () => {
  const { agentId, policyId, key } = await agentWithPolicy(gw, [{ rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 100, currency: 'USD' } }]);
  const before = await check(key, { amount: 150 });
  assert.equal(before.body.decision, 'block');
  assert.equal(before.body.policy_version, 1);

  const put = await gw.admin('PUT', `/policies/${policyId}`, { policy_id: policyId, name: 'test', rules: [{ rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 200, currency: 'USD' } }] });
  assert.equal(put.status, 200, JSON.stringify(put.body));
  assert.equal(put.body.version, 2);

  const now = await check(key, { amount: 150 });
  assert.equal(now.body.decision, 'allow');
  assert.equal(now.body.policy_version, 2);
  const blocked = await check(key, { amount: 250 });
  assert.equal(blocked.body.decision, 'block');
  assert.equal(blocked.body.policy_version, 2);

  const log = await violations(agentId);
  const versions = Object.fromEntries((log.data as Json[]).map((v) => [v.check_id, v.policy_version]));
  assert.equal(versions[before.body.check_id], 1);
  assert.equal(versions[blocked.body.check_id], 2);
});

test('when an agent is bound to another policy, then its very next check uses it', async () => {
  const { agentId, key } = await agentWithPolicy(gw, [{ rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 100, currency: 'USD' } }]);
  assert.equal((await check(key, { amount: 150 })).body.decision, 'block', 'the first policy, now cached');
  const looser = uniqueId('policy');
  assert.equal((await gw.admin('POST', '/policies', { policy_id: looser, rules: [{ rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 200, currency: 'USD' } }] })).status, 201);
  assert.equal((await gw.admin('PATCH', `/agents/${agentId}`, { policy_id: looser })).status, 200);
  const now = await check(key, { amount: 150 });
  assert.equal(now.body.decision, 'allow');
});

test('when an invalid policy update is refused, then checks keep using the version in force', async () => {
  const { policyId, key } = await agentWithPolicy(gw, [{ rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 100, currency: 'USD' } }]);
  const bad = await gw.admin('PUT', `/policies/${policyId}`, { policy_id: policyId, rules: [{ rule_id: 'max', rule_type: 'max_amount', parameters: { limit: -1, currency: 'USD' } }] });
  assert.equal(bad.status, 422);
  const res = await check(key, { amount: 150 });
  assert.equal(res.body.decision, 'block');
  assert.equal(res.body.policy_version, 1);
});

// ---------------------------------------------------------------------------------------------
// Metrics, health, routing
// ---------------------------------------------------------------------------------------------

async function metricsText(): Promise<string> {
  const res = await fetch(`${gw.agentUrl}/metrics`);
  assert.equal(res.status, 200);
  return res.text();
}

function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

test('when a check is blocked, then the decisions counter for that reason increases by one', async () => {
  const series = 'spendgate_decisions_total{decision="block",reason="max_amount",source="check"}';
  const { key } = await agentWithPolicy(gw, [{ rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 1, currency: 'USD' } }]);
  const before = sample(await metricsText(), series);
  const idem = uniqueId('metric');
  assert.equal((await check(key, { amount: 5 }, { 'Idempotency-Key': idem })).body.decision, 'block');
  const text = await metricsText();
  assert.ok(text.includes(series), 'the series is exported');
  const afterBlock = sample(text, series);
  assert.equal(afterBlock, before + 1);
  // a replay is not a new decision, and a simulation is not a decision at all
  await check(key, { amount: 5 }, { 'Idempotency-Key': idem });
  await check(key, { amount: 5, simulate: true });
  assert.equal(sample(await metricsText(), series), afterBlock);
});

test('when /metrics is read after a check, then the decision duration histogram is exported', async () => {
  const { key } = await agentWithPolicy(gw, cap1000);
  await check(key);
  const text = await metricsText();
  assert.match(text, /^# TYPE spendgate_decision_duration_seconds histogram$/m);
  assert.match(text, /^spendgate_decision_duration_seconds_bucket\{le="0\.001",source="check"\} \d+$/m);
  assert.ok(sample(text, 'spendgate_decision_duration_seconds_count{source="check"}') >= 1);
  assert.ok(sample(text, 'spendgate_decisions_total{decision="allow",reason="none",source="check"}') >= 1);
});

test('when /healthz and /readyz are called, then both answer 200 and readyz says ready', async () => {
  const health = await fetch(`${gw.agentUrl}/healthz`);
  assert.equal(health.status, 200);
  const ready = await fetch(`${gw.agentUrl}/readyz`);
  assert.equal(ready.status, 200);
  assert.deepEqual(await ready.json(), { status: 'ready' });
});

test('when an unknown route is requested on the agent port, then it answers 404 in the agent error shape', async () => {
  const { key } = await agentWithPolicy(gw, cap1000);
  const res = await gw.agent('GET', '/no-such-thing', key);
  assert.equal(res.status, 404);
  assert.equal(res.body.error.type, 'invalid_request_error');
  assert.equal(res.body.error.code, 'not_found');
  assert.equal(typeof res.body.error.message, 'string');
  assert.equal(res.body.error.request_id, res.headers.get('request-id'));
  const admin = await fetch(`${gw.agentUrl}/admin/v1/agents`);
  assert.equal(admin.status, 404, 'the admin API is not on the agent port');
});

test('when GET is used on /v1/checks, then it does not run a check', async () => {
  const { agentId, key } = await agentWithPolicy(gw, cap1000);
  const res = await gw.agent('GET', '/v1/checks', key);
  assert.equal(res.status, 404);
  assert.equal(res.body.error.type, 'invalid_request_error');
  assert.equal((await violations(agentId)).pagination.total_count, 0);
});
