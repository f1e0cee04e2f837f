// Bad input and hostile agents: every case gets a clear 4xx, and nothing stored is lost or changed.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createLedger } from '../../src/ledger/ledger.js';
import { compiledPolicy } from '../../src/policy/store.js';
import { agentWithPolicy, startTestGateway, uniqueId } from '../helpers/gateway.js';
import type { TestGateway } from '../helpers/gateway.js';

let gw: TestGateway;
before(async () => {
  gw = await startTestGateway();
});
after(async () => {
  await gw.stop();
});

const check = (key: string, body: Record<string, unknown>) => gw.agent('POST', '/v1/checks', key, { action_type: 'purchase', amount: 5, currency: 'USD', ...body });

test('when text carries NUL or broken Unicode, or metadata is too deep or too big, then the check is a 400 naming the field', async () => {
  const { key } = await agentWithPolicy(gw, [{ rule_id: 'cap', rule_type: 'max_amount', parameters: { limit: 100, currency: 'USD' } }]);
  let deep: Record<string, unknown> = {};
  for (let i = 0; i < 50; i++) deep = { d: deep };
  const cases: [string, Record<string, unknown>, string][] = [
    ['NUL in counterparty', { counterparty: 'a\u0000b' }, 'counterparty'],
    ['a lone surrogate in counterparty', { counterparty: 'a\ud800b' }, 'counterparty'],
    ['NUL in metadata', { metadata: { note: 'x\u0000' } }, 'metadata'],
    ['metadata nested 50 deep', { metadata: deep }, 'metadata'],
    ['metadata over 16 KB', { metadata: { blob: 'x'.repeat(20_000) } }, 'metadata'],
    ['an unknown merchant category', { merchant: { category: 'casino' } }, 'merchant.category'],
    ['a 3-letter metadata country', { metadata: { merchant_country: 'USA' } }, 'metadata.merchant_country'],
    ['a purchase date in the future', { action_type: 'refund', metadata: { purchase_date: '2030-01-01' } }, 'metadata.purchase_date'],
    ['milliseconds sent as unix seconds', { action_type: 'refund', metadata: { charge_created: 1_700_000_000_000 } }, 'metadata.charge_created'],
  ];
  for (const [name, body, field] of cases) {
    const res = await check(key, body);
    assert.equal(res.status, 400, `${name}: ${JSON.stringify(res.body)}`);
    assert.ok(JSON.stringify(res.body.error.details ?? res.body.error.message).includes(field), `${name} names ${field}: ${JSON.stringify(res.body)}`);
  }
});

test('when an action names a blocked group or a category inside it, then the blocklist blocks it', async () => {
  const { key } = await agentWithPolicy(gw, [{ rule_id: 'nogamble', rule_type: 'category_blocklist', parameters: { categories: ['gambling', 'cryptocurrency'] } }]);
  for (const merchant of [{ category: 'gambling' }, { category: 'cryptocurrency' }, { category: 'betting_casino_gambling' }, { mcc: '7995' }, { mcc: '6051' }]) {
    const res = await check(key, { merchant });
    assert.equal(res.body.decision, 'block', JSON.stringify(merchant));
    assert.equal(res.body.violated_rule_id, 'nogamble');
  }
  assert.equal((await check(key, { merchant: { category: 'computer_software_stores' } })).body.decision, 'allow');
});

test('when an allowlist names a narrow category and the action names a wider group, then it is not allowed', async () => {
  const { key } = await agentWithPolicy(gw, [{ rule_id: 'only_air', rule_type: 'category_allowlist', parameters: { categories: ['airlines_air_carriers'] } }]);
  assert.equal((await check(key, { merchant: { category: 'travel' } })).body.decision, 'block');
  assert.equal((await check(key, { merchant: { category: 'airlines_air_carriers' } })).body.decision, 'allow');
});

