// The admin API over HTTP (SPEC §3, §4, §7): credentials, agents, keys, JSON policies and their
// versions, SPEND.md apply, the append-only violations log and simulations.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ADMIN_TOKEN, agentWithPolicy, startTestGateway, uniqueId } from '../helpers/gateway.js';
import type { TestGateway } from '../helpers/gateway.js';
import { seedRefundPolicy } from '../fixtures/policies.js';

let gw: TestGateway;
before(async () => {
  gw = await startTestGateway();
});
after(async () => {
  await gw.stop();
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

/** A raw request to the admin port with exactly the headers given (no admin token added). */
async function rawAdmin(method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<{ status: number; body: Json; headers: Headers }> {
  const res = await fetch(`${gw.adminUrl}/admin/v1${path}`, { method, headers, body });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, body: parsed, headers: res.headers };
}

const refundPolicy = seedRefundPolicy;

/** Fields that are details' names, for "details lists the field" assertions. */
function detailFields(body: Json): string[] {
  assert.ok(Array.isArray(body?.error?.details), `expected error.details, got ${JSON.stringify(body)}`);
  return (body.error.details as { field?: string; message?: string }[]).map((d) => `${d.field ?? ''} ${d.message ?? ''}`);
}

function assertAdminError(res: { status: number; body: Json }, status: number, code: string): void {
  assert.equal(res.status, status, JSON.stringify(res.body));
  assert.equal(res.body.error.code, code);
  assert.equal(typeof res.body.error.message, 'string');
  assert.ok(res.body.error.message.length > 0);
  assert.equal(typeof res.body.error.request_id, 'string');
  assert.ok(res.body.error.request_id.length > 0);
  assert.equal(res.body.error.type, undefined, 'admin errors do not use the agent-port shape');
}

async function checkWith(key: string, body: Record<string, unknown> = {}) {
  return gw.agent('POST', '/v1/checks', key, { action_type: 'purchase', amount: 1, currency: 'USD', ...body });
}

const open = [{ rule_id: 'cap', rule_type: 'max_amount', parameters: { limit: 1000, currency: 'USD' } }];

// ---------------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------------

test('when no credentials are sent, then the admin API answers 401 in the admin error shape with the Request-Id', async () => {
  const res = await rawAdmin('GET', '/agents');
  assertAdminError(res, 401, 'authentication_required');
  assert.deepEqual(Object.keys(res.body).sort(), ['error']);
  assert.equal(res.body.error.request_id, res.headers.get('request-id'));
});

test('when a wrong admin token is sent, then the admin API answers 401', async () => {
  const wrong = await rawAdmin('GET', '/agents', { authorization: `Bearer ${ADMIN_TOKEN}x` });
  assertAdminError(wrong, 401, 'authentication_required');
  const wrongAdminKey = await rawAdmin('GET', '/agents', { authorization: `Bearer sga_${'A'.repeat(40)}` });
  assertAdminError(wrongAdminKey, 401, 'authentication_required');
});

test('when an agent key is used on the admin API, then it is refused with 403', async () => {
  const { key } = await agentWithPolicy(gw, open);
  const bearer = await rawAdmin('GET', '/agents', { authorization: `Bearer ${key}` });
  assertAdminError(bearer, 403, 'forbidden');
  const header = await rawAdmin('GET', '/agents', { 'x-api-key': key });
  assertAdminError(header, 403, 'forbidden');
});

test('when the bootstrap admin token is sent as a bearer token, then the admin API answers', async () => {
  const res = await rawAdmin('GET', '/agents', { authorization: `Bearer ${ADMIN_TOKEN}` });
  assert.equal(res.status, 200);
  assert.ok(Array.isArray(res.body.data));
});

test('when an sga_ admin key is created, then it works until it is revoked and then gets 401', async () => {
  const created = await gw.admin('POST', '/admin-keys', { description: uniqueId('ops-key') });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.match(created.body.key, /^sga_[0-9A-Za-z]{32,}$/);
  assert.match(created.body.id, /^key_/);
  const key = created.body.key as string;

  const works = await rawAdmin('GET', '/agents', { authorization: `Bearer ${key}` });
  assert.equal(works.status, 200);
  // it can do real work, not only read
  const agentId = uniqueId('by-admin-key');
  const made = await fetch(`${gw.adminUrl}/admin/v1/agents`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ id: agentId, owner: 'ops@example.com' }),
  });
  assert.equal(made.status, 201);

  const revoked = await gw.admin('POST', `/admin-keys/${created.body.id}/revoke`);
  assert.equal(revoked.status, 200);
  assert.equal(revoked.body.status, 'revoked');
  assert.equal(revoked.body.key, undefined);

  const after = await rawAdmin('GET', '/agents', { authorization: `Bearer ${key}` });
  assertAdminError(after, 401, 'authentication_required');
});

test('when admin keys are listed, then no entry carries the key or its hash', async () => {
  const created = await gw.admin('POST', '/admin-keys', {});
  assert.equal(created.status, 201);
  const list = await gw.admin('GET', '/admin-keys');
  assert.equal(list.status, 200);
  const mine = (list.body.data as Json[]).find((k) => k.id === created.body.id);
  assert.ok(mine, 'the new admin key is listed');
  assert.equal(mine.status, 'active');
  assert.ok(String(mine.prefix).startsWith('sga_'));
  for (const entry of list.body.data as Json[]) {
    assert.equal('key' in entry, false, `admin key ${entry.id} exposes "key"`);
    assert.equal('hash' in entry, false, `admin key ${entry.id} exposes "hash"`);
  }
  assert.equal(JSON.stringify(list.body).includes(created.body.key), false);
});

// ---------------------------------------------------------------------------------------------
// Agents
// ---------------------------------------------------------------------------------------------

