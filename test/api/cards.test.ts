// The card registry and freezing one card or an agent's cards (SPEC §7): registration reads the
// card at the processor; freeze answers with each card's outcome after the processor received
// exactly `POST /v1/issuing/cards/{id}` with `status=inactive` (Stripe) or
// `PATCH /v1/cards/{token}` with `{"state":"PAUSED"}` (Lithic).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startFakeStripe } from '../helpers/fake-stripe.js';
import type { FakeStripe } from '../helpers/fake-stripe.js';
import { startFakeLithic } from '../helpers/fake-lithic.js';
import type { FakeLithic } from '../helpers/fake-lithic.js';
import { agentWithPolicy, startTestGateway, uniqueId } from '../helpers/gateway.js';
import type { TestGateway } from '../helpers/gateway.js';
import { registeredStripeCards, STRIPE_KEY, statusUpdates, stripeCard } from '../helpers/cards.js';
import { isolatedDatabase } from '../helpers/isolated-db.js';

// A database of its own: other files' gateways run queue workers against other fakes.
let db: { url: string; drop(): Promise<void> };
let gw: TestGateway;
let fake: FakeStripe;
let lithic: FakeLithic;
before(async () => {
  db = await isolatedDatabase();
  fake = await startFakeStripe();
  lithic = await startFakeLithic();
  gw = await startTestGateway({ DATABASE_URL: db.url, STRIPE_SECRET_KEY: STRIPE_KEY, STRIPE_API_BASE: fake.url, LITHIC_API_KEY: 'lithic-test-key', LITHIC_API_BASE: lithic.url });
});
after(async () => {
  await gw.stop();
  await fake.stop();
  await lithic.stop();
  await db.drop();
});

const open = [{ rule_id: 'cap', rule_type: 'max_amount', parameters: { limit: 1000, currency: 'USD' } }];

test('when a Stripe card is registered, then it is listed with the status Stripe reported, and registering it again is harmless', async () => {
  const { agentId } = await agentWithPolicy(gw, open);
  const cardId = await stripeCard(fake, agentId);
  const created = await gw.admin('POST', '/cards', { card_id: cardId, agent_id: agentId, processor: 'stripe' });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.body.status, 'active');
  assert.equal(created.body.processor_status, 'active');
  assert.equal(created.body.confirmed, true);
  assert.equal(created.body.source, 'registered');
  assert.match(created.body.last4, /^\d{4}$/);
  const again = await gw.admin('POST', '/cards', { card_id: cardId, agent_id: agentId, processor: 'stripe' });
  assert.equal(again.status, 200);
  const one = await gw.admin('GET', `/cards/${cardId}`);
  assert.equal(one.body.agent_id, agentId);
  const listed = await gw.admin('GET', `/cards?agent_id=${agentId}`);
  assert.deepEqual(listed.body.data.map((c: { id: string }) => c.id), [cardId]);
  assert.equal(listed.body.pagination.total_count, 1);
});

test('when the card list is paged, then the cursor walks every card once and filters apply', async () => {
  const { agentId } = await agentWithPolicy(gw, open);
  const ids = await registeredStripeCards(gw, fake, agentId, 3);
  const first = await gw.admin('GET', `/cards?agent_id=${agentId}&limit=2`);
  assert.equal(first.body.data.length, 2);
  assert.equal(first.body.pagination.has_more, true);
  const second = await gw.admin('GET', `/cards?agent_id=${agentId}&limit=2&cursor=${first.body.pagination.next_cursor}`);
  assert.equal(second.body.data.length, 1);
  assert.equal(second.body.pagination.has_more, false);
  assert.deepEqual([...first.body.data, ...second.body.data].map((c: { id: string }) => c.id).sort(), [...ids].sort());
  const frozen = await gw.admin('GET', `/cards?agent_id=${agentId}&status=frozen&processor=stripe`);
  assert.equal(frozen.body.data.length, 0);
});

