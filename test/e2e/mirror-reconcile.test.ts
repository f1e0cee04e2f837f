// Reconciling the mirror's calls of unknown outcome against Stripe's events (SPEC §5): the official
// stripe SDK as the agent, the gateway in front of the fake Stripe, which records an event per
// change with the request's idempotency key as Stripe does. The job runs with a clock moved past
// the quiet period (SETTLED_AFTER_MS).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pino from 'pino';
import Stripe from 'stripe';
import { tick } from '../../src/jobs/index.js';
import type { JobDeps } from '../../src/jobs/index.js';
import * as reconcileMirror from '../../src/jobs/reconcile-mirror.js';
import { stripeClient, stripeEvents } from '../../src/mirror/stripe-lookup.js';
import { startFakeStripe } from '../helpers/fake-stripe.js';
import type { FakeStripe } from '../helpers/fake-stripe.js';
import { agentWithPolicy, startTestGateway } from '../helpers/gateway.js';
import { isolatedDatabase } from '../helpers/isolated-db.js';
import type { TestGateway } from '../helpers/gateway.js';

const UPSTREAM_KEY = 'sk_test_reconcile123';
const DAILY = { rule_id: 'daily', rule_type: 'velocity_limit', parameters: { limit: 20, currency: 'USD', window: 'daily' } };

let fake: FakeStripe;
let gw: TestGateway;
let jobDeps: JobDeps;
let db: { url: string; drop(): Promise<void> };

// A database of its own: the job settles every call it finds, other test files' included.
before(async () => {
  db = await isolatedDatabase();
  fake = await startFakeStripe();
  gw = await startTestGateway({ DATABASE_URL: db.url, STRIPE_SECRET_KEY: UPSTREAM_KEY, STRIPE_API_BASE: fake.url, STRIPE_TIMEOUT_MS: '300' });
  const events = stripeEvents(stripeClient(UPSTREAM_KEY, fake.url));
  jobDeps = { knex: gw.knex, logger: pino({ level: 'silent' }), processors: {}, kick: () => undefined, ledger: gw.deps.ledger, stripeEvents: (mode) => (mode === 'test' ? events : undefined) };
});

