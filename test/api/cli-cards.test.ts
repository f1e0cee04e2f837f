// `spend card …` and `spend agent freeze|unfreeze` run in-process against a real gateway and a
// fake Stripe: tables by default, --json for scripts, progress while the processor confirms,
// exit 1 on failure.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { run } from '../../src/cli/main.js';
import { startFakeStripe } from '../helpers/fake-stripe.js';
import type { FakeStripe } from '../helpers/fake-stripe.js';
import { ADMIN_TOKEN, agentWithPolicy, startTestGateway } from '../helpers/gateway.js';
import type { TestGateway } from '../helpers/gateway.js';
import { isolatedDatabase } from '../helpers/isolated-db.js';
import { registeredStripeCards, STRIPE_KEY, stripeCard } from '../helpers/cards.js';

let db: { url: string; drop(): Promise<void> };
let gw: TestGateway;
let fake: FakeStripe;
before(async () => {
  db = await isolatedDatabase();
  fake = await startFakeStripe();
  // A short server-side wait, so larger freezes hand over to the CLI's progress polling.
  gw = await startTestGateway({ DATABASE_URL: db.url, STRIPE_SECRET_KEY: STRIPE_KEY, STRIPE_API_BASE: fake.url, FREEZE_WAIT_MS: '100', FREEZE_CONCURRENCY: '2' });
});
after(async () => {
  await gw.stop();
  await fake.stop();
  await db.drop();
});

async function spend(args: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await run(args, { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) }, env: { SPEND_ADMIN_URL: gw.adminUrl, SPEND_ADMIN_TOKEN: ADMIN_TOKEN }, cwd: process.cwd() });
  return { code, stdout, stderr };
}

const open = [{ rule_id: 'cap', rule_type: 'max_amount', parameters: { limit: 1000, currency: 'USD' } }];

test('when cards are listed, then a table shows each with its status, and --json gives the API page', async () => {
  const { agentId } = await agentWithPolicy(gw, open);
  const [cardId] = (await registeredStripeCards(gw, fake, agentId, 1)) as [string];
  const table = await spend(['card', 'list', '--agent', agentId]);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, new RegExp(`${cardId} +│? *stripe`));
  assert.match(table.stdout, /1 of 1 card\./);
  const json = await spend(['card', 'list', '--agent', agentId, '--status', 'active', '--json']);
  assert.equal(JSON.parse(json.stdout).data[0].id, cardId);
  const none = await spend(['card', 'list', '--agent', agentId, '--status', 'frozen']);
  assert.match(none.stdout, /No cards match/);
});

test('when a card is registered and frozen by id, then it prints the outcome and Stripe has it inactive', async () => {
  const { agentId } = await agentWithPolicy(gw, open);
  const cardId = await stripeCard(fake, agentId);
  const registered = await spend(['card', 'register', cardId, '--agent', agentId]);
  assert.equal(registered.code, 0, registered.stderr);
  assert.match(registered.stdout, new RegExp(`Card ${cardId} \\(stripe\\) belongs to agent ${agentId}`));
  const frozen = await spend(['card', 'freeze', cardId, '--reason', 'lost laptop']);
  assert.equal(frozen.code, 0, frozen.stderr);
  assert.match(frozen.stdout, new RegExp(`Frozen locally: card ${cardId}`));
  assert.match(frozen.stdout, /1 confirmed, 0 pending, 0 failed/);
  assert.equal(fake.get(cardId)?.status, 'inactive');
  const json = await spend(['card', 'unfreeze', cardId, '--json']);
  assert.equal(json.code, 0, json.stderr);
  assert.equal(JSON.parse(json.stdout).cards[0].outcome, 'confirmed');
  assert.equal(fake.get(cardId)?.status, 'active');
});

test('when an agent with many cards is frozen, then progress is printed on stderr until every card is confirmed', async () => {
  const { agentId } = await agentWithPolicy(gw, open);
  const ids = await registeredStripeCards(gw, fake, agentId, 12);
  fake.on('POST', '/v1/issuing/cards/:id', { delayMs: 60, times: 12 });
  const result = await spend(['card', 'freeze', '--agent', agentId]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, /freezing at the processor: \d+\/12 confirmed, \d+ pending, 0 failed/);
  assert.match(result.stdout, /12 confirmed, 0 pending, 0 failed/);
  for (const id of ids) assert.equal(fake.get(id)?.status, 'inactive');
});

test('when the processor refuses a card, then the command exits 1 and says so', async () => {
  const { agentId } = await agentWithPolicy(gw, open);
  const [cardId] = (await registeredStripeCards(gw, fake, agentId, 1)) as [string];
  fake.on('POST', `/v1/issuing/cards/${cardId}`, { status: 400, body: { error: { type: 'invalid_request_error', message: 'No such thing' } } });
  const result = await spend(['card', 'freeze', cardId]);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /1 card could not be frozen at the processor/);
  assert.match(result.stdout, /failed/);
});

test('when the freeze target is missing, doubled or unknown, then the command exits non-zero with one clear line', async () => {
  for (const args of [['card', 'freeze'], ['card', 'freeze', 'ic_x', '--all'], ['card', 'freeze', '--all', '--agent', 'a']]) {
    const result = await spend(args);
    assert.equal(result.code, 1, args.join(' '));
    assert.match(result.stderr, /^spend: give exactly one of/);
  }
  const unknown = await spend(['card', 'freeze', 'ic_nosuchcard']);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /No card "ic_nosuchcard"/);
  const noAll = await spend(['card', 'unfreeze', '--all']);
  assert.notEqual(noAll.code, 0);
});

test('when an agent is frozen from the CLI, then its key is refused and unfreezing it gives the key back but keeps its cards frozen', async () => {
  const { agentId, key } = await agentWithPolicy(gw, open);
  await registeredStripeCards(gw, fake, agentId, 1);
  const frozen = await spend(['agent', 'freeze', agentId, '--reason', 'incident 42']);
  assert.equal(frozen.code, 0, frozen.stderr);
  assert.match(frozen.stdout, new RegExp(`Agent ${agentId} is frozen`));
  assert.match(frozen.stdout, /1 confirmed/);
  const check = () => gw.agent('POST', '/v1/checks', key, { action_type: 'purchase', amount: 1, currency: 'USD', counterparty: 'x.com' });
  assert.equal((await check()).status, 401);
  const unfrozen = await spend(['agent', 'unfreeze', agentId]);
  assert.equal(unfrozen.code, 0, unfrozen.stderr);
  assert.match(unfrozen.stdout, /1 card stay frozen/);
  assert.equal((await check()).status, 200);
  const missing = await spend(['agent', 'freeze', 'no-such-agent']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /No agent "no-such-agent"/);
});

test('when every agent key is revoked from the CLI, then the keys stop working', async () => {
  const { key } = await agentWithPolicy(gw, open);
  const result = await spend(['api-key', 'revoke', '--all']);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /Revoked \d+ agent keys? of all agents/);
  assert.equal((await gw.agent('POST', '/v1/checks', key, { action_type: 'purchase', amount: 1, currency: 'USD', counterparty: 'x.com' })).status, 401);
});
