// Stripe Issuing and Lithic ASA webhooks through a running gateway: events signed with the
// official SDKs' helpers get the right answer within the deadline, bad signatures change nothing,
// redeliveries count once (also across two processes), and settlement events leave the daily
// budget equal to the captured spend.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { agentWithPolicy, startTestGateway, uniqueId } from '../helpers/gateway.js';
import type { TestGateway } from '../helpers/gateway.js';
import { lithicAsaRequest, lithicSecret, lithicTransactionEvent, signLithic, signStripe, stripeAuthorizationEvent, stripeAuthorizationRequest, stripeTransactionEvent } from '../helpers/processor-events.js';

const STRIPE_SECRET = 'whsec_test_spendgate_primary';
const STRIPE_OLD_SECRET = 'whsec_test_spendgate_rotated_out';
const LITHIC_SECRET = lithicSecret();
const dailyHundred = [{ rule_id: 'daily', rule_type: 'velocity_limit', description: 'daily', parameters: { limit: 100, currency: 'USD', window: 'daily' } }];

let gw: TestGateway;
before(async () => {
  gw = await startTestGateway({ STRIPE_WEBHOOK_SECRET: `${STRIPE_SECRET},${STRIPE_OLD_SECRET}`, LITHIC_WEBHOOK_SECRET: LITHIC_SECRET, AUTH_DEADLINE_MS: '1500' });
});
after(async () => {
  await gw?.stop();
});

export async function postStripe(target: { agentUrl: string }, event: unknown, secret = STRIPE_SECRET, signature?: string) {
  const body = JSON.stringify(event);
  const started = performance.now();
  const res = await fetch(`${target.agentUrl}/webhooks/stripe`, { method: 'POST', headers: { 'content-type': 'application/json', 'stripe-signature': signature ?? signStripe(body, secret) }, body });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: JSON.parse(text), ms: performance.now() - started };
}

async function postLithic(event: unknown) {
  const body = JSON.stringify(event);
  const res = await fetch(`${gw.agentUrl}/webhooks/lithic`, { method: 'POST', headers: { 'content-type': 'application/json', ...signLithic(body, LITHIC_SECRET) }, body });
  return { status: res.status, body: (await res.json()) as any }; // eslint-disable-line @typescript-eslint/no-explicit-any
}

async function daily(agentId: string) {
  const row = await gw.knex('usage_counters').where({ agent_id: agentId, window: 'daily' }).first();
  return { reserved: Number(row?.reserved ?? 0), spent: Number(row?.spent ?? 0) };
}

