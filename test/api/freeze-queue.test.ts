// Freezing when the processor misbehaves, the kill switch, and the reconciliation job, on a
// database of their own (freeze-all touches every card; the queue is shared by every process).
// The local freeze is committed before the answer; the queue retries until Stripe confirms.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startFakeStripe } from '../helpers/fake-stripe.js';
import type { FakeStripe } from '../helpers/fake-stripe.js';
import { agentWithPolicy, startTestGateway } from '../helpers/gateway.js';
import type { TestGateway } from '../helpers/gateway.js';
import { isolatedDatabase } from '../helpers/isolated-db.js';
import { registeredStripeCards, STRIPE_KEY, statusUpdates, until } from '../helpers/cards.js';
import { connect } from '../../src/db/database.js';
import type { Knex } from 'knex';
import { signStripe, stripeAuthorizationRequest } from '../helpers/stripe-events.js';

let gw: TestGateway;
let fake: FakeStripe;
let db: { url: string; drop(): Promise<void> };
let knex: Knex;
const WEBHOOK_SECRET = 'whsec_freezequeue';
const env = () => ({ STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET, DATABASE_URL: db.url, STRIPE_SECRET_KEY: STRIPE_KEY, STRIPE_API_BASE: fake.url, FREEZE_RETRY_BASE_MS: '50', FREEZE_RETRY_MAX_MS: '200' });
before(async () => {
  db = await isolatedDatabase();
  fake = await startFakeStripe();
  gw = await startTestGateway(env());
  knex = connect(db.url, 2);
});
after(async () => {
  await gw.stop();
  await knex.destroy();
  await fake.stop();
  await db.drop();
});

const open = [{ rule_id: 'cap', rule_type: 'max_amount', parameters: { limit: 1000, currency: 'USD' } }];
const serverError = { status: 500, body: { error: { type: 'api_error', message: 'Something went wrong on our end' } } };

async function cardStatuses(ids: string[]): Promise<string[]> {
  const rows = await knex('cards').whereIn('id', ids).select('status');
  return rows.map((r) => r.status as string);
}

test('when Stripe answers 500 for some cards during freeze-all, then every card is frozen locally before the answer and the queue retries until Stripe confirms', async () => {
  const { agentId } = await agentWithPolicy(gw, open);
  const ids = await registeredStripeCards(gw, fake, agentId, 6);
  const failing = ids.slice(0, 2);
  for (const id of failing) fake.on('POST', `/v1/issuing/cards/${id}`, { ...serverError, times: 3 });
  const at = fake.requests.length;
  const res = await gw.admin('POST', '/cards/freeze', { all: true, wait_ms: 0 });
  // Committed before the answer: no waiting, every card already frozen in the database.
  assert.deepEqual(await cardStatuses(ids), ids.map(() => 'frozen'));
  assert.ok(res.status === 202 || res.status === 200, JSON.stringify(res.body));
  assert.ok(res.body.counts.total >= 6);
  const jobId = res.body.job_id as string;
  await until('the freeze job to finish', async () => (await gw.admin('GET', `/cards/jobs/${jobId}?cards=false`)).body.done === true);
  const job = await gw.admin('GET', `/cards/jobs/${jobId}`);
  const mine = job.body.cards.filter((c: { card_id: string }) => ids.includes(c.card_id));
  assert.deepEqual(mine.map((c: { outcome: string }) => c.outcome), ids.map(() => 'confirmed'));
  for (const id of failing) {
    assert.equal(statusUpdates(fake.requests.slice(at)).filter((u) => u === `${id} inactive`).length, 4, `${id}: three 500s, then success`);
    assert.equal(mine.find((c: { card_id: string }) => c.card_id === id).attempts, 4);
  }
  for (const id of ids) assert.equal(fake.get(id)?.status, 'inactive');
});

