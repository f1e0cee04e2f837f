// Card authorizations in the ledger against real PostgreSQL: freeze guards inside the reservation
// transaction, partial approval, answer deadlines, approvals for escalations, and settlement from
// processor events that arrive late, out of order or twice — the budget ends equal to real spend.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Knex } from 'knex';
import type { AuthorizationUpdate, CardSnapshot, Merchant, TransactionUpdate } from '../../adapters/processor.js';
import { authorizationTotals, distribute, newer } from '../../src/ledger/authorizations.js';
import { DeadlineExceeded, createLedger } from '../../src/ledger/ledger.js';
import type { CheckInput, Ledger } from '../../src/ledger/ledger.js';
import type { PolicyDocument } from '../../src/policy/model.js';
import { compiledPolicy, savePolicy } from '../../src/policy/store.js';
import { testKnex, uniqueId } from '../helpers/gateway.js';

let knex: Knex;
let ledger: Ledger;
before(() => {
  knex = testKnex(10);
  ledger = createLedger(knex);
});
after(async () => {
  await knex.destroy();
});

const merchant: Merchant = { name: 'ACME CLOUD', networkId: '1234567890', category: 'computer_software_stores', mcc: '5734', country: 'US', city: 'SAN FRANCISCO', url: null };
const dailyHundred = [{ rule_id: 'daily', rule_type: 'velocity_limit', parameters: { limit: 100, currency: 'USD', window: 'daily' } }];

async function agentWith(rules: PolicyDocument['rules'], extra: Partial<PolicyDocument> = {}) {
  const agentId = uniqueId('agent');
  const policyId = uniqueId('policy');
  await savePolicy(knex, { policy_id: policyId, rules, ...extra }, { create: true });
  await knex('agents').insert({ id: agentId, owner: 'o@example.com', timezone: 'UTC', policy_id: policyId });
  return { agentId, policy: await compiledPolicy(knex, policyId, 1), cardId: uniqueId('ic') };
}
type Agent = Awaited<ReturnType<typeof agentWith>>;

function card(agent: Agent): CardSnapshot {
  return { id: agent.cardId, metadata: { agent_id: agent.agentId }, cardholderId: null, cardholderMetadata: {}, status: 'active' };
}

function authorize(agent: Agent, authId: string, amount: number, requestKey = `${authId}:0:${amount}`, extra: Partial<CheckInput> = {}): CheckInput {
  return {
    agentId: agent.agentId, timezone: 'UTC', policy: agent.policy,
    action: { actionType: 'card_authorization', amount, currency: 'usd', counterparty: merchant.name ?? '' },
    idempotencyKey: `stripe:auth:${requestKey}`, requestHash: `${requestKey}`, metadata: {}, now: new Date(), simulate: false,
    source: 'stripe', reference: authId, card: { processor: 'stripe', id: agent.cardId }, ...extra,
  };
}

function authEvent(agent: Agent, authId: string, status: AuthorizationUpdate['status'], amount: number, at: Date, approved = status !== 'declined'): AuthorizationUpdate {
  return { kind: 'authorization', processor: 'stripe', eventId: uniqueId('evt'), authorizationId: authId, cardId: agent.cardId, status, approved, amount: { amount, currency: 'usd' }, occurredAt: at, merchant, card: card(agent) };
}

function txnEvent(agent: Agent, authId: string | null, type: 'capture' | 'refund', amount: number, id = uniqueId('ipi')): TransactionUpdate {
  return { kind: 'transaction', processor: 'stripe', eventId: uniqueId('evt'), transactionId: id, authorizationId: authId, cardId: agent.cardId, type, amount: { amount, currency: 'usd' }, occurredAt: new Date(), merchant, card: card(agent) };
}

const settle = (agent: Agent, update: AuthorizationUpdate | TransactionUpdate) => ledger.settleAuthorization({ agentId: agent.agentId, update, policy: agent.policy, timezone: 'UTC' });