test('when an agent is created without a time zone, then it answers 201 with UTC and no policy', async () => {
  const id = uniqueId('agent');
  const res = await gw.admin('POST', '/agents', { id, owner: 'ops@example.com' });
  assert.equal(res.status, 201);
  assert.equal(res.body.id, id);
  assert.equal(res.body.owner, 'ops@example.com');
  assert.equal(res.body.timezone, 'UTC');
  assert.equal(res.body.policy_id, null);
  const got = await gw.admin('GET', `/agents/${id}`);
  assert.equal(got.status, 200);
  assert.equal(got.body.timezone, 'UTC');
});

test('when an agent is created with a time zone and a policy, then both are stored', async () => {
  const policyId = uniqueId('policy');
  assert.equal((await gw.admin('POST', '/policies', refundPolicy(policyId))).status, 201);
  const id = uniqueId('agent');
  const res = await gw.admin('POST', '/agents', { id, owner: 'ops@example.com', timezone: 'Europe/Berlin', policy_id: policyId });
  assert.equal(res.status, 201);
  assert.equal(res.body.timezone, 'Europe/Berlin');
  assert.equal(res.body.policy_id, policyId);
});

test('when an agent id is taken, then creating it again answers 409 and the first agent is unchanged', async () => {
  const id = uniqueId('agent');
  assert.equal((await gw.admin('POST', '/agents', { id, owner: 'first@example.com' })).status, 201);
  const again = await gw.admin('POST', '/agents', { id, owner: 'second@example.com' });
  assertAdminError(again, 409, 'conflict');
  assert.equal((await gw.admin('GET', `/agents/${id}`)).body.owner, 'first@example.com');
});

test('when an agent is created with an invalid id, then it answers 400 naming the id field', async () => {
  const res = await gw.admin('POST', '/agents', { id: 'has spaces/and slash', owner: 'ops@example.com' });
  assertAdminError(res, 400, 'invalid_request');
  assert.ok(detailFields(res.body).some((d) => d.startsWith('id ')), JSON.stringify(res.body));
});

test('when an agent is created with an unknown time zone, then it answers 400 naming timezone', async () => {
  const id = uniqueId('agent');
  const res = await gw.admin('POST', '/agents', { id, owner: 'ops@example.com', timezone: 'Mars/Olympus_Mons' });
  assertAdminError(res, 400, 'invalid_request');
  assert.ok(detailFields(res.body).some((d) => d.startsWith('timezone ')), JSON.stringify(res.body));
  assert.equal((await gw.admin('GET', `/agents/${id}`)).status, 404);
});

test('when an agent is created with an unknown policy_id, then it answers 400 naming policy_id and no agent exists', async () => {
  const id = uniqueId('agent');
  const res = await gw.admin('POST', '/agents', { id, owner: 'ops@example.com', policy_id: uniqueId('no-such-policy') });
  assertAdminError(res, 400, 'invalid_request');
  assert.ok(detailFields(res.body).some((d) => d.startsWith('policy_id ')), JSON.stringify(res.body));
  assert.equal((await gw.admin('GET', `/agents/${id}`)).status, 404);
});

test('when an agent is created with unknown fields and a missing owner, then 400 lists every field', async () => {
  const res = await gw.admin('POST', '/agents', { id: uniqueId('agent'), colour: 'blue' });
  assertAdminError(res, 400, 'invalid_request');
  const fields = detailFields(res.body);
  assert.ok(fields.some((d) => d.includes('colour')), JSON.stringify(res.body));
  assert.ok(fields.some((d) => d.startsWith('owner ')), JSON.stringify(res.body));
});

test('when an agent is patched, then owner, time zone and policy binding change', async () => {
  const id = uniqueId('agent');
  await gw.admin('POST', '/agents', { id, owner: 'old@example.com' });
  const policyId = uniqueId('policy');
  await gw.admin('POST', '/policies', refundPolicy(policyId));

  const patched = await gw.admin('PATCH', `/agents/${id}`, { owner: 'new@example.com', timezone: 'America/New_York', policy_id: policyId });
  assert.equal(patched.status, 200, JSON.stringify(patched.body));
  assert.equal(patched.body.owner, 'new@example.com');
  assert.equal(patched.body.timezone, 'America/New_York');
  assert.equal(patched.body.policy_id, policyId);

  const got = await gw.admin('GET', `/agents/${id}`);
  assert.equal(got.body.owner, 'new@example.com');
  assert.equal(got.body.timezone, 'America/New_York');
  assert.equal(got.body.policy_id, policyId);

  const unbound = await gw.admin('PATCH', `/agents/${id}`, { policy_id: null });
  assert.equal(unbound.status, 200);
  assert.equal(unbound.body.policy_id, null);
  assert.equal(unbound.body.owner, 'new@example.com', 'fields not in the patch are kept');
});

test('when a patch is invalid, then it answers 400 and the agent is unchanged', async () => {
  const id = uniqueId('agent');
  await gw.admin('POST', '/agents', { id, owner: 'ops@example.com' });
  const badZone = await gw.admin('PATCH', `/agents/${id}`, { timezone: 'Nowhere/Special' });
  assertAdminError(badZone, 400, 'invalid_request');
  const badPolicy = await gw.admin('PATCH', `/agents/${id}`, { policy_id: uniqueId('missing') });
  assertAdminError(badPolicy, 400, 'invalid_request');
  const empty = await gw.admin('PATCH', `/agents/${id}`, {});
  assertAdminError(empty, 400, 'invalid_request');
  const got = await gw.admin('GET', `/agents/${id}`);
  assert.equal(got.body.timezone, 'UTC');
  assert.equal(got.body.policy_id, null);
});

test('when an unknown agent is read or patched, then it answers 404', async () => {
  const id = uniqueId('ghost');
  assertAdminError(await gw.admin('GET', `/agents/${id}`), 404, 'not_found');
  assertAdminError(await gw.admin('PATCH', `/agents/${id}`, { owner: 'x@example.com' }), 404, 'not_found');
  assertAdminError(await gw.admin('POST', `/agents/${id}/api-keys`, { mode: 'test' }), 404, 'not_found');
});

// ---------------------------------------------------------------------------------------------
// Agent keys
// ---------------------------------------------------------------------------------------------

