// The kill switch (POST /admin/v1/agents/{id}/freeze): the agent's keys are refused at once at
// the check API and the Stripe mirror, every card it has — registered or only named at Stripe —
// freezes, and unfreezing the agent is explicit and leaves its cards frozen.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startFakeStripe } from '../helpers/fake-stripe.js';
import type { FakeStripe } from '../helpers/fake-stripe.js';
import { agentWithPolicy, startTestGateway } from '../helpers/gateway.js';
import type { TestGateway } from '../helpers/gateway.js';
import { isolatedDatabase } from '../helpers/isolated-db.js';
import { registeredStripeCards, STRIPE_KEY, stripeCard, until } from '../helpers/cards.js';

let db: { url: string; drop(): Promise<void> };
let gw: TestGateway;
let other: TestGateway;
let fake: FakeStripe;
before(async () => {
  db = await isolatedDatabase();
  fake = await startFakeStripe();
  const env = { DATABASE_URL: db.url, STRIPE_SECRET_KEY: STRIPE_KEY, STRIPE_API_BASE: fake.url };
  gw = await startTestGateway(env);
  // A second process on the same database: its key cache must drop the frozen agent too.
  other = await startTestGateway(env);
});
after(async () => {
  await gw.stop();
  await other.stop();
  await fake.stop();
  await db.drop();
});

const open = [{ rule_id: 'cap', rule_type: 'max_amount', parameters: { limit: 1000, currency: 'USD' } }];
const check = (g: TestGateway, key: string) => g.agent('POST', '/v1/checks', key, { action_type: 'purchase', amount: 1, currency: 'USD', counterparty: 'openai.com' });
const mirror = (g: TestGateway, key: string) => fetch(`${g.agentUrl}/v1/balance`, { headers: { authorization: `Bearer ${key}` } });

test("when an agent is frozen, then its keys fail at once at /v1/checks and the mirror in every process, and all its cards freeze", async () => {
  const { agentId, key } = await agentWithPolicy(gw, open);
  const cards = await registeredStripeCards(gw, fake, agentId, 2);
  const unregistered = await stripeCard(fake, agentId);
  // Warm both processes' key caches.
  for (const g of [gw, other]) {
    assert.equal((await check(g, key)).status, 200);
    assert.equal((await mirror(g, key)).status, 200);
  }
  const res = await gw.admin('POST', `/agents/${agentId}/freeze`, { reason: 'runaway spending loop' });
  assert.ok(res.status === 200 || res.status === 202, JSON.stringify(res.body));
  assert.equal(res.body.agent.status, 'frozen');
  assert.equal(res.body.agent.frozen_reason, 'runaway spending loop');
  assert.ok(res.body.agent.frozen_at);
  const refused = await check(gw, key);
  assert.equal(refused.status, 401);
  assert.match(refused.body.error.message, /frozen/);
  assert.equal((await mirror(gw, key)).status, 401);
  await until('the other process to refuse the key', async () => (await check(other, key)).status === 401, 2000);
  assert.equal((await mirror(other, key)).status, 401);
  for (const id of cards) assert.equal((await gw.admin('GET', `/cards/${id}`)).body.status, 'frozen');
  // The card Stripe knows by its metadata but the gateway did not is found and frozen too.
  await until('the unregistered card to be discovered and frozen at Stripe', () => fake.get(unregistered)?.status === 'inactive');
  const found = await gw.admin('GET', `/cards/${unregistered}`);
  assert.equal(found.body.source, 'discovered');
  assert.equal(found.body.status, 'frozen');
  for (const id of cards) await until(`${id} frozen at Stripe`, () => fake.get(id)?.status === 'inactive');
});

test('when a frozen agent is unfrozen, then its keys work again but its cards stay frozen until unfrozen explicitly', async () => {
  const { agentId, key } = await agentWithPolicy(gw, open);
  const [cardId] = (await registeredStripeCards(gw, fake, agentId, 1)) as [string];
  await gw.admin('POST', `/agents/${agentId}/freeze`, {});
  const early = await gw.admin('POST', `/cards/${cardId}/unfreeze`, {});
  assert.equal(early.status, 409, 'a card of a frozen agent cannot be unfrozen');
  assert.match(early.body.error.message, /unfreeze the agent first/);
  const res = await gw.admin('POST', `/agents/${agentId}/unfreeze`, {});
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(res.body.agent.status, 'active');
  assert.equal(res.body.frozen_cards, 1);
  assert.equal((await check(gw, key)).status, 200);
  assert.equal((await gw.admin('GET', `/cards/${cardId}`)).body.status, 'frozen');
  const cards = await gw.admin('POST', '/cards/unfreeze', { agent_id: agentId });
  assert.equal(cards.status, 200, JSON.stringify(cards.body));
  assert.equal(cards.body.cards[0].status, 'active');
  assert.equal(fake.get(cardId)?.status, 'active');
});

test('when an agent is frozen twice, then the second call is fine and keeps the first frozen_at', async () => {
  const { agentId } = await agentWithPolicy(gw, open);
  const first = await gw.admin('POST', `/agents/${agentId}/freeze`, {});
  const second = await gw.admin('POST', `/agents/${agentId}/freeze`, {});
  assert.equal(second.status, 200);
  assert.equal(second.body.agent.frozen_at, first.body.agent.frozen_at);
});

test('when every agent key is revoked with --all semantics, then the keys fail at once (spend api-key revoke --all)', async () => {
  const { key } = await agentWithPolicy(gw, open);
  assert.equal((await check(gw, key)).status, 200);
  const res = await gw.admin('POST', '/api-keys/revoke', { all: true });
  assert.equal(res.status, 200);
  assert.ok(res.body.revoked >= 1);
  assert.equal((await check(gw, key)).status, 401);
  await until('the other process to refuse it', async () => (await check(other, key)).status === 401, 2000);
});
