// The card adapters against HTTP fakes: processor states map to neutral ones, the agent comes
// from Stripe metadata or the Lithic memo tag, and SDK failures map to ProcessorError kinds.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ProcessorError } from '../../adapters/processor.js';
import { createLithicCards } from '../../adapters/lithic/cards.js';
import { memoTags } from '../../adapters/lithic/memo.js';
import { createStripeCards } from '../../adapters/stripe/cards.js';
import { loosenedControls } from '../../src/jobs/controls-diff.js';
import { startFakeStripe } from '../helpers/fake-stripe.js';
import type { FakeStripe } from '../helpers/fake-stripe.js';
import { startFakeLithic } from '../helpers/fake-lithic.js';
import type { FakeLithic } from '../helpers/fake-lithic.js';
import { STRIPE_KEY, stripeCard } from '../helpers/cards.js';

let stripe: FakeStripe;
let lithic: FakeLithic;
before(async () => {
  stripe = await startFakeStripe();
  lithic = await startFakeLithic();
});
after(async () => {
  await stripe.stop();
  await lithic.stop();
});

async function kindOf(call: Promise<unknown>): Promise<string> {
  try {
    await call;
    return 'ok';
  } catch (error) {
    assert.ok(error instanceof ProcessorError, String(error));
    return error.kind;
  }
}

test('when Stripe answers, then statuses map (inactive is frozen) and the agent is metadata.agent_id', async () => {
  const cards = createStripeCards({ apiKey: STRIPE_KEY, apiBase: stripe.url });
  const id = await stripeCard(stripe, 'agent-7');
  const card = await cards.getCard(id);
  assert.deepEqual([card.status, card.agentId, card.processor], ['active', 'agent-7', 'stripe']);
  assert.equal((await cards.freezeCard(id)).status, 'frozen');
  assert.equal((await cards.unfreezeCard(id)).status, 'active');
  const listed = await cards.listCards({ agentId: 'agent-7' });
  assert.ok(listed.cards.every((c) => c.agentId === 'agent-7'));
  assert.ok(listed.cards.some((c) => c.id === id));
});

test('when Stripe fails, then 429/503 are retryable, 500 and timeouts indeterminate, 402 declined, 400/404 invalid', async () => {
  const cards = createStripeCards({ apiKey: STRIPE_KEY, apiBase: stripe.url, timeoutMs: 300 });
  const id = await stripeCard(stripe, 'agent-8');
  const cases: [number, string][] = [[429, 'retryable'], [503, 'retryable'], [409, 'retryable'], [500, 'indeterminate'], [402, 'declined'], [400, 'invalid'], [404, 'invalid']];
  for (const [status, kind] of cases) {
    stripe.on('POST', `/v1/issuing/cards/${id}`, { status, body: { error: { type: status === 402 ? 'card_error' : 'api_error', message: `fake ${status}` } }, headers: { 'Stripe-Should-Retry': 'false' }, times: 1 });
    assert.equal(await kindOf(cards.freezeCard(id)), kind, `HTTP ${status}`);
  }
  stripe.on('POST', `/v1/issuing/cards/${id}`, { delayMs: 1000, times: 1 });
  assert.equal(await kindOf(cards.freezeCard(id)), 'indeterminate', 'timeout');
  const refused = createStripeCards({ apiKey: STRIPE_KEY, apiBase: 'http://127.0.0.1:9' });
  assert.equal(await kindOf(refused.freezeCard(id)), 'retryable', 'connection refused');
  assert.equal(await kindOf(createStripeCards({ apiKey: undefined, apiBase: stripe.url }).freezeCard(id)), 'invalid', 'no key');
});

test('when Lithic answers, then PAUSED is frozen, CLOSED canceled, and the agent is the memo tag', async () => {
  const cards = createLithicCards({ apiKey: 'k', apiBase: lithic.url });
  const token = lithic.addCard({ memo: 'Research budget [agent_id=agent-9]', spend_limit: 5000, spend_limit_duration: 'MONTHLY' }).token as string;
  const card = await cards.getCard(token);
  assert.deepEqual([card.status, card.agentId, card.spendingControls?.limits], ['active', 'agent-9', [{ amount: 5000, interval: 'monthly' }]]);
  assert.equal((await cards.freezeCard(token)).status, 'frozen');
  lithic.cards.set('closed', { ...lithic.addCard(), token: 'closed', state: 'CLOSED' });
  assert.equal((await cards.getCard('closed')).status, 'canceled');
  const listed = await cards.listCards({ agentId: 'agent-9' });
  assert.deepEqual(listed.cards.map((c) => c.id), [token]);
  assert.equal(lithic.requests.at(-1)?.query.get('memo'), 'agent_id=agent-9');
});

test('when Lithic fails, then errors map to the same kinds', async () => {
  const cards = createLithicCards({ apiKey: 'k', apiBase: lithic.url });
  const token = lithic.addCard().token as string;
  for (const [status, kind] of [[429, 'retryable'], [500, 'indeterminate'], [400, 'invalid'], [404, 'invalid']] as const) {
    lithic.override(() => ({ status, body: { message: `fake ${status}` } }));
    assert.equal(await kindOf(cards.freezeCard(token)), kind, `HTTP ${status}`);
  }
  lithic.override(undefined);
  assert.equal(await kindOf(createLithicCards({ apiKey: 'k', apiBase: 'http://127.0.0.1:9' }).freezeCard(token)), 'retryable');
});

test('when a memo carries tags, then each key=value is read and the first wins', () => {
  assert.deepEqual(memoTags('Ads [agent_id=bot-7] team=ops agent_id=other'), { agent_id: 'bot-7', team: 'ops' });
  assert.deepEqual(memoTags('no tags here'), {});
  assert.deepEqual(memoTags(undefined), {});
  assert.equal(memoTags('xagent_id=nope').agent_id, undefined);
});

test('when controls at the processor are looser than the policy, then each loosening is named; tighter ones are fine', () => {
  const expected = { limits: [{ amount: 1000, interval: 'per_authorization' as const }], allowedCategories: null, blockedCategories: ['betting_casino_gambling'], allowedCountries: ['US'], blockedCountries: null };
  assert.deepEqual(loosenedControls(expected, { ...expected, limits: [{ amount: 500, interval: 'per_authorization' }] }), []);
  assert.deepEqual(loosenedControls(expected, { limits: [{ amount: 2000, interval: 'per_authorization' }], allowedCategories: null, blockedCategories: null, allowedCountries: null, blockedCountries: null }), ['per_authorization limit', 'blocked_categories', 'allowed_countries']);
});