test('when test and live keys are created, then each has the documented format and shows the key only once', async () => {
  const id = uniqueId('agent');
  await gw.admin('POST', '/agents', { id, owner: 'ops@example.com' });
  const testKey = await gw.admin('POST', `/agents/${id}/api-keys`, { mode: 'test' });
  const liveKey = await gw.admin('POST', `/agents/${id}/api-keys`, { mode: 'live' });
  assert.equal(testKey.status, 201);
  assert.equal(liveKey.status, 201);
  assert.match(testKey.body.key, /^sg_test_[0-9A-Za-z]{32,}$/);
  assert.match(liveKey.body.key, /^sg_live_[0-9A-Za-z]{32,}$/);
  assert.equal(testKey.body.mode, 'test');
  assert.equal(liveKey.body.mode, 'live');
  for (const k of [testKey.body, liveKey.body]) {
    assert.match(k.id, /^key_/);
    assert.ok(!Number.isNaN(Date.parse(k.created_at)));
    assert.equal(k.expires_at, null);
    assert.equal('hash' in k, false);
  }

  const list = await gw.admin('GET', `/agents/${id}/api-keys`);
  assert.equal(list.status, 200);
  assert.equal(list.body.data.length, 2);
  for (const entry of list.body.data as Json[]) {
    assert.equal('key' in entry, false);
    assert.equal('hash' in entry, false);
    assert.equal(entry.status, 'active');
    assert.equal(entry.agent_id, id);
    assert.ok(typeof entry.prefix === 'string' && entry.prefix.length > 0);
  }
  const prefixes = (list.body.data as Json[]).map((e) => String(e.prefix)).sort();
  assert.ok(prefixes[0]?.startsWith('sg_live_'));
  assert.ok(prefixes[1]?.startsWith('sg_test_'));
  const text = JSON.stringify(list.body);
  assert.equal(text.includes(testKey.body.key), false);
  assert.equal(text.includes(liveKey.body.key), false);
  // nor in the global listing
  const global = await gw.admin('GET', `/api-keys?agent_id=${id}`);
  assert.equal(global.body.data.length, 2);
  assert.equal(JSON.stringify(global.body).includes(testKey.body.key), false);
});

test('when a key is created with an unknown mode or unknown fields, then it answers 400', async () => {
  const id = uniqueId('agent');
  await gw.admin('POST', '/agents', { id, owner: 'ops@example.com' });
  const badMode = await gw.admin('POST', `/agents/${id}/api-keys`, { mode: 'prod' });
  assertAdminError(badMode, 400, 'invalid_request');
  assert.ok(detailFields(badMode.body).some((d) => d.startsWith('mode ')));
  const extra = await gw.admin('POST', `/agents/${id}/api-keys`, { mode: 'test', scope: 'all' });
  assertAdminError(extra, 400, 'invalid_request');
  assert.ok(detailFields(extra.body).some((d) => d.includes('scope')));
  assert.equal((await gw.admin('GET', `/agents/${id}/api-keys`)).body.data.length, 0);
});

test('when a key is created with expires_in_days, then expires_at is that many days ahead', async () => {
  const id = uniqueId('agent');
  await gw.admin('POST', '/agents', { id, owner: 'ops@example.com' });
  const before = Date.now();
  const res = await gw.admin('POST', `/agents/${id}/api-keys`, { mode: 'test', expires_in_days: 7 });
  const afterMs = Date.now();
  assert.equal(res.status, 201);
  const expires = Date.parse(res.body.expires_at);
  const week = 7 * 86_400_000;
  assert.ok(expires >= before + week - 5_000 && expires <= afterMs + week + 5_000, `expires_at ${res.body.expires_at}`);
});

test('when an agent key is revoked, then it gets 401 at /v1/checks and is listed as revoked', async () => {
  const { agentId, key } = await agentWithPolicy(gw, open);
  assert.equal((await checkWith(key)).status, 200);
  const list = await gw.admin('GET', `/agents/${agentId}/api-keys`);
  const keyId = list.body.data[0].id as string;
  const revoked = await gw.admin('POST', `/api-keys/${keyId}/revoke`);
  assert.equal(revoked.status, 200);
  assert.equal(revoked.body.status, 'revoked');
  assert.equal(revoked.body.key, undefined);
  const denied = await checkWith(key);
  assert.equal(denied.status, 401);
  assert.equal(denied.body.error.type, 'authentication_error');
  const after = await gw.admin('GET', `/agents/${agentId}/api-keys`);
  assert.equal(after.body.data[0].status, 'revoked');
});

test('when a key is rotated with grace_hours 0, then the old key fails at once and the new key works', async () => {
  const { agentId, key } = await agentWithPolicy(gw, open);
  const keyId = (await gw.admin('GET', `/agents/${agentId}/api-keys`)).body.data[0].id as string;
  const rotated = await gw.admin('POST', `/api-keys/${keyId}/rotate`, { grace_hours: 0 });
  assert.equal(rotated.status, 201, JSON.stringify(rotated.body));
  assert.match(rotated.body.key, /^sg_test_[0-9A-Za-z]{32,}$/);
  assert.notEqual(rotated.body.key, key);
  assert.notEqual(rotated.body.id, keyId);
  assert.equal(rotated.body.previous.id, keyId);
  assert.equal(rotated.body.previous.key, undefined);
  assert.equal((await checkWith(key)).status, 401);
  const fresh = await checkWith(rotated.body.key);
  assert.equal(fresh.status, 200);
  assert.equal(fresh.body.agent_id, agentId);
});

test('when a key is rotated with the default grace period, then old and new keys both work for now', async () => {
  const { agentId, key } = await agentWithPolicy(gw, open);
  const keyId = (await gw.admin('GET', `/agents/${agentId}/api-keys`)).body.data[0].id as string;
  const rotated = await gw.admin('POST', `/api-keys/${keyId}/rotate`, {});
  assert.equal(rotated.status, 201);
  assert.equal((await checkWith(key)).status, 200);
  assert.equal((await checkWith(rotated.body.key)).status, 200);
  // the old key now has an expiry about a day ahead
  const expires = Date.parse(rotated.body.previous.expires_at);
  assert.ok(expires > Date.now() + 23 * 3_600_000 && expires < Date.now() + 25 * 3_600_000, rotated.body.previous.expires_at);
  assert.equal(rotated.body.mode, 'test');
});