describe('Stripe issuing_authorization.request', () => {
  test('when an agent card asks for money within its limit, then Stripe gets 200, its api_version and approved: true with our check id', async () => {
    const { agentId } = await agentWithPolicy(gw, dailyHundred);
    const event = stripeAuthorizationRequest({ agentId, amount: 4200, apiVersion: '2025-03-31.basil' });
    const res = await postStripe(gw, event);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('stripe-version'), '2025-03-31.basil');
    assert.equal(res.body.approved, true);
    assert.match(res.body.metadata.spend_check_id, /^chk_/);
    assert.equal(res.body.amount, undefined);
    assert.deepEqual(await daily(agentId), { reserved: 4200, spent: 0 });
    const row = await gw.knex('decisions').where({ id: res.body.metadata.spend_check_id }).first();
    assert.equal(row.source, 'stripe');
    assert.equal(row.action_type, 'card_authorization');
  });

  test('when it would pass the daily limit, then it is declined with the rule as the reason and nothing is reserved', async () => {
    const { agentId } = await agentWithPolicy(gw, dailyHundred);
    const res = await postStripe(gw, stripeAuthorizationRequest({ agentId, amount: 10_001 }));
    assert.equal(res.body.approved, false);
    assert.equal(res.body.metadata.spend_reason, 'velocity_limit');
    assert.deepEqual(await daily(agentId), { reserved: 0, spent: 0 });
  });

  test('when the signature is wrong, tampered, stale or missing, then 400 and nothing is recorded', async () => {
    const { agentId } = await agentWithPolicy(gw, dailyHundred);
    const event = stripeAuthorizationRequest({ agentId, amount: 100 });
    const body = JSON.stringify(event);
    const cases = [
      signStripe(body, 'whsec_not_ours'),
      signStripe(body.replace('"amount":100', '"amount":1'), STRIPE_SECRET),
      signStripe(body, STRIPE_SECRET, Math.floor(Date.now() / 1000) - 301),
      '',
    ];
    for (const signature of cases) {
      const res = await fetch(`${gw.agentUrl}/webhooks/stripe`, { method: 'POST', headers: { 'content-type': 'application/json', ...(signature ? { 'stripe-signature': signature } : {}) }, body });
      assert.equal(res.status, 400);
      const answer = (await res.json()) as { error: { type: string } };
      assert.equal(answer.error.type, 'invalid_request_error');
    }
    assert.equal((await gw.knex('decisions').where({ agent_id: agentId })).length, 0);
    const events = await gw.admin('GET', '/security-events?type=webhook_signature_invalid');
    assert.equal(events.status, 200);
    assert.ok(events.body.data.some((e: { processor: string }) => e.processor === 'stripe'), 'a rate-limited security event is stored');
  });

  test('when the event is signed with the second (rotated) secret, then it is accepted', async () => {
    const { agentId } = await agentWithPolicy(gw, dailyHundred);
    const res = await postStripe(gw, stripeAuthorizationRequest({ agentId, amount: 100 }), STRIPE_OLD_SECRET);
    assert.equal(res.status, 200);
    assert.equal(res.body.approved, true);
  });

  test('when the same request is delivered again, then it gets the same answer and reserves once', async () => {
    const { agentId } = await agentWithPolicy(gw, dailyHundred);
    const event = stripeAuthorizationRequest({ agentId, amount: 3000 });
    const answers = await Promise.all([postStripe(gw, event), postStripe(gw, event), postStripe(gw, { ...event, id: uniqueId('evt') })]);
    assert.deepEqual(new Set(answers.map((a) => a.body.metadata.spend_check_id)).size, 1);
    assert.ok(answers.every((a) => a.body.approved === true));
    assert.deepEqual(await daily(agentId), { reserved: 3000, spent: 0 });
  });

  test('when an incremental request arrives for the same authorization, then only the increment is reserved', async () => {
    const { agentId } = await agentWithPolicy(gw, dailyHundred);
    const authorizationId = uniqueId('iauth');
    await postStripe(gw, stripeAuthorizationRequest({ agentId, authorizationId, amount: 5000 }));
    const more = await postStripe(gw, stripeAuthorizationRequest({ agentId, authorizationId, amount: 2000, requestHistoryLength: 1 }));
    assert.equal(more.body.approved, true);
    assert.deepEqual(await daily(agentId), { reserved: 7000, spent: 0 });
  });

  test('when the card belongs to no known agent, then it is declined', async () => {
    const res = await postStripe(gw, stripeAuthorizationRequest({ agentId: null, amount: 100 }));
    assert.equal(res.status, 200);
    assert.equal(res.body.approved, false);
    assert.equal(res.body.metadata.spend_reason, 'unknown_card');
  });

  test('when the card names its agent in different places, then the registry wins, then the card metadata, then the cardholder', async () => {
    // Two agents told apart by their limits: a $50 swipe passes the first and not the second.
    const roomy = await agentWithPolicy(gw, dailyHundred);
    const tight = await agentWithPolicy(gw, [{ rule_id: 'small', rule_type: 'max_amount', description: 'small', parameters: { limit: 10, currency: 'USD' } }]);
    const decidedFor = async (authorizationId: string) => (await gw.knex('decisions').where({ reference: authorizationId }).first('agent_id'))?.agent_id;
    const swipe = async (opts: Parameters<typeof stripeAuthorizationRequest>[0]) => {
      const authorizationId = uniqueId('iauth');
      const res = await postStripe(gw, stripeAuthorizationRequest({ amount: 5000, authorizationId, ...opts }));
      return { approved: res.body.approved, reason: res.body.metadata.spend_reason, agent: await decidedFor(authorizationId) };
    };

    const registered = uniqueId('ic');
    assert.equal((await gw.admin('POST', '/cards', { card_id: registered, agent_id: roomy.agentId, processor: 'stripe' })).status, 201);
    assert.deepEqual(await swipe({ cardId: registered, agentId: tight.agentId, cardholderMetadata: { agent_id: tight.agentId } }), { approved: true, reason: 'allowed', agent: roomy.agentId }, 'registered to one agent, named for another: the registry wins');
    assert.deepEqual(await swipe({ cardId: uniqueId('ic'), agentId: tight.agentId, cardholderMetadata: { agent_id: roomy.agentId } }), { approved: false, reason: 'max_amount', agent: tight.agentId }, "the card's own metadata before its cardholder's");
    assert.deepEqual(await swipe({ cardId: uniqueId('ic'), agentId: null, cardholderMetadata: { agent_id: roomy.agentId } }), { approved: true, reason: 'allowed', agent: roomy.agentId }, "no agent on the card: the cardholder's");
    const unknown = await swipe({ cardId: uniqueId('ic'), agentId: 'agent-nobody-created' });
    assert.deepEqual(unknown, { approved: false, reason: 'unknown_agent', agent: undefined }, 'an agent that does not exist: declined, nothing recorded');
  });

  test('when the card is frozen in the registry, then it is declined even though Stripe still sees it active', async () => {
    const { agentId } = await agentWithPolicy(gw, dailyHundred);
    const cardId = uniqueId('ic');
    await gw.knex('cards').insert({ processor: 'stripe', id: cardId, agent_id: agentId, status: 'frozen', source: 'registered' });
    const res = await postStripe(gw, stripeAuthorizationRequest({ agentId, cardId, amount: 100 }));
    assert.equal(res.body.approved, false);
    assert.equal(res.body.metadata.spend_reason, 'card_frozen');
  });

  test('when the amount needs approval, then it is declined now and an approval request is stored', async () => {
    const { agentId } = await agentWithPolicy(gw, [{ rule_id: 'human', rule_type: 'escalate_if', description: 'big', parameters: { amount_above: 20, currency: 'USD' } }]);
    const res = await postStripe(gw, stripeAuthorizationRequest({ agentId, amount: 5000 }));
    assert.equal(res.body.approved, false);
    assert.equal(res.body.metadata.spend_decision, 'escalate');
    const approval = await gw.knex('approvals').where({ agent_id: agentId }).first();
    assert.equal(approval.id, res.body.metadata.spend_approval_id);
    assert.equal(approval.status, 'pending');
  });

  test('when the policy allows partial approval and the merchant accepts it, then what is left of the budget is approved', async () => {
    const { agentId } = await agentWithPolicy(gw, dailyHundred, { policy: { partial_approval: true } });
    await postStripe(gw, stripeAuthorizationRequest({ agentId, amount: 8000 }));
    const res = await postStripe(gw, stripeAuthorizationRequest({ agentId, amount: 5000, controllable: true }));
    assert.equal(res.body.approved, true);
    assert.equal(res.body.amount, 2000);
    const fixed = await postStripe(gw, stripeAuthorizationRequest({ agentId, amount: 5000, controllable: false }));
    assert.equal(fixed.body.approved, false);
  });

  test('when an event type we do not act on arrives, then it is acknowledged', async () => {
    const res = await postStripe(gw, { ...stripeAuthorizationRequest({ amount: 1 }), type: 'customer.created' });
    assert.equal(res.status, 200);
    assert.equal(res.body.received, true);
  });
});