test('when one Stripe card is frozen, then Stripe received status=inactive for it, the answer says confirmed, and freezing again is fine', async () => {
  const { agentId } = await agentWithPolicy(gw, open);
  const [cardId] = await registeredStripeCards(gw, fake, agentId, 1);
  const at = fake.requests.length;
  const res = await gw.admin('POST', `/cards/${cardId}/freeze`, { reason: 'suspicious merchant' });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.deepEqual(statusUpdates(fake.requests.slice(at)), [`${cardId} inactive`]);
  const update = fake.requests.slice(at).find((r) => r.method === 'POST');
  assert.equal(update?.path, `/v1/issuing/cards/${cardId}`);
  assert.equal(update?.body.toString('utf8'), 'status=inactive');
  assert.equal(res.body.done, true);
  assert.deepEqual(res.body.counts, { total: 1, confirmed: 1, pending: 0, failed: 0, superseded: 0 });
  assert.equal(res.body.cards[0].outcome, 'confirmed');
  assert.equal(res.body.cards[0].status, 'frozen');
  assert.equal(res.body.cards[0].processor_status, 'frozen');
  const card = await gw.admin('GET', `/cards/${cardId}`);
  assert.equal(card.body.status, 'frozen');
  assert.equal(card.body.frozen_reason, 'suspicious merchant');
  assert.equal(card.body.confirmed, true);
  const again = await gw.admin('POST', `/cards/${cardId}/freeze`, {});
  assert.equal(again.status, 200);
  assert.equal(again.body.cards[0].outcome, 'confirmed');
  const job = await gw.admin('GET', `/cards/jobs/${res.body.job_id}`);
  assert.equal(job.body.done, true);
});

test('when a frozen Stripe card is unfrozen, then Stripe received status=active and the card is active again', async () => {
  const { agentId } = await agentWithPolicy(gw, open);
  const [cardId] = await registeredStripeCards(gw, fake, agentId, 1);
  await gw.admin('POST', `/cards/${cardId}/freeze`, {});
  const at = fake.requests.length;
  const res = await gw.admin('POST', `/cards/${cardId}/unfreeze`, {});
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.deepEqual(statusUpdates(fake.requests.slice(at)), [`${cardId} active`]);
  assert.equal(res.body.cards[0].status, 'active');
  assert.equal(res.body.cards[0].processor_status, 'active');
});

test("when an agent's cards are frozen, then each of them and no other card is frozen at Stripe", async () => {
  const { agentId } = await agentWithPolicy(gw, open);
  const other = await agentWithPolicy(gw, open);
  const ids = await registeredStripeCards(gw, fake, agentId, 3);
  const [otherCard] = await registeredStripeCards(gw, fake, other.agentId, 1);
  const at = fake.requests.length;
  const res = await gw.admin('POST', '/cards/freeze', { agent_id: agentId });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.deepEqual(statusUpdates(fake.requests.slice(at)).sort(), ids.map((id) => `${id} inactive`).sort());
  assert.equal(res.body.counts.confirmed, 3);
  assert.deepEqual(res.body.scope, { agent_id: agentId });
  assert.equal((await gw.admin('GET', `/cards/${otherCard}`)).body.status, 'active');
});

test('when a Lithic card is frozen and unfrozen, then Lithic received PATCH /v1/cards/{token} with PAUSED, then OPEN', async () => {
  const { agentId } = await agentWithPolicy(gw, open);
  const card = lithic.addCard({ memo: `Ads [agent_id=${agentId}]` });
  const token = card.token as string;
  const registered = await gw.admin('POST', '/cards', { card_id: token, agent_id: agentId, processor: 'lithic' });
  assert.equal(registered.status, 201, JSON.stringify(registered.body));
  assert.equal(registered.body.processor_status, 'active');
  const at = lithic.requests.length;
  const frozen = await gw.admin('POST', `/cards/${token}/freeze`, {});
  assert.equal(frozen.status, 200, JSON.stringify(frozen.body));
  const patches = () => lithic.requests.slice(at).filter((r) => r.method === 'PATCH');
  assert.deepEqual(patches().map((r) => [r.path, r.body]), [[`/v1/cards/${token}`, { state: 'PAUSED' }]]);
  assert.equal(patches()[0]?.authorization, 'lithic-test-key');
  assert.equal(frozen.body.cards[0].processor_status, 'frozen');
  const unfrozen = await gw.admin('POST', `/cards/${token}/unfreeze`, {});
  assert.equal(unfrozen.status, 200);
  assert.deepEqual(patches().map((r) => r.body), [{ state: 'PAUSED' }, { state: 'OPEN' }]);
});