test('when a revoked key is rotated, then it answers 409', async () => {
  const { agentId } = await agentWithPolicy(gw, open);
  const keyId = (await gw.admin('GET', `/agents/${agentId}/api-keys`)).body.data[0].id as string;
  await gw.admin('POST', `/api-keys/${keyId}/revoke`);
  assertAdminError(await gw.admin('POST', `/api-keys/${keyId}/rotate`, { grace_hours: 0 }), 409, 'conflict');
});

test('when an unknown key is revoked or rotated, then it answers 404', async () => {
  assertAdminError(await gw.admin('POST', `/api-keys/key_${uniqueId('none')}/revoke`), 404, 'not_found');
  assertAdminError(await gw.admin('POST', `/api-keys/key_${uniqueId('none')}/rotate`, {}), 404, 'not_found');
});

test("when keys are revoked with {agent_id}, then only that agent's keys stop working", async () => {
  const target = await agentWithPolicy(gw, open);
  const second = await gw.admin('POST', `/agents/${target.agentId}/api-keys`, { mode: 'live' });
  const bystander = await agentWithPolicy(gw, open);

  const res = await gw.admin('POST', '/api-keys/revoke', { agent_id: target.agentId });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(res.body.revoked, 2);
  assert.ok((res.body.data as Json[]).every((k) => k.agent_id === target.agentId && k.status === 'revoked'));

  assert.equal((await checkWith(target.key)).status, 401);
  assert.equal((await checkWith(second.body.key)).status, 401);
  assert.equal((await checkWith(bystander.key)).status, 200);
  const bystanderKeys = await gw.admin('GET', `/agents/${bystander.agentId}/api-keys`);
  assert.equal(bystanderKeys.body.data[0].status, 'active');
});

test('when /api-keys/revoke gets an empty body or both selectors, then it answers 400 and revokes nothing', async () => {
  const { key } = await agentWithPolicy(gw, open);
  assertAdminError(await gw.admin('POST', '/api-keys/revoke', {}), 400, 'invalid_request');
  assertAdminError(await gw.admin('POST', '/api-keys/revoke'), 400, 'invalid_request');
  assertAdminError(await gw.admin('POST', '/api-keys/revoke', { all: false }), 400, 'invalid_request');
  assert.equal((await checkWith(key)).status, 200);
});

test('when keys are revoked for an unknown agent, then it answers 404', async () => {
  assertAdminError(await gw.admin('POST', '/api-keys/revoke', { agent_id: uniqueId('ghost') }), 404, 'not_found');
});

// ---------------------------------------------------------------------------------------------
// JSON policies and versions
// ---------------------------------------------------------------------------------------------

test('when the seed-002 policy is posted, then it is stored as version 1 and a second POST answers 409', async () => {
  const policyId = uniqueId('my_refund_policy');
  const created = await gw.admin('POST', '/policies', refundPolicy(policyId));
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.body.policy_id, policyId);
  assert.equal(created.body.name, 'My Refund Policy');
  assert.equal(created.body.description, 'Controls AI agent refund authorization');
  assert.equal(created.body.version, 1);
  assert.deepEqual(created.body.rules.map((r: Json) => r.rule_id), ['r1', 'r2', 'r3']);
  assert.ok(!Number.isNaN(Date.parse(created.body.created_at)));
  assert.ok(!Number.isNaN(Date.parse(created.body.updated_at)));

  const again = await gw.admin('POST', '/policies', refundPolicy(policyId));
  assertAdminError(again, 409, 'conflict');
  const got = await gw.admin('GET', `/policies/${policyId}`);
  assert.equal(got.body.version, 1);
});

test('when a policy is changed with PUT, then it becomes version 2 and the history lists 2 then 1', async () => {
  const policyId = uniqueId('policy');
  await gw.admin('POST', '/policies', refundPolicy(policyId));
  const changed = refundPolicy(policyId);
  changed.rules[0] = { rule_id: 'r1', rule_type: 'max_amount', description: 'Block refunds over $400', parameters: { limit: 400, currency: 'USD' } };
  const put = await gw.admin('PUT', `/policies/${policyId}`, changed);
  assert.equal(put.status, 200, JSON.stringify(put.body));
  assert.equal(put.body.version, 2);
  assert.equal(put.body.rules[0].parameters.limit, 400);

  const current = await gw.admin('GET', `/policies/${policyId}`);
  assert.equal(current.body.version, 2);
  assert.equal(current.body.rules[0].parameters.limit, 400);

  const versions = await gw.admin('GET', `/policies/${policyId}/versions`);
  assert.equal(versions.status, 200);
  assert.deepEqual(versions.body.data.map((v: Json) => v.version), [2, 1]);

  const v1 = await gw.admin('GET', `/policies/${policyId}/versions/1`);
  assert.equal(v1.status, 200);
  assert.equal(v1.body.version, 1);
  assert.equal(v1.body.rules[0].parameters.limit, 500);
  assert.equal(v1.body.rules[0].description, 'Block refunds over $500');
});

test('when a PUT body omits policy_id, then the URL names the policy; a mismatching policy_id is refused', async () => {
  const policyId = uniqueId('policy');
  await gw.admin('POST', '/policies', refundPolicy(policyId));
  const { policy_id: _omit, ...withoutId } = refundPolicy(policyId);
  const put = await gw.admin('PUT', `/policies/${policyId}`, withoutId);
  assert.equal(put.status, 200, JSON.stringify(put.body));
  assert.equal(put.body.version, 2);
  const mismatch = await gw.admin('PUT', `/policies/${policyId}`, refundPolicy(uniqueId('other')));
  assert.ok(mismatch.status === 400 || mismatch.status === 422, JSON.stringify(mismatch.body));
  assert.equal((await gw.admin('GET', `/policies/${policyId}`)).body.version, 2);
});

