// The reconciliation job: a frozen card reactivated at Stripe behind the gateway's back is frozen
// again and raises a security event; a card naming a known agent is adopted; and two gateway
// processes ticking at the same moment run the job once.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startFakeStripe } from '../helpers/fake-stripe.js';
import type { FakeStripe } from '../helpers/fake-stripe.js';
import { agentWithPolicy, startTestGateway } from '../helpers/gateway.js';
import type { TestGateway } from '../helpers/gateway.js';
import { isolatedDatabase } from '../helpers/isolated-db.js';
import { registeredStripeCards, STRIPE_KEY, statusUpdates, stripeCard, until } from '../helpers/cards.js';
import { JOBS, tick } from '../../src/jobs/index.js';
import type { Job, JobDeps } from '../../src/jobs/index.js';

let db: { url: string; drop(): Promise<void> };
let gateways: TestGateway[] = [];
let fake: FakeStripe;
before(async () => {
  db = await isolatedDatabase();
  fake = await startFakeStripe();
  const env = { DATABASE_URL: db.url, STRIPE_SECRET_KEY: STRIPE_KEY, STRIPE_API_BASE: fake.url };
  gateways = [await startTestGateway(env), await startTestGateway(env)];
});
after(async () => {
  for (const g of gateways) await g.stop();
  await fake.stop();
  await db.drop();
});

const open = [{ rule_id: 'cap', rule_type: 'max_amount', parameters: { limit: 1000, currency: 'USD' } }];
const reconcile = JOBS.find((j) => j.name === 'reconcile-cards') as Job;
const jobDeps = (g: TestGateway): JobDeps => ({ knex: g.knex, logger: g.deps.logger, processors: g.deps.cards?.processors ?? {}, kick: g.deps.cards?.kick ?? (() => undefined) });
let minute = Date.UTC(2030, 0, 1, 0, 0);
const nextTick = () => new Date((minute += 60_000));

test('when a frozen card is reactivated at Stripe outside the gateway, then the job freezes it again and records a security event', async () => {
  const [gw] = gateways as [TestGateway];
  const { agentId } = await agentWithPolicy(gw, open);
  const [cardId] = (await registeredStripeCards(gw, fake, agentId, 1)) as [string];
  assert.equal((await gw.admin('POST', `/cards/${cardId}/freeze`, {})).status, 200);
  // Someone turns it back on in the Stripe dashboard.
  await fetch(`${fake.url}/v1/issuing/cards/${cardId}`, { method: 'POST', headers: { authorization: `Bearer ${STRIPE_KEY}`, 'content-type': 'application/x-www-form-urlencoded' }, body: 'status=active' });
  const at = fake.requests.length;
  const outcome = await tick(jobDeps(gw), reconcile, nextTick());
  assert.equal(outcome.ran, true);
  assert.equal((outcome as { result: { refrozen: number } }).result.refrozen, 1);
  await until('Stripe to have the card inactive again', () => fake.get(cardId)?.status === 'inactive');
  assert.deepEqual(statusUpdates(fake.requests.slice(at)), [`${cardId} inactive`]);
  const events = await gw.admin('GET', `/security-events?agent_id=${agentId}`);
  assert.equal(events.status, 200);
  assert.equal(events.body.data.length, 1);
  assert.equal(events.body.data[0].type, 'card_reactivated_outside_gateway');
  assert.equal(events.body.data[0].card_id, cardId);
  assert.equal((await gw.admin('GET', `/cards/${cardId}`)).body.status, 'frozen');
  // Nothing to do on the next run: no second event, no second call.
  const again = await tick(jobDeps(gw), reconcile, nextTick());
  assert.equal((again as { result: { refrozen: number } }).result.refrozen, 0);
  assert.equal((await gw.admin('GET', `/security-events?agent_id=${agentId}`)).body.data.length, 1);
});

test('when a card at Stripe names a known agent, then the job adopts it as discovered and leaves it active', async () => {
  const [gw] = gateways as [TestGateway];
  const { agentId } = await agentWithPolicy(gw, open);
  const cardId = await stripeCard(fake, agentId);
  const stranger = await stripeCard(fake, 'nobody-we-know');
  await tick(jobDeps(gw), reconcile, nextTick());
  const card = await gw.admin('GET', `/cards/${cardId}`);
  assert.equal(card.body.source, 'discovered');
  assert.equal(card.body.status, 'active');
  assert.equal(card.body.processor_status, 'active');
  assert.equal((await gw.admin('GET', `/cards/${stranger}`)).status, 404);
});

test('when two gateway processes run the job at the same moment, then it runs once', async () => {
  const now = nextTick();
  const outcomes = await Promise.all(gateways.map((g) => tick(jobDeps(g), reconcile, now)));
  assert.deepEqual(outcomes.map((o) => o.ran).sort(), [false, true]);
  const late = await tick(jobDeps(gateways[1] as TestGateway), reconcile, now);
  assert.deepEqual(late, { ran: false, reason: 'already_ran' });
  const runs = await (gateways[0] as TestGateway).knex('job_runs').where({ job: 'reconcile-cards', slot: now });
  assert.equal(runs.length, 1);
});