test('when Stripe keeps failing past the wait, then the answer is 202 listing the card as pending with the reason, and it is confirmed later', async () => {
  const { agentId } = await agentWithPolicy(gw, open);
  const [slow, fine] = (await registeredStripeCards(gw, fake, agentId, 2)) as [string, string];
  fake.on('POST', `/v1/issuing/cards/${slow}`, { ...serverError, times: 6 });
  const res = await gw.admin('POST', '/cards/freeze', { agent_id: agentId, wait_ms: 300 });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  assert.equal(res.body.done, false);
  const bySlow = res.body.cards.find((c: { card_id: string }) => c.card_id === slow);
  assert.equal(bySlow.outcome, 'pending');
  assert.equal(bySlow.status, 'frozen');
  assert.match(bySlow.reason, /retrying after: Stripe update card .*HTTP 500/);
  assert.equal(res.body.cards.find((c: { card_id: string }) => c.card_id === fine).outcome, 'confirmed');
  await until('the slow card to be confirmed', async () => (await gw.admin('GET', `/cards/${slow}`)).body.confirmed === true);
  assert.equal(fake.get(slow)?.status, 'inactive');
});

test('when Stripe hangs, then the freeze still answers within its wait with the card frozen locally', async () => {
  const { agentId } = await agentWithPolicy(gw, open);
  const [cardId] = (await registeredStripeCards(gw, fake, agentId, 1)) as [string];
  fake.on('POST', `/v1/issuing/cards/${cardId}`, { delayMs: 1500, times: 1 });
  const started = Date.now();
  const res = await gw.admin('POST', `/cards/${cardId}/freeze`, { wait_ms: 200 });
  assert.ok(Date.now() - started < 1200, `answered after ${Date.now() - started} ms`);
  assert.equal(res.status, 202);
  assert.equal(res.body.cards[0].status, 'frozen');
  assert.equal(res.body.cards[0].reason, 'sent, waiting for the processor');
  assert.deepEqual(await cardStatuses([cardId]), ['frozen']);
  await until('Stripe to confirm', async () => (await gw.admin('GET', `/cards/${cardId}`)).body.confirmed === true);
});

test('when Stripe refuses a card for good, then its outcome is failed and the card stays frozen locally', async () => {
  const { agentId } = await agentWithPolicy(gw, open);
  const [cardId] = (await registeredStripeCards(gw, fake, agentId, 1)) as [string];
  fake.on('POST', `/v1/issuing/cards/${cardId}`, { status: 400, body: { error: { type: 'invalid_request_error', message: 'This card cannot be updated.' } } });
  const res = await gw.admin('POST', `/cards/${cardId}/freeze`, {});
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(res.body.cards[0].outcome, 'failed');
  assert.match(res.body.cards[0].reason, /cannot be updated/);
  assert.deepEqual(await cardStatuses([cardId]), ['frozen']);
});

test('when the processor freeze keeps failing, then an authorization on the card is already declined and the queue keeps retrying', async () => {
  const { agentId } = await agentWithPolicy(gw, open);
  const [cardId] = (await registeredStripeCards(gw, fake, agentId, 1)) as [string];
  fake.on('POST', `/v1/issuing/cards/${cardId}`, { ...serverError, times: 1000 });
  const res = await gw.admin('POST', `/cards/${cardId}/freeze`, { wait_ms: 0 });
  assert.equal(res.body.cards[0].status, 'frozen');
  const body = JSON.stringify(stripeAuthorizationRequest({ agentId, cardId, amount: 100 }));
  const answer = await fetch(`${gw.agentUrl}/webhooks/stripe`, { method: 'POST', headers: { 'content-type': 'application/json', 'stripe-signature': signStripe(body, WEBHOOK_SECRET) }, body });
  const decision = (await answer.json()) as { approved: boolean; metadata: Record<string, string> };
  assert.equal(decision.approved, false);
  assert.equal(decision.metadata.spend_reason, 'card_frozen');
  assert.equal(fake.get(cardId)?.status, 'active', 'Stripe never accepted the freeze');
  await until('a few retries', async () => Number((await knex('card_commands').where({ card_id: cardId }).first('attempts')).attempts) >= 3);
  const job = await gw.admin('GET', `/cards/jobs/${res.body.job_id}`);
  assert.equal(job.body.cards[0].outcome, 'pending');
});