describe('Stripe settlement events', () => {
  test('when the authorization is approved, captured and partly refunded, with events redelivered and out of order, then the daily budget equals the captured spend', async () => {
    const { agentId } = await agentWithPolicy(gw, dailyHundred);
    const authorizationId = uniqueId('iauth');
    const cardId = uniqueId('ic');
    const request = await postStripe(gw, stripeAuthorizationRequest({ agentId, cardId, authorizationId, amount: 6000 }));
    assert.equal(request.body.approved, true);
    const capture = stripeTransactionEvent({ authorizationId, cardId, type: 'capture', amount: 5500 });
    const created = stripeAuthorizationEvent('issuing_authorization.created', { agentId, cardId, authorizationId, amount: 6000, status: 'pending', approved: true, created: Math.floor(Date.now() / 1000) - 10 });
    const closed = stripeAuthorizationEvent('issuing_authorization.updated', { agentId, cardId, authorizationId, amount: 6000, status: 'closed', approved: true });
    for (const event of [capture, closed, created, capture, closed]) assert.equal((await postStripe(gw, event)).status, 200);
    assert.deepEqual(await daily(agentId), { reserved: 0, spent: 5500 });
    await postStripe(gw, stripeTransactionEvent({ authorizationId, cardId, type: 'refund', amount: 500 }));
    assert.deepEqual(await daily(agentId), { reserved: 0, spent: 5000 });
  });

  test('when a settlement cannot be stored, then Stripe gets a 5xx and nothing moves; its redelivery is applied once', async () => {
    const { agentId } = await agentWithPolicy(gw, dailyHundred);
    const authorizationId = uniqueId('iauth');
    const cardId = uniqueId('ic');
    assert.equal((await postStripe(gw, stripeAuthorizationRequest({ agentId, cardId, authorizationId, amount: 6000 }))).body.approved, true);
    const held = await daily(agentId);
    assert.deepEqual(held, { reserved: 6000, spent: 0 });
    // This agent's counters refuse every write, as a failing database would.
    const trigger = `fail_${agentId.replace(/[^a-z0-9]/gi, '_')}`;
    await gw.knex.raw(`create function ${trigger}() returns trigger language plpgsql as $$ begin raise exception 'injected failure'; end $$`);
    await gw.knex.raw(`create trigger ${trigger} before update or insert on usage_counters for each row when (new.agent_id = '${agentId}') execute function ${trigger}()`);
    const capture = stripeTransactionEvent({ authorizationId, cardId, type: 'capture', amount: 5500 });
    try {
      const failed = await postStripe(gw, capture);
      assert.ok(failed.status >= 500, `Stripe delivers again after a 5xx (got ${failed.status})`);
      assert.equal(failed.body.error.type, 'api_error');
      assert.deepEqual(await daily(agentId), held, 'the hold is as it was');
      assert.equal(await gw.knex('card_transactions').where({ authorization_id: authorizationId }).count('* as n').first().then((r) => Number(r?.n)), 0, 'no capture is half stored');
    } finally {
      await gw.knex.raw(`drop trigger ${trigger} on usage_counters`);
      await gw.knex.raw(`drop function ${trigger}()`);
    }
    for (let delivery = 0; delivery < 2; delivery++) assert.equal((await postStripe(gw, capture)).status, 200);
    const closed = stripeAuthorizationEvent('issuing_authorization.updated', { agentId, cardId, authorizationId, amount: 6000, status: 'closed', approved: true });
    assert.equal((await postStripe(gw, closed)).status, 200);
    assert.deepEqual(await daily(agentId), { reserved: 0, spent: 5500 }, 'the day counts the $55 captured, once');
  });

  test('when Stripe reverses an authorization, then its money is released', async () => {
    const { agentId } = await agentWithPolicy(gw, dailyHundred);
    const authorizationId = uniqueId('iauth');
    const cardId = uniqueId('ic');
    await postStripe(gw, stripeAuthorizationRequest({ agentId, cardId, authorizationId, amount: 2500 }));
    await postStripe(gw, stripeAuthorizationEvent('issuing_authorization.updated', { agentId, cardId, authorizationId, amount: 0, status: 'reversed', approved: true }));
    assert.deepEqual(await daily(agentId), { reserved: 0, spent: 0 });
  });
});