/** The daily counter: what the budget sees as used (held + spent). */
async function dailyUsed(agentId: string): Promise<{ reserved: number; spent: number; count: number }> {
  const row = await knex('usage_counters').where({ agent_id: agentId, window: 'daily' }).first();
  return { reserved: Number(row?.reserved ?? 0), spent: Number(row?.spent ?? 0), count: Number(row?.count ?? 0) };
}

/** What the counters must equal: recomputed from the reservations themselves. */
async function fromReservations(agentId: string) {
  const rows = await knex('decisions').where({ agent_id: agentId }).whereNotNull('status');
  const sum = (f: (r: { status: string; counted_amount: string }) => boolean) => rows.filter(f).reduce((s, r) => s + Number(r.counted_amount), 0);
  return { reserved: sum((r) => r.status === 'reserved' || r.status === 'unknown'), spent: sum((r) => r.status === 'committed'), count: rows.filter((r) => r.status !== 'released').length };
}

describe('settlement arithmetic', () => {
  test('when a final state meets a late pending one, then the final state stays', () => {
    const t = (s: number) => new Date(1_700_000_000_000 + s * 1000);
    assert.equal(newer({ status: 'closed', approved: true, amount: 10, occurredAt: t(1) }, { status: 'pending', approved: true, amount: 10, occurredAt: t(5) }), false);
    assert.equal(newer({ status: 'pending', approved: true, amount: 10, occurredAt: t(5) }, { status: 'reversed', approved: true, amount: 0, occurredAt: t(1) }), true);
    assert.equal(newer({ status: 'pending', approved: true, amount: 10, occurredAt: t(5) }, { status: 'pending', approved: true, amount: 20, occurredAt: t(4) }), false);
    assert.equal(newer(undefined, { status: 'pending', approved: true, amount: 20, occurredAt: t(4) }), true);
  });

  test('when captures exceed the hold, then spent is what was captured and nothing stays held', () => {
    const totals = authorizationTotals({ snapshot: { status: 'closed', approved: true, amount: 4200, occurredAt: new Date() }, captured: 4700, refunded: 0, hasTransactions: true, reservations: [] });
    assert.deepEqual(totals, { spent: 4700, held: 0 });
  });

  test('when one reservation carries both spent and held money, then all of it counts as spent', () => {
    assert.deepEqual(distribute(1, { spent: 300, held: 700 }), [{ status: 'committed', amount: 1000 }]);
    assert.deepEqual(distribute(3, { spent: 300, held: 700 }), [{ status: 'committed', amount: 300 }, { status: 'reserved', amount: 700 }, { status: 'committed', amount: 0 }]);
    assert.deepEqual(distribute(2, { spent: 0, held: 0 }), [{ status: 'released', amount: 0 }, { status: 'released', amount: 0 }]);
  });
});