test('when a Lithic card names another agent in its memo, then registering it to this agent is a conflict and changes nothing', async () => {
  const { agentId } = await agentWithPolicy(gw, open);
  const token = lithic.addCard({ memo: 'agent_id=someone-else' }).token as string;
  const res = await gw.admin('POST', '/cards', { card_id: token, agent_id: agentId, processor: 'lithic' });
  assert.equal(res.status, 409);
  assert.equal(res.body.error.code, 'conflict');
  assert.equal((await gw.admin('GET', `/cards/${token}`)).status, 404);
});

test('when a card is registered to one agent, then registering it to another is a conflict', async () => {
  const a = await agentWithPolicy(gw, open);
  const b = await agentWithPolicy(gw, open);
  const [cardId] = await registeredStripeCards(gw, fake, a.agentId, 1);
  const res = await gw.admin('POST', '/cards', { card_id: cardId, agent_id: b.agentId, processor: 'stripe' });
  assert.equal(res.status, 409);
  assert.equal((await gw.admin('GET', `/cards/${cardId}`)).body.agent_id, a.agentId);
});

test('when the card, agent or job does not exist, then the answer is 404 in the admin shape', async () => {
  const { agentId } = await agentWithPolicy(gw, open);
  const cases: [string, string, unknown][] = [
    ['GET', '/cards/ic_doesnotexist', undefined],
    ['POST', '/cards/ic_doesnotexist/freeze', {}],
    ['POST', '/cards/ic_doesnotexist/unfreeze', {}],
    ['POST', '/cards/freeze', { agent_id: uniqueId('nobody') }],
    ['POST', `/agents/${uniqueId('nobody')}/freeze`, {}],
    ['POST', `/agents/${uniqueId('nobody')}/unfreeze`, {}],
    ['POST', '/cards', { card_id: 'ic_whatever', agent_id: uniqueId('nobody'), processor: 'stripe' }],
    ['POST', '/cards', { card_id: 'ic_notatstripe', agent_id: agentId, processor: 'stripe' }],
    ['GET', '/cards/jobs/cjob_000000000000000000000000', undefined],
  ];
  for (const [method, path, body] of cases) {
    const res = await gw.admin(method, path, body);
    assert.equal(res.status, 404, `${method} ${path}: ${JSON.stringify(res.body)}`);
    assert.equal(res.body.error.code, 'not_found');
    assert.ok(res.body.error.message.length > 0);
    assert.ok(res.body.error.request_id.length > 0);
  }
  assert.equal((await gw.admin('GET', '/cards?agent_id=' + agentId)).body.data.length, 0);
});