describe('Lithic Auth Stream Access', () => {
  test('when a registered card asks within its limit, then Lithic gets APPROVED with its token, once per redelivery', async () => {
    const { agentId } = await agentWithPolicy(gw, dailyHundred);
    const cardToken = crypto.randomUUID();
    await gw.knex('cards').insert({ processor: 'lithic', id: cardToken, agent_id: agentId, status: 'active', source: 'registered' });
    const asa = lithicAsaRequest({ cardToken, amount: 2500 });
    const first = await postLithic(asa);
    const again = await postLithic(asa);
    assert.equal(first.status, 200);
    assert.deepEqual(first.body, { result: 'APPROVED', token: asa.token });
    assert.deepEqual(again.body, first.body);
    assert.deepEqual(await daily(agentId), { reserved: 2500, spent: 0 });
  });

  test('when it passes the limit, then Lithic gets a decline code, never "DECLINED"', async () => {
    const { agentId } = await agentWithPolicy(gw, dailyHundred);
    const cardToken = crypto.randomUUID();
    await gw.knex('cards').insert({ processor: 'lithic', id: cardToken, agent_id: agentId, status: 'active', source: 'registered' });
    const res = await postLithic(lithicAsaRequest({ cardToken, amount: 10_001 }));
    assert.equal(res.body.result, 'VELOCITY_EXCEEDED');
  });

  test('when the authorization settles (card_transaction.updated, delivered twice), then the budget moves from held to spent', async () => {
    const { agentId } = await agentWithPolicy(gw, dailyHundred);
    const cardToken = crypto.randomUUID();
    await gw.knex('cards').insert({ processor: 'lithic', id: cardToken, agent_id: agentId, status: 'active', source: 'registered' });
    const asa = lithicAsaRequest({ cardToken, amount: 2500 });
    assert.equal((await postLithic(asa)).body.result, 'APPROVED');
    const settled = lithicTransactionEvent({
      token: asa.token, cardToken, status: 'SETTLED', amount: 2300,
      events: [{ type: 'AUTHORIZATION', amount: 2500 }, { type: 'CLEARING', amount: 2300 }],
    });
    assert.equal((await postLithic(settled)).status, 200);
    assert.equal((await postLithic(settled)).status, 200);
    assert.deepEqual(await daily(agentId), { reserved: 0, spent: 2300 });
  });
});