describe('authorizations in the ledger', () => {
  test('when an authorization is held, captured, refunded and its events arrive twice, then the budget equals the net captured spend', async () => {
    const agent = await agentWith(dailyHundred);
    const authId = uniqueId('iauth');
    const first = await ledger.check(authorize(agent, authId, 4200));
    assert.equal(first.status, 'reserved');
    await settle(agent, authEvent(agent, authId, 'pending', 4200, new Date()));
    assert.deepEqual(await dailyUsed(agent.agentId), { reserved: 4200, spent: 0, count: 1 });
    const capture = txnEvent(agent, authId, 'capture', 4000);
    await settle(agent, capture);
    await settle(agent, capture); // redelivered
    await settle(agent, authEvent(agent, authId, 'closed', 4200, new Date()));
    assert.deepEqual(await dailyUsed(agent.agentId), { reserved: 0, spent: 4000, count: 1 });
    await settle(agent, txnEvent(agent, authId, 'refund', 1500));
    assert.deepEqual(await dailyUsed(agent.agentId), { reserved: 0, spent: 2500, count: 1 });
    assert.deepEqual(await dailyUsed(agent.agentId), await fromReservations(agent.agentId));
  });

  test('when the capture arrives before the authorization events, then the final budget is the same', async () => {
    const agent = await agentWith(dailyHundred);
    const authId = uniqueId('iauth');
    await ledger.check(authorize(agent, authId, 3000));
    const t0 = new Date(Date.now() - 60_000);
    await settle(agent, txnEvent(agent, authId, 'capture', 3000));
    await settle(agent, authEvent(agent, authId, 'closed', 3000, new Date()));
    await settle(agent, authEvent(agent, authId, 'pending', 3000, t0)); // late 'created'
    assert.deepEqual(await dailyUsed(agent.agentId), { reserved: 0, spent: 3000, count: 1 });
  });

  test('when an authorization is reversed or declined by the processor, then its reservation is released', async () => {
    const agent = await agentWith(dailyHundred);
    const reversed = uniqueId('iauth');
    const declined = uniqueId('iauth');
    await ledger.check(authorize(agent, reversed, 1000));
    await ledger.check(authorize(agent, declined, 2000));
    await settle(agent, authEvent(agent, reversed, 'reversed', 0, new Date()));
    await settle(agent, authEvent(agent, declined, 'declined', 2000, new Date(), false));
    assert.deepEqual(await dailyUsed(agent.agentId), { reserved: 0, spent: 0, count: 0 });
  });

  test('when an expired authorization is captured late, then the capture counts', async () => {
    const agent = await agentWith(dailyHundred);
    const authId = uniqueId('iauth');
    await ledger.check(authorize(agent, authId, 1000));
    await settle(agent, authEvent(agent, authId, 'expired', 1000, new Date()));
    assert.equal((await dailyUsed(agent.agentId)).reserved, 0);
    await settle(agent, txnEvent(agent, authId, 'capture', 1000));
    assert.deepEqual(await dailyUsed(agent.agentId), { reserved: 0, spent: 1000, count: 1 });
  });

  test('when an incremental request follows, then only the increment is reserved and the capture settles both', async () => {
    const agent = await agentWith(dailyHundred);
    const authId = uniqueId('iauth');
    await ledger.check(authorize(agent, authId, 2000, `${authId}:0:2000`));
    const again = await ledger.check(authorize(agent, authId, 2000, `${authId}:0:2000`)); // redelivery
    assert.equal(again.replayed, true);
    await ledger.check(authorize(agent, authId, 500, `${authId}:1:500`));
    assert.deepEqual(await dailyUsed(agent.agentId), { reserved: 2500, spent: 0, count: 2 });
    await settle(agent, txnEvent(agent, authId, 'capture', 2500));
    await settle(agent, authEvent(agent, authId, 'closed', 2500, new Date()));
    assert.deepEqual(await dailyUsed(agent.agentId), { reserved: 0, spent: 2500, count: 2 });
    assert.deepEqual(await dailyUsed(agent.agentId), await fromReservations(agent.agentId));
  });

  test('when the processor approved money we never reserved (fail mode), then its settlement records and counts it once', async () => {
    const agent = await agentWith(dailyHundred);
    const authId = uniqueId('iauth');
    const held = await settle(agent, authEvent(agent, authId, 'pending', 700, new Date()));
    assert.equal(held.recorded, true);
    const again = await settle(agent, authEvent(agent, authId, 'pending', 700, new Date()));
    assert.equal(again.recorded, false);
    await settle(agent, txnEvent(agent, authId, 'capture', 700));
    assert.deepEqual(await dailyUsed(agent.agentId), { reserved: 0, spent: 700, count: 1 });
    const rows = await knex('decisions').where({ agent_id: agent.agentId });
    assert.equal(rows.length, 1);
    assert.equal(rows[0].reason_code, 'processor_approved');
  });

  test('when the merchant captures more than was authorized (a tip), then the budget counts the capture', async () => {
    const agent = await agentWith(dailyHundred);
    const authId = uniqueId('iauth');
    await ledger.check(authorize(agent, authId, 5000));
    await settle(agent, authEvent(agent, authId, 'pending', 5000, new Date()));
    await settle(agent, txnEvent(agent, authId, 'capture', 5750));
    await settle(agent, authEvent(agent, authId, 'closed', 5000, new Date()));
    assert.deepEqual(await dailyUsed(agent.agentId), { reserved: 0, spent: 5750, count: 1 });
  });

  test('when a capture is unlinked to any authorization, then it is still counted as spent', async () => {
    const agent = await agentWith(dailyHundred);
    await settle(agent, txnEvent(agent, null, 'capture', 900));
    assert.deepEqual(await dailyUsed(agent.agentId), { reserved: 0, spent: 900, count: 1 });
  });
});