after(async () => {
  await gw.stop();
  await fake.stop();
  await db.drop();
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

const sdk = (key: string) => new Stripe(key, { host: '127.0.0.1', port: gw.agentPort, protocol: 'http', maxNetworkRetries: 0 });
/** A clock past the quiet period of every call made so far. */
const later = () => new Date(Date.now() + reconcileMirror.SETTLED_AFTER_MS + 60_000);
const reconcile = (now = later()) => reconcileMirror.run(jobDeps, now);

async function decisions(agentId: string): Promise<Json[]> {
  await gw.deps.ledger.flush();
  return gw.knex('decisions').where({ agent_id: agentId }).orderBy('created_at', 'asc');
}

async function daily(agentId: string): Promise<{ reserved: number; spent: number; count: number }> {
  await gw.deps.ledger.flush();
  const [row] = await gw.knex('usage_counters').where({ agent_id: agentId, window: 'daily' });
  return { reserved: Number(row.reserved), spent: Number(row.spent), count: Number(row.count) };
}

/** Only this test's calls are unsettled when it reconciles (each test settles what it leaves). */
const unknownOutcome = (e: unknown) => e instanceof Stripe.errors.StripeError && (e.statusCode === 504 || e.statusCode === 500);

test('when Stripe ran a PaymentIntent the gateway timed out on, then the job commits it with Stripe\'s id and amount, and a retry counts once', async () => {
  const { key, agentId } = await agentWithPolicy(gw, [DAILY]);
  fake.on('POST', '/v1/payment_intents', { delayMs: 1500, times: 1 }); // runs now, answers too late
  await assert.rejects(sdk(key).paymentIntents.create({ amount: 1200, currency: 'usd', confirm: true, payment_method: 'pm_card_visa' }, { idempotencyKey: 'pi-1' }), unknownOutcome);
  assert.equal((await decisions(agentId))[0].status, 'unknown');

  assert.equal((await reconcile(new Date())).checked, 0, 'not within the quiet period');
  const tally = await reconcile();
  assert.deepEqual({ committed: tally.committed, released: tally.released, undetermined: tally.undetermined, errors: tally.errors }, { committed: 1, released: 0, undetermined: 0, errors: 0 });
  const [row] = await decisions(agentId);
  assert.equal(row.status, 'committed');
  assert.match(row.reference, /^pi_/);
  assert.equal(fake.get(row.reference)?.amount, 1200);
  assert.deepEqual(await daily(agentId), { reserved: 0, spent: 1200, count: 1 });

  // The agent's retry gets Stripe's replay, and counts nothing more.
  const intent = await sdk(key).paymentIntents.create({ amount: 1200, currency: 'usd', confirm: true, payment_method: 'pm_card_visa' }, { idempotencyKey: 'pi-1' });
  assert.equal(intent.id, row.reference);
  assert.deepEqual(await daily(agentId), { reserved: 0, spent: 1200, count: 1 });
  assert.equal((await reconcile()).checked, 0, 'nothing left to reconcile');
});

test('when Stripe never ran the call (a 500 before it ran, or no answer at all), then the job releases it, and a retry is decided again', async () => {
  const { key, agentId } = await agentWithPolicy(gw, [DAILY]);
  fake.on('POST', '/v1/charges', { status: 500, body: { error: { type: 'api_error', message: 'An unknown error occurred' } }, times: 1 });
  await assert.rejects(sdk(key).charges.create({ amount: 900, currency: 'usd', source: 'tok_visa' }, { idempotencyKey: 'five-hundred' }), unknownOutcome);
  fake.on('POST', '/v1/charges', { action: 'hang', times: 1 });
  await assert.rejects(sdk(key).charges.create({ amount: 800, currency: 'usd', source: 'tok_visa' }, { idempotencyKey: 'silent' }), unknownOutcome);
  assert.deepEqual(await daily(agentId), { reserved: 1700, spent: 0, count: 2 });

  const tally = await reconcile();
  assert.equal(tally.released, 2);
  assert.deepEqual((await decisions(agentId)).map((d) => d.status), ['released', 'released']);
  assert.deepEqual(await daily(agentId), { reserved: 0, spent: 0, count: 0 });

  // The freed budget goes to another call; the old key's retry is checked against what is left.
  await sdk(key).charges.create({ amount: 1500, currency: 'usd', source: 'tok_visa' }, { idempotencyKey: 'fifteen' });
  await assert.rejects(sdk(key).charges.create({ amount: 900, currency: 'usd', source: 'tok_visa' }, { idempotencyKey: 'five-hundred' }), (e: unknown) => e instanceof Stripe.errors.StripeCardError && e.code === 'spend_policy_blocked');
  const charge = await sdk(key).charges.create({ amount: 500, currency: 'usd', source: 'tok_visa' }, { idempotencyKey: 'five' });
  assert.match(charge.id, /^ch_/);
  assert.deepEqual(await daily(agentId), { reserved: 0, spent: 2000, count: 2 });
});

test('when the call\'s payment failed at Stripe (a card error event under its key), then the job releases it', async () => {
  const { key, agentId } = await agentWithPolicy(gw, [DAILY]);
  fake.on('POST', '/v1/payment_intents', { status: 502, body: 'Bad Gateway', times: 1 });
  await assert.rejects(sdk(key).paymentIntents.create({ amount: 700, currency: 'usd', confirm: true, payment_method: 'pm_card_chargeDeclined' }, { idempotencyKey: 'declined' }), (e: unknown) => e instanceof Stripe.errors.StripeError);
  const [row] = await decisions(agentId);
  assert.equal(row.status, 'unknown');
  const created = Math.floor(Date.now() / 1000);
  const request = { id: 'req_declined0001', idempotency_key: row.metadata.upstream_key };
  fake.put({ id: 'evt_created0001', object: 'event', type: 'payment_intent.created', created, request, data: { object: { id: 'pi_declined01', object: 'payment_intent', amount: 700, currency: 'usd', status: 'requires_payment_method' } } });
  fake.put({ id: 'evt_failed00001', object: 'event', type: 'payment_intent.payment_failed', created, request, data: { object: { id: 'pi_declined01', object: 'payment_intent', amount: 700, currency: 'usd', status: 'requires_payment_method' } } });

  const tally = await reconcile();
  assert.equal(tally.released, 1);
  assert.equal((await decisions(agentId))[0].status, 'released');
  assert.deepEqual(await daily(agentId), { reserved: 0, spent: 0, count: 0 });
});

test('when the call\'s window holds more events than a run reads, or Stripe refuses to list them, then the call is left counted as it was', async () => {
  const { key, agentId } = await agentWithPolicy(gw, [DAILY]);
  fake.on('POST', '/v1/transfers', { status: 503, body: { error: { type: 'api_error', message: 'Service unavailable' } }, times: 1 });
  await assert.rejects(sdk(key).transfers.create({ amount: 600, currency: 'usd', destination: 'acct_1' }, { idempotencyKey: 'busy' }), (e: unknown) => e instanceof Stripe.errors.StripeError);

  fake.on('GET', '/v1/events', { status: 403, body: { error: { type: 'invalid_request_error', message: 'The provided key does not have the required permissions for this endpoint.' } }, times: 1 });
  const refused = await reconcile();
  assert.deepEqual({ errors: refused.errors, released: refused.released }, { errors: 1, released: 0 });

  const created = Math.floor(Date.now() / 1000);
  for (let i = 0; i < 2050; i++) fake.put({ id: `evt_busy${String(i).padStart(6, '0')}`, object: 'event', type: 'customer.updated', created, request: { id: null, idempotency_key: null }, data: { object: { id: 'cus_1', object: 'customer' } } });
  const busy = await reconcile();
  assert.deepEqual({ undetermined: busy.undetermined, released: busy.released }, { undetermined: 1, released: 0 });
  assert.equal((await decisions(agentId))[0].status, 'unknown');
  assert.deepEqual(await daily(agentId), { reserved: 600, spent: 0, count: 1 });

  // Settled by hand, and the crowd of events gone, so later tests start clean.
  await gw.deps.ledger.settle(agentId, 'busy', 'released');
  fake.reset();
});

test('when two gateway processes run the same tick, then each call is reconciled once', async () => {
  const { key, agentId } = await agentWithPolicy(gw, [DAILY]);
  fake.on('POST', '/v1/payouts', { delayMs: 1500, times: 1 });
  await assert.rejects(sdk(key).payouts.create({ amount: 1100, currency: 'usd' }, { idempotencyKey: 'payout' }), unknownOutcome);
  const job = { name: reconcileMirror.name, run: reconcileMirror.run };
  const now = later();
  const outcomes = await Promise.all([tick(jobDeps, job, now), tick({ ...jobDeps }, job, now)]);
  const ran = outcomes.filter((o) => o.ran);
  assert.equal(ran.length, 1, 'one of the two ran the tick, the other found it running or done');
  assert.deepEqual(ran[0]?.result, { checked: 1, committed: 1, released: 0, undetermined: 0, too_old: 0, errors: 0 });
  const [row] = await decisions(agentId);
  assert.equal(row.status, 'committed');
  assert.match(row.reference, /^po_/);
  assert.deepEqual(await daily(agentId), { reserved: 0, spent: 1100, count: 1 });
});

test('when older calls can never be settled here (no Stripe key of their mode, or none recorded), then they are counted as undetermined and newer calls are still reconciled', async () => {
  const { key, agentId } = await agentWithPolicy(gw, [DAILY]);
  fake.on('POST', '/v1/payment_intents', { delayMs: 1500, times: 1 });
  await assert.rejects(sdk(key).paymentIntents.create({ amount: 300, currency: 'usd', confirm: true, payment_method: 'pm_card_visa' }, { idempotencyKey: 'behind' }), unknownOutcome);
  const [row] = await decisions(agentId);
  // More calls than one run takes, all older: live mode (this gateway has a test key only), or recorded before modes were.
  const { mode: _mode, ...noMode } = row.metadata;
  await gw.knex('decisions').insert(Array.from({ length: 60 }, (_, i) => ({
    ...row, id: `chk_keyless${String(i).padStart(4, '0')}`, idempotency_key: `keyless-${i}`, created_at: new Date(row.created_at.getTime() - 60_000 + i),
    updated_at: null, metadata: i % 2 ? { ...row.metadata, mode: 'live' } : noMode,
  })));

  const tally = await reconcile();
  assert.deepEqual({ checked: tally.checked, committed: tally.committed, undetermined: tally.undetermined }, { checked: 1, committed: 1, undetermined: 60 });
  assert.equal((await gw.knex('decisions').where({ agent_id: agentId, idempotency_key: 'behind' }).first()).status, 'committed');
  await gw.knex('decisions').where({ agent_id: agentId }).where('idempotency_key', 'like', 'keyless-%').delete();
});