describe('approval requests', () => {
  test('when card authorizations escalate, then the operator lists their approval requests, newest first, page by page, with the workflow marked inactive', async () => {
    const { agentId } = await agentWithPolicy(gw, [{ rule_id: 'human', rule_type: 'escalate_if', description: 'big', parameters: { amount_above: 20, currency: 'USD' } }]);
    const answers = [];
    for (const amount of [3000, 4000, 5000]) answers.push(await postStripe(gw, stripeAuthorizationRequest({ agentId, amount })));
    const first = await gw.admin('GET', `/approvals?agent_id=${agentId}&limit=2`);
    assert.equal(first.status, 200);
    assert.match(first.body.workflow, /inactive/);
    assert.equal(first.body.pagination.total_count, 3);
    assert.deepEqual(first.body.data.map((a: { amount: number }) => a.amount), [5000, 4000]);
    assert.equal(first.body.data[0].status, 'pending');
    assert.equal(first.body.data[0].check_id, answers[2]?.body.metadata.spend_check_id);
    const second = await gw.admin('GET', `/approvals?agent_id=${agentId}&limit=2&cursor=${first.body.pagination.next_cursor}`);
    assert.deepEqual(second.body.data.map((a: { amount: number }) => a.amount), [3000]);
    assert.equal(second.body.pagination.has_more, false);
    for (const bad of ['cursor=nope', 'status=maybe', 'limit=0', 'colour=red']) {
      const res = await gw.admin('GET', `/approvals?${bad}`);
      assert.equal(res.status, 400, bad);
      assert.equal(res.body.error.code, 'invalid_request');
    }
  });
});