test('when an invalid PUT is sent, then it answers 422 invalid_policy with details and the version in force is kept', async () => {
  const policyId = uniqueId('policy');
  await gw.admin('POST', '/policies', refundPolicy(policyId));
  const v2 = refundPolicy(policyId);
  v2.rules[0] = { rule_id: 'r1', rule_type: 'max_amount', description: 'Block refunds over $400', parameters: { limit: 400, currency: 'USD' } };
  assert.equal((await gw.admin('PUT', `/policies/${policyId}`, v2)).body.version, 2);

  const invalid = [
    { label: 'unknown rule_type', rule: { rule_id: 'r1', rule_type: 'max_amout', parameters: { limit: 10, currency: 'USD' } }, field: 'rules[0].rule_type' },
    { label: 'negative limit', rule: { rule_id: 'r1', rule_type: 'max_amount', parameters: { limit: -5, currency: 'USD' } }, field: 'rules[0].parameters.limit' },
    { label: 'unknown parameter key', rule: { rule_id: 'r1', rule_type: 'max_amount', parameters: { limit: 10, currency: 'USD', limt: 5 } }, field: 'rules[0].parameters.limt' },
  ];
  for (const { label, rule, field } of invalid) {
    const res = await gw.admin('PUT', `/policies/${policyId}`, { policy_id: policyId, name: 'broken', rules: [rule] });
    assertAdminError(res, 422, 'invalid_policy');
    assert.ok(detailFields(res.body).some((d) => d.startsWith(`${field} `)), `${label}: ${JSON.stringify(res.body)}`);
  }

  const current = await gw.admin('GET', `/policies/${policyId}`);
  assert.equal(current.body.version, 2);
  assert.equal(current.body.name, 'My Refund Policy');
  assert.equal(current.body.rules.length, 3);
  assert.equal(current.body.rules[0].parameters.limit, 400);
  assert.deepEqual((await gw.admin('GET', `/policies/${policyId}/versions`)).body.data.map((v: Json) => v.version), [2, 1]);
});

test('when an invalid policy is posted, then it answers 422 listing every problem and nothing is stored', async () => {
  const policyId = uniqueId('policy');
  const res = await gw.admin('POST', '/policies', {
    policy_id: policyId,
    rules: [
      { rule_id: 'a', rule_type: 'velocity_limit', parameters: { limit: 100, currency: 'USD', window: 'fortnightly' } },
      { rule_id: 'b', rule_type: 'max_amount', parameters: { limit: 10, currency: 'XYZ' } },
    ],
  });
  assertAdminError(res, 422, 'invalid_policy');
  const fields = detailFields(res.body);
  assert.ok(fields.some((d) => d.startsWith('rules[0].parameters.window ')), JSON.stringify(res.body));
  assert.ok(fields.some((d) => d.startsWith('rules[1].parameters.currency ')), JSON.stringify(res.body));
  assertAdminError(await gw.admin('GET', `/policies/${policyId}`), 404, 'not_found');
});

test('when an unknown policy is read, changed or its versions listed, then it answers 404', async () => {
  const policyId = uniqueId('nope');
  assertAdminError(await gw.admin('GET', `/policies/${policyId}`), 404, 'not_found');
  assertAdminError(await gw.admin('GET', `/policies/${policyId}/versions`), 404, 'not_found');
  assertAdminError(await gw.admin('GET', `/policies/${policyId}/versions/1`), 404, 'not_found');
  assertAdminError(await gw.admin('PUT', `/policies/${policyId}`, refundPolicy(policyId)), 404, 'not_found');
  const existing = uniqueId('policy');
  await gw.admin('POST', '/policies', refundPolicy(existing));
  assertAdminError(await gw.admin('GET', `/policies/${existing}/versions/2`), 404, 'not_found');
  assertAdminError(await gw.admin('GET', `/policies/${existing}/versions/abc`), 404, 'not_found');
});

// ---------------------------------------------------------------------------------------------
// SPEND.md apply
// ---------------------------------------------------------------------------------------------

function spendMd(agent: string, spending: string[] = ['per_transaction: 10 USD', 'daily_limit: 25 USD'], more: string[] = []): string {
  return ['# SPEND.md', '## Identity', `agent_name: ${agent}`, 'owner: ops@example.com', '## Spending', 'spend:', ...spending, ...more, ''].join('\n');
}

test('when a SPEND.md is applied, then its agent is created with the compiled policy bound', async () => {
  const agentId = uniqueId('md-agent');
  const res = await gw.admin('POST', '/policies/apply', spendMd(agentId));
  assert.equal(res.status, 201, JSON.stringify(res.body));
  assert.equal(res.body.unchanged, false);
  assert.equal(res.body.agent.id, agentId);
  assert.equal(res.body.agent.owner, 'ops@example.com');
  assert.equal(res.body.policy.policy_id, agentId);
  assert.equal(res.body.policy.version, 1);
  assert.equal(res.body.policy.format, 'spend_md');
  const types = (res.body.policy.rules as Json[]).map((r) => r.rule_type).sort();
  assert.deepEqual(types, ['max_amount', 'velocity_limit']);

  const agent = await gw.admin('GET', `/agents/${agentId}`);
  assert.equal(agent.status, 200);
  assert.equal(agent.body.policy_id, agentId);
  assert.equal(agent.body.timezone, 'UTC');

  // the bound policy is the one enforced
  const key = (await gw.admin('POST', `/agents/${agentId}/api-keys`, { mode: 'test' })).body.key as string;
  assert.equal((await checkWith(key, { amount: 10 })).body.decision, 'allow');
  const over = await checkWith(key, { amount: '10.01' });
  assert.equal(over.body.decision, 'block');
  assert.equal(over.body.reason_code, 'max_amount');
});