describe('guards, partial approval, deadlines, approvals', () => {
  test('when the card is frozen in the registry, then the authorization is blocked inside the transaction', async () => {
    const agent = await agentWith(dailyHundred);
    await knex('cards').insert({ processor: 'stripe', id: agent.cardId, agent_id: agent.agentId, status: 'frozen', source: 'registered' });
    const result = await ledger.check(authorize(agent, uniqueId('iauth'), 100));
    assert.equal(result.decision.decision, 'block');
    assert.equal(result.decision.reasonCode, 'card_frozen');
    assert.equal(result.reserved, false);
  });

  test('when the agent is frozen, then nothing of it is reserved, card or not', async () => {
    const agent = await agentWith(dailyHundred);
    await knex('agents').where({ id: agent.agentId }).update({ status: 'frozen', frozen_at: new Date() });
    const result = await ledger.check(authorize(agent, uniqueId('iauth'), 100));
    assert.equal(result.decision.reasonCode, 'agent_frozen');
    const { card: _card, ...payment } = authorize(agent, uniqueId('iauth'), 100);
    assert.equal((await ledger.check({ ...payment, source: 'check' })).decision.reasonCode, 'agent_frozen');
  });

  test('when partial approval is on and the daily limit has 30 USD left, then 30 USD of a 50 USD request is approved', async () => {
    const agent = await agentWith(dailyHundred, { partial_approval: true });
    await ledger.check(authorize(agent, uniqueId('iauth'), 7000));
    const result = await ledger.check(authorize(agent, uniqueId('iauth'), 5000, undefined, { allowPartial: true }));
    assert.equal(result.decision.decision, 'allow');
    assert.equal(result.partialAmount, 3000);
    assert.deepEqual(await dailyUsed(agent.agentId), { reserved: 10000, spent: 0, count: 2 });
  });

  test('when partial approval is asked but a merchant rule blocks, then nothing is approved', async () => {
    const agent = await agentWith([{ rule_id: 'no-acme', rule_type: 'merchant_blocklist', parameters: { merchants: ['ACME CLOUD'] } }]);
    const result = await ledger.check(authorize(agent, uniqueId('iauth'), 5000, undefined, { allowPartial: true, action: { actionType: 'card_authorization', amount: 5000, currency: 'usd', merchant: { name: 'ACME CLOUD' } } }));
    assert.equal(result.decision.decision, 'block');
    assert.equal(result.partialAmount, undefined);
  });

  test('when the answer deadline has passed before the request starts, then nothing is recorded', async () => {
    const agent = await agentWith(dailyHundred);
    const authId = uniqueId('iauth');
    await assert.rejects(ledger.check(authorize(agent, authId, 100, undefined, { deadline: performance.now() - 1 })), DeadlineExceeded);
    assert.equal((await knex('decisions').where({ agent_id: agent.agentId })).length, 0);
  });

  test('when a card authorization escalates, then an approval request is stored with the decision, once', async () => {
    const agent = await agentWith([{ rule_id: 'big', rule_type: 'escalate_if', parameters: { amount_above: 10, currency: 'USD' } }]);
    const authId = uniqueId('iauth');
    const ask = authorize(agent, authId, 5000, undefined, { openApproval: { authorization_id: authId } });
    const result = await ledger.check(ask);
    assert.equal(result.decision.decision, 'escalate');
    await ledger.check(ask);
    const approvals = await knex('approvals').where({ agent_id: agent.agentId });
    assert.equal(approvals.length, 1);
    assert.equal(approvals[0].check_id, result.checkId);
    assert.equal(approvals[0].status, 'pending');
  });
});