test('when freeze or registration input is malformed, then the answer is a 400 naming the field, and no card changes', async () => {
  const { agentId } = await agentWithPolicy(gw, open);
  const [cardId] = await registeredStripeCards(gw, fake, agentId, 1);
  const at = fake.requests.length;
  const cases: [string, string, unknown][] = [
    ['POST', '/cards/freeze', {}],
    ['POST', '/cards/freeze', { all: true, agent_id: agentId }],
    ['POST', '/cards/freeze', { all: false }],
    ['POST', '/cards/freeze', { all: 'yes' }],
    ['POST', '/cards/freeze', { agent_id: agentId, colour: 'red' }],
    ['POST', '/cards/freeze', { agent_id: agentId, wait_ms: -1 }],
    ['POST', '/cards/freeze', { agent_id: 'has spaces' }],
    ['POST', `/cards/${cardId}/freeze`, { reason: '' }],
    ['POST', `/cards/${cardId}/freeze`, { unknown: 1 }],
    ['POST', `/cards/${cardId}/freeze?processor=visa`, {}],
    ['POST', `/agents/${agentId}/freeze`, { reason: 42 }],
    ['POST', `/agents/${agentId}/unfreeze`, { now: true }],
    ['POST', '/cards/unfreeze', { all: true }],
    ['POST', '/cards', { card_id: cardId, agent_id: agentId }],
    ['POST', '/cards', { card_id: cardId, agent_id: agentId, processor: 'marqeta' }],
    ['POST', '/cards', { card_id: 'ic_../../x', agent_id: agentId, processor: 'stripe' }],
    ['POST', '/cards', [cardId]],
    ['GET', '/cards?status=melted', undefined],
    ['GET', '/cards?limit=0', undefined],
    ['GET', '/cards?cursor=bm90LWEtY3Vyc29y', undefined],
    ['GET', '/cards/jobs/not-a-job', undefined],
  ];
  for (const [method, path, body] of cases) {
    const res = await gw.admin(method, path, body);
    assert.equal(res.status, 400, `${method} ${path} ${JSON.stringify(body)}: ${JSON.stringify(res.body)}`);
    assert.equal(res.body.error.code, 'invalid_request');
    assert.ok(res.body.error.request_id.length > 0);
  }
  const broken = await fetch(`${gw.adminUrl}/admin/v1/cards/freeze`, { method: 'POST', headers: { authorization: 'Bearer test-admin-token-0123456789', 'content-type': 'application/json' }, body: '{"all": tru' });
  assert.equal(broken.status, 400);
  assert.equal((await gw.admin('GET', `/cards/${cardId}`)).body.status, 'active');
  assert.equal((await gw.admin('GET', `/agents/${agentId}`)).body.status, 'active');
  assert.deepEqual(statusUpdates(fake.requests.slice(at)), []);
});

test('when the admin credential is missing, then freezing is refused with 401 and nothing changes', async () => {
  const { agentId } = await agentWithPolicy(gw, open);
  const [cardId] = await registeredStripeCards(gw, fake, agentId, 1);
  const res = await fetch(`${gw.adminUrl}/admin/v1/cards/${cardId}/freeze`, { method: 'POST' });
  assert.equal(res.status, 401);
  const agentKey = await gw.admin('POST', `/agents/${agentId}/api-keys`, { mode: 'test' });
  const asAgent = await fetch(`${gw.adminUrl}/admin/v1/agents/${agentId}/unfreeze`, { method: 'POST', headers: { authorization: `Bearer ${agentKey.body.key}` } });
  assert.equal(asAgent.status, 403);
  assert.equal((await gw.admin('GET', `/cards/${cardId}`)).body.status, 'active');
});

test('when an agent creates a card through the mirror, then it is in the registry before the agent has the answer, and can be frozen at once', async () => {
  const { agentId, key } = await agentWithPolicy(gw, open);
  const res = await fetch(`${gw.agentUrl}/v1/issuing/cards`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/x-www-form-urlencoded' }, body: 'currency=usd&type=virtual&status=active' });
  assert.equal(res.status, 200);
  const made = (await res.json()) as { id: string };
  const card = await gw.admin('GET', `/cards/${made.id}`);
  assert.equal(card.status, 200, JSON.stringify(card.body));
  assert.equal(card.body.agent_id, agentId);
  assert.equal(card.body.source, 'mirror');
  assert.equal(card.body.processor_status, 'active');
  const frozen = await gw.admin('POST', `/cards/${made.id}/freeze`, {});
  assert.equal(frozen.body.cards[0].outcome, 'confirmed');
  assert.equal(fake.get(made.id)?.status, 'inactive');
});