test('when the identical SPEND.md is applied again, then it answers 200 unchanged with the same version', async () => {
  const agentId = uniqueId('md-agent');
  const text = spendMd(agentId);
  const first = await gw.admin('POST', '/policies/apply', text);
  assert.equal(first.status, 201);
  const again = await gw.admin('POST', '/policies/apply', text);
  assert.equal(again.status, 200, JSON.stringify(again.body));
  assert.equal(again.body.unchanged, true);
  assert.equal(again.body.policy.version, first.body.policy.version);
  assert.deepEqual((await gw.admin('GET', `/policies/${agentId}/versions`)).body.data.map((v: Json) => v.version), [1]);
});

test('when a changed SPEND.md is applied, then a new version is made and bound', async () => {
  const agentId = uniqueId('md-agent');
  await gw.admin('POST', '/policies/apply', spendMd(agentId));
  const changed = await gw.admin('POST', '/policies/apply', spendMd(agentId, ['per_transaction: 20 USD', 'daily_limit: 25 USD']));
  assert.equal(changed.status, 201, JSON.stringify(changed.body));
  assert.equal(changed.body.unchanged, false);
  assert.equal(changed.body.policy.version, 2);
  const max = (changed.body.policy.rules as Json[]).find((r) => r.rule_type === 'max_amount');
  assert.equal(Number(max.parameters.limit), 20);
  assert.equal((await gw.admin('GET', `/policies/${agentId}`)).body.version, 2);
  assert.equal((await gw.admin('GET', `/agents/${agentId}`)).body.policy_id, agentId);
});

test('when a SPEND.md has a bad value, then it answers 422 naming the line and key, and nothing is stored', async () => {
  const agentId = uniqueId('md-bad');
  // line 1 "# SPEND.md", 2 "## Identity", 3 agent_name, 4 owner, 5 "## Spending", 6 "spend:", 7, 8
  const text = spendMd(agentId, ['per_transaction: 10 USD', 'daily_limit: lots USD']);
  assert.equal(text.split('\n')[7], 'daily_limit: lots USD');
  const res = await gw.admin('POST', '/policies/apply', text);
  assertAdminError(res, 422, 'invalid_policy');
  assert.match(res.body.error.message, /line 8\b/);
  assert.match(res.body.error.message, /SPEND\.md/);
  assert.match(res.body.error.message, /spend\.daily_limit/);
  const details = res.body.error.details as Json[];
  assert.ok(Array.isArray(details) && details.length >= 1);
  const issue = details.find((d) => d.key === 'spend.daily_limit');
  assert.ok(issue, JSON.stringify(details));
  assert.equal(issue.line, 8);
  assert.equal(typeof issue.message, 'string');
  assert.ok(issue.message.length > 0);
  assertAdminError(await gw.admin('GET', `/agents/${agentId}`), 404, 'not_found');
  assertAdminError(await gw.admin('GET', `/policies/${agentId}`), 404, 'not_found');
});

test('when a SPEND.md has a misspelt key, then the error points at its line', async () => {
  const agentId = uniqueId('md-typo');
  const text = spendMd(agentId, ['per_transaction: 10 USD', 'daily_limit: 25 USD', 'montly_limit: 100 USD']);
  assert.equal(text.split('\n')[8], 'montly_limit: 100 USD');
  const res = await gw.admin('POST', '/policies/apply', text);
  assertAdminError(res, 422, 'invalid_policy');
  assert.match(res.body.error.message, /line 9\b/);
  const issue = (res.body.error.details as Json[]).find((d) => d.line === 9);
  assert.ok(issue, JSON.stringify(res.body.error.details));
  assert.match(String(issue.key), /montly_limit/);
});

test('when the SPEND.md is applied with ?file=, then errors name that file', async () => {
  const res = await gw.admin('POST', '/policies/apply?file=agents/buyer.SPEND.md', spendMd(uniqueId('md-file'), ['per_transaction: 10 GBPX']));
  assertAdminError(res, 422, 'invalid_policy');
  assert.match(res.body.error.message, /^agents\/buyer\.SPEND\.md: line 7\b/);
});

test('when a SPEND.md names its own policy_id, then that policy is created and bound to the agent', async () => {
  const agentId = uniqueId('md-agent');
  const policyId = uniqueId('md-policy');
  const text = ['# SPEND.md', '## Identity', `agent_name: ${agentId}`, 'owner: ops@example.com', `policy_id: ${policyId}`, 'timezone: Asia/Tokyo', '## Spending', 'spend:', 'per_transaction: 10 USD', ''].join('\n');
  const res = await gw.admin('POST', '/policies/apply', text);
  assert.equal(res.status, 201, JSON.stringify(res.body));
  assert.equal(res.body.policy.policy_id, policyId);
  const agent = await gw.admin('GET', `/agents/${agentId}`);
  assert.equal(agent.body.policy_id, policyId);
  assert.equal(agent.body.timezone, 'Asia/Tokyo');
  assertAdminError(await gw.admin('GET', `/policies/${agentId}`), 404, 'not_found');
});

test('when a bad SPEND.md is applied to an existing agent, then its version in force is kept', async () => {
  const agentId = uniqueId('md-keep');
  await gw.admin('POST', '/policies/apply', spendMd(agentId));
  const res = await gw.admin('POST', '/policies/apply', spendMd(agentId, ['per_transaction: -5 USD']));
  assertAdminError(res, 422, 'invalid_policy');
  const current = await gw.admin('GET', `/policies/${agentId}`);
  assert.equal(current.body.version, 1);
  const max = (current.body.rules as Json[]).find((r) => r.rule_type === 'max_amount');
  assert.equal(Number(max.parameters.limit), 10);
});

test('when a SPEND.md asks for an IP allowlist, then apply answers 422 unenforced_controls and stores nothing', async () => {
  const agentId = uniqueId('md-ip');
  const text = spendMd(agentId, ['per_transaction: 10 USD'], ['## Security', 'security:', '  ip_allowlist:', '    - 10.0.0.0/8']);
  const res = await gw.admin('POST', '/policies/apply', text);
  assertAdminError(res, 422, 'unenforced_controls');
  assert.match(res.body.error.message, /security\.ip_allowlist/);
  const details = res.body.error.details as Json[];
  const entry = details.find((d) => d.key === 'security.ip_allowlist');
  assert.ok(entry, JSON.stringify(details));
  assert.equal(entry.line, 10);
  assertAdminError(await gw.admin('GET', `/agents/${agentId}`), 404, 'not_found');
  assertAdminError(await gw.admin('GET', `/policies/${agentId}`), 404, 'not_found');
});