test('when one request in a batch is refused by the database, then the other agents in that batch still get their decisions', async () => {
  const a = await agentWithPolicy(gw, [{ rule_id: 'cap', rule_type: 'max_amount', parameters: { limit: 100, currency: 'USD' } }]);
  const b = await agentWithPolicy(gw, [{ rule_id: 'cap', rule_type: 'max_amount', parameters: { limit: 100, currency: 'USD' } }]);
  const ledger = createLedger(gw.knex);
  const input = (agent: typeof a, key: string, metadata: Record<string, unknown>) => gw.knex('agents').where({ id: agent.agentId }).first().then(async () => ({
    agentId: agent.agentId, timezone: 'UTC', policy: await compiledPolicy(gw.knex, agent.policyId, 1),
    action: { actionType: 'purchase', amount: 100, currency: 'usd' }, idempotencyKey: key, requestHash: key, metadata, now: new Date(), simulate: false,
  }));
  // PostgreSQL refuses NUL in jsonb: the poisoned job fails alone.
  const jobs = await Promise.all([input(a, 'poison', { bad: 'x\u0000' }), input(b, 'b1', {}), input(b, 'b2', {}), input(a, 'a1', {})]);
  const results = await Promise.allSettled(jobs.map((j) => ledger.check(j)));
  assert.equal(results[0]?.status, 'rejected');
  assert.deepEqual(results.slice(1).map((r) => r.status), ['fulfilled', 'fulfilled', 'fulfilled']);
  const stored = await gw.knex('decisions').whereIn('agent_id', [a.agentId, b.agentId]).select('idempotency_key');
  assert.deepEqual(stored.map((r) => r.idempotency_key).sort(), ['a1', 'b1', 'b2']);
});

test('when the same policy is created by 8 requests at once, then one wins and the others get 409, never 500', async () => {
  const policyId = uniqueId('race');
  const results = await Promise.all(Array.from({ length: 8 }, () => gw.admin('POST', '/policies', { policy_id: policyId, rules: [] })));
  const statuses = results.map((r) => r.status).sort();
  assert.deepEqual(statuses, [201, 409, 409, 409, 409, 409, 409, 409]);
  const spendMd = `## Identity\nagent_name: ${uniqueId('racer')}\nowner: o@example.com\n## Spending\nspend:\nper_transaction: 5 USD\n`;
  const applies = await Promise.all(Array.from({ length: 6 }, () => gw.admin('POST', '/policies/apply', spendMd)));
  for (const r of applies) assert.ok([200, 201].includes(r.status), JSON.stringify(r.body));
  assert.equal(applies.filter((r) => r.status === 201).length, 1, 'one new version; the rest see it unchanged');
});

test('when someone truncates the violations table, then PostgreSQL refuses', async () => {
  await assert.rejects(gw.knex.transaction(async (trx) => {
    await trx.raw('truncate violations');
  }), /append-only/);
});

test('when a per-counterparty count limit meets actions without a counterparty, then they share one bucket of their own', async () => {
  const { key } = await agentWithPolicy(gw, [{ rule_id: 'per_cp', rule_type: 'counterparty_limit', parameters: { max_count: 1, window: 'daily' } }]);
  assert.equal((await check(key, { counterparty: 'alice' })).body.decision, 'allow');
  assert.equal((await check(key, {})).body.decision, 'allow', 'no counterparty is not "every counterparty"');
  assert.equal((await check(key, {})).body.decision, 'block');
  assert.equal((await check(key, { counterparty: 'alice' })).body.decision, 'block');
  assert.equal((await check(key, { counterparty: 'bob' })).body.decision, 'allow');
});

test('when a SPEND.md drops its timezone, then re-applying puts the agent back on UTC', async () => {
  const id = uniqueId('tz');
  const file = (extra: string) => `## Identity\nagent_name: ${id}\nowner: o@example.com\n${extra}## Spending\nspend:\ndaily_limit: 5 USD\n`;
  assert.equal((await gw.admin('POST', '/policies/apply', file('timezone: Asia/Tokyo\n'))).body.agent.timezone, 'Asia/Tokyo');
  assert.equal((await gw.admin('POST', '/policies/apply', file(''))).body.agent.timezone, 'UTC');
});

test('when a SPEND.md lists a Slack webhook, then the inactive setting shows its host only', async () => {
  const text = `## Identity\nagent_name: ${uniqueId('slack')}\nowner: o@example.com\n## Notifications\nnotifications:\nslack: https://hooks.slack.com/services/T000/B000/SECRETSECRET\n`;
  const res = await gw.admin('POST', '/policies/apply', text);
  assert.equal(res.status, 201);
  assert.ok(!JSON.stringify(res.body).includes('SECRETSECRET'));
  assert.equal(res.body.inactive[0].value, 'https://hooks.slack.com/…');
});

test('when a SPEND.md uses a complex YAML key, then it is an error naming the line', async () => {
  const res = await gw.admin('POST', '/policies/apply', `## Identity\nagent_name: ${uniqueId('cx')}\nowner: o@example.com\n## Spending\nspend:\n  ? [a, b]\n  : 5 USD\n`);
  assert.equal(res.status, 422);
  assert.match(res.body.error.message, /line 6/);
});