test('when the IP allowlist is applied with allow_unenforced=true, then it is stored and listed as not enforced', async () => {
  const agentId = uniqueId('md-ip-ok');
  const text = spendMd(agentId, ['per_transaction: 10 USD'], ['## Security', 'security:', '  ip_allowlist:', '    - 10.0.0.0/8']);
  const res = await gw.admin('POST', '/policies/apply?allow_unenforced=true', text);
  assert.equal(res.status, 201, JSON.stringify(res.body));
  const keys = (res.body.not_enforced as Json[]).map((s) => s.key);
  assert.deepEqual(keys, ['security.ip_allowlist']);
  assert.equal(res.body.not_enforced[0].line, 10);
  assert.equal((await gw.admin('GET', `/agents/${agentId}`)).body.policy_id, agentId);
  const stored = await gw.admin('GET', `/policies/${agentId}`);
  assert.deepEqual((stored.body.unenforced as Json[]).map((s) => s.key), ['security.ip_allowlist']);
});

test('when a SPEND.md has notification settings, then they are listed as inactive and the apply succeeds', async () => {
  const agentId = uniqueId('md-notify');
  const text = spendMd(agentId, ['per_transaction: 10 USD'], ['## Notifications', 'notifications:', '  email: ops@example.com', '  events:', '    - limit.exceeded']);
  const res = await gw.admin('POST', '/policies/apply', text);
  assert.equal(res.status, 201, JSON.stringify(res.body));
  const inactive = (res.body.inactive as Json[]).map((s) => s.key).sort();
  assert.deepEqual(inactive, ['notifications.email', 'notifications.events']);
  assert.deepEqual(res.body.not_enforced, []);
});

test('when /policies/apply gets a JSON body, then it answers 415 and stores nothing', async () => {
  const agentId = uniqueId('md-json');
  const res = await gw.admin('POST', '/policies/apply', { agent_name: agentId, owner: 'ops@example.com' });
  assertAdminError(res, 415, 'unsupported_media_type');
  assertAdminError(await gw.admin('GET', `/agents/${agentId}`), 404, 'not_found');
});

// ---------------------------------------------------------------------------------------------
// Violations
// ---------------------------------------------------------------------------------------------

const mixedRules = [
  { rule_id: 'cur', rule_type: 'currency_allowlist', description: 'USD only', parameters: { currencies: ['USD'] } },
  { rule_id: 'max', rule_type: 'max_amount', description: 'At most $100', parameters: { limit: 100, currency: 'USD' } },
  { rule_id: 'esc', rule_type: 'escalate_if', description: 'Escalate over $50', parameters: { amount_above: 50, currency: 'USD' } },
];

test('when violations are filtered by agent, decision and reason_code, then only matching entries come back', async () => {
  const { agentId, key } = await agentWithPolicy(gw, mixedRules);
  const other = await agentWithPolicy(gw, mixedRules);
  const allow = await checkWith(key, { amount: 10 });
  const block = await checkWith(key, { amount: 150 });
  const escalate = await checkWith(key, { amount: 60 });
  const currency = await checkWith(key, { amount: 10, currency: 'EUR' });
  assert.equal(allow.body.decision, 'allow');
  assert.equal(block.body.reason_code, 'max_amount');
  assert.equal(escalate.body.decision, 'escalate');
  assert.equal(currency.body.reason_code, 'currency_allowlist');
  await checkWith(other.key, { amount: 150 });

  const all = await gw.admin('GET', `/violations?agent_id=${agentId}`);
  assert.equal(all.status, 200);
  assert.equal(all.body.pagination.total_count, 3);
  assert.deepEqual(all.body.data.map((v: Json) => v.check_id), [currency.body.check_id, escalate.body.check_id, block.body.check_id]);
  assert.ok((all.body.data as Json[]).every((v) => v.agent_id === agentId));

  const escalations = await gw.admin('GET', `/violations?agent_id=${agentId}&decision=escalate`);
  assert.deepEqual(escalations.body.data.map((v: Json) => v.check_id), [escalate.body.check_id]);
  assert.equal(escalations.body.pagination.total_count, 1);

  const blocks = await gw.admin('GET', `/violations?agent_id=${agentId}&decision=block`);
  assert.deepEqual(blocks.body.data.map((v: Json) => v.check_id), [currency.body.check_id, block.body.check_id]);

  const byReason = await gw.admin('GET', `/violations?agent_id=${agentId}&reason_code=currency_allowlist`);
  assert.deepEqual(byReason.body.data.map((v: Json) => v.check_id), [currency.body.check_id]);
  assert.equal(byReason.body.data[0].violated_rule_id, 'cur');
  assert.equal(byReason.body.data[0].currency, 'EUR');

  const badDecision = await gw.admin('GET', `/violations?agent_id=${agentId}&decision=allow`);
  assertAdminError(badDecision, 400, 'invalid_request');
});

test('when 7 violations are paged with limit=3, then pages of 3, 3 and 1 come back newest first without duplicates', async () => {
  const { agentId, key } = await agentWithPolicy(gw, [{ rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 1, currency: 'USD' } }]);
  const checkIds: string[] = [];
  for (let i = 0; i < 7; i++) {
    const res = await checkWith(key, { amount: 2 + i });
    assert.equal(res.body.decision, 'block');
    checkIds.push(res.body.check_id);
  }
  const newestFirst = [...checkIds].reverse();

  const pages: Json[] = [];
  let cursor: string | null = null;
  do {
    const path: string = `/violations?agent_id=${agentId}&limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const page = await gw.admin('GET', path);
    assert.equal(page.status, 200, JSON.stringify(page.body));
    pages.push(page.body);
    cursor = page.body.pagination.next_cursor;
  } while (cursor && pages.length < 5);

  assert.deepEqual(pages.map((p) => p.data.length), [3, 3, 1]);
  assert.deepEqual(pages.map((p) => p.pagination.has_more), [true, true, false]);
  assert.ok(typeof pages[0].pagination.next_cursor === 'string' && pages[0].pagination.next_cursor.length > 0);
  assert.ok(typeof pages[1].pagination.next_cursor === 'string');
  assert.equal(pages[2].pagination.next_cursor, null);
  assert.deepEqual(pages.map((p) => p.pagination.total_count), [7, 7, 7]);
  const seen = pages.flatMap((p) => (p.data as Json[]).map((v) => v.check_id));
  assert.equal(new Set(seen).size, 7);
  assert.deepEqual(seen, newestFirst);
  const amounts = pages.flatMap((p) => (p.data as Json[]).map((v) => v.amount));
  assert.deepEqual(amounts, [8, 7, 6, 5, 4, 3, 2]);
});

test('when a cursor is not one the API returned, then it answers 400', async () => {
  const res = await gw.admin('GET', '/violations?cursor=not-a-cursor');
  assertAdminError(res, 400, 'invalid_request');
  assert.ok(detailFields(res.body).some((d) => d.startsWith('cursor ')));
  assertAdminError(await gw.admin('GET', '/violations?limit=0'), 400, 'invalid_request');
  assertAdminError(await gw.admin('GET', '/violations?limit=1000'), 400, 'invalid_request');
});

test('when a violation is edited or deleted through the API, then it answers 403 and the entry is unchanged', async () => {
  const { agentId, key } = await agentWithPolicy(gw, [{ rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 1, currency: 'USD' } }]);
  await checkWith(key, { amount: 5 });
  const before = await gw.admin('GET', `/violations?agent_id=${agentId}`);
  assert.equal(before.body.data.length, 1);
  const entry = before.body.data[0];

  const attempts: [string, string, unknown][] = [
    ['PUT', `/violations/${entry.violation_id}`, { decision: 'allow' }],
    ['PATCH', `/violations/${entry.violation_id}`, { decision: 'allow' }],
    ['DELETE', `/violations/${entry.violation_id}`, undefined],
    ['POST', `/violations/${entry.violation_id}`, { decision: 'allow' }],
    ['POST', '/violations', { agent_id: agentId, decision: 'block' }],
    ['PUT', '/violations', { data: [] }],
    ['DELETE', '/violations', undefined],
    ['DELETE', `/violations?agent_id=${agentId}`, undefined],
  ];
  for (const [method, path, body] of attempts) {
    const res = await gw.admin(method, path, body);
    assert.equal(res.status, 403, `${method} ${path}: ${JSON.stringify(res.body)}`);
    assert.equal(res.body.error.code, 'forbidden');
  }
  const after = await gw.admin('GET', `/violations?agent_id=${agentId}`);
  assert.deepEqual(after.body, before.body);
});

// ---------------------------------------------------------------------------------------------
// Simulations
// ---------------------------------------------------------------------------------------------

test('when a simulation is run, then it returns a simulated decision, records no violation and uses no budget', async () => {
  const { agentId, key } = await agentWithPolicy(gw, [{ rule_id: 'daily', rule_type: 'velocity_limit', description: '$100 a day', parameters: { limit: 100, currency: 'USD', window: 'daily' } }]);
  const allowed = await gw.admin('POST', '/simulations', { agent_id: agentId, action_type: 'purchase', amount: 100, currency: 'USD' });
  assert.equal(allowed.status, 200, JSON.stringify(allowed.body));
  assert.equal(allowed.body.simulated, true);
  assert.equal(allowed.body.decision, 'allow');
  assert.equal(allowed.body.policy_version, 1);

  const blocked = await gw.admin('POST', '/simulations', { agent_id: agentId, action_type: 'purchase', amount: 150, currency: 'USD' });
  assert.equal(blocked.status, 200);
  assert.equal(blocked.body.simulated, true);
  assert.equal(blocked.body.decision, 'block');
  assert.equal(blocked.body.reason_code, 'velocity_limit');
  assert.equal(blocked.body.violated_rule_id, 'daily');

  const log = await gw.admin('GET', `/violations?agent_id=${agentId}`);
  assert.equal(log.body.pagination.total_count, 0);

  // the full daily amount is still available
  const real = await checkWith(key, { amount: 100 });
  assert.equal(real.body.decision, 'allow');
  assert.equal(real.body.simulated, undefined);
  assert.equal((await checkWith(key, { amount: '0.01' })).body.decision, 'block');
});

test('when a simulation names an unknown agent or omits fields, then it answers 404 or 400', async () => {
  assertAdminError(await gw.admin('POST', '/simulations', { agent_id: uniqueId('ghost'), action_type: 'purchase', amount: 1, currency: 'USD' }), 404, 'not_found');
  const missing = await gw.admin('POST', '/simulations', { action_type: 'purchase', amount: 1 });
  assertAdminError(missing, 400, 'invalid_request');
  const fields = detailFields(missing.body);
  assert.ok(fields.some((d) => d.startsWith('agent_id ')), JSON.stringify(missing.body));
  assert.ok(fields.some((d) => d.startsWith('currency ')), JSON.stringify(missing.body));
});

// ---------------------------------------------------------------------------------------------
// Routing and bodies
// ---------------------------------------------------------------------------------------------

test('when an unknown admin route is requested, then it answers 404 in the admin error shape', async () => {
  const res = await gw.admin('GET', '/no-such-thing');
  assertAdminError(res, 404, 'not_found');
  const post = await gw.admin('POST', '/agents/x/y/z', {});
  assertAdminError(post, 404, 'not_found');
});

test('when the admin API gets malformed JSON, then it answers 400 in the admin error shape', async () => {
  const res = await rawAdmin('POST', '/agents', { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, '{"id": "x", owner: }');
  assertAdminError(res, 400, 'invalid_request');
  assert.equal(res.body.error.request_id, res.headers.get('request-id'));
});
