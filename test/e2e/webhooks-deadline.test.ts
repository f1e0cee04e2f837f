// The answer deadline: with the database stalled (the agent's ledger lock held elsewhere) or stopped,
// card authorizations are still answered within AUTH_DEADLINE_MS by AUTH_FAIL_MODE; a decision that
// lands late is reconciled (a reservation for money we declined is released, none is left behind
// for requests that never started), and the gateway recovers by itself when the database returns.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { agentWithPolicy, stallAgent, startTestGateway, ownCluster } from '../helpers/gateway.js';
import type { OwnCluster, TestGateway } from '../helpers/gateway.js';
import { signStripe, stripeAuthorizationRequest } from '../helpers/processor-events.js';

const SECRET = 'whsec_test_deadline';
const DEADLINE_MS = 400;
const dailyHundred = [{ rule_id: 'daily', rule_type: 'velocity_limit', description: 'daily', parameters: { limit: 100, currency: 'USD', window: 'daily' } }];

async function ask(gw: TestGateway, agentId: string, amount: number) {
  const body = JSON.stringify(stripeAuthorizationRequest({ agentId, amount }));
  const started = performance.now();
  const res = await fetch(`${gw.agentUrl}/webhooks/stripe`, { method: 'POST', headers: { 'content-type': 'application/json', 'stripe-signature': signStripe(body, SECRET) }, body });
  const answer = (await res.json()) as { approved: boolean; metadata: Record<string, string> };
  return { status: res.status, answer, ms: performance.now() - started };
}

async function eventually(check: () => Promise<boolean>, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('a stalled database', () => {
  let decline: TestGateway;
  let approveSmall: TestGateway;
  before(async () => {
    decline = await startTestGateway({ STRIPE_WEBHOOK_SECRET: SECRET, AUTH_DEADLINE_MS: String(DEADLINE_MS) });
    approveSmall = await startTestGateway({ STRIPE_WEBHOOK_SECRET: SECRET, AUTH_DEADLINE_MS: String(DEADLINE_MS), AUTH_FAIL_MODE: 'approve_under:10 USD' });
  });
  after(async () => {
    await decline?.stop();
    await approveSmall?.stop();
  });

  test('when reservations wait on a lock, then the answer leaves within the deadline by fail mode and the late reservation is released', async () => {
    const { agentId } = await agentWithPolicy(decline, dailyHundred);
    await ask(decline, agentId, 100); // warm the agent's policy cache
    const release = await stallAgent(decline.knex, agentId);
    let answers;
    try {
      answers = await Promise.all([ask(decline, agentId, 2000), ask(decline, agentId, 3000)]);
    } finally {
      await release();
    }
    for (const { status, answer, ms } of answers) {
      assert.equal(status, 200);
      assert.equal(answer.approved, false);
      assert.equal(answer.metadata.spend_reason, 'fail_mode_deadline');
      assert.ok(ms < DEADLINE_MS + 250, `answered in ${Math.round(ms)} ms`);
    }
    // The first request was inside a transaction when its answer left: it commits, then is released.
    // The second had not started: it never is. Wait for the late reservation to land and be
    // released (one 'reserved' row is also what the table shows before it has landed).
    await eventually(async () => {
      const late = await decline.knex('decisions').where({ agent_id: agentId }).whereNot({ amount: 100 });
      return late.length > 0 && late.every((r) => r.status === 'released');
    });
    assert.equal((await decline.knex('decisions').where({ agent_id: agentId, status: 'reserved' })).length, 1);
    const rows = await decline.knex('decisions').where({ agent_id: agentId }).orderBy('created_at');
    assert.ok(rows.length <= 3, `${rows.length} decisions`);
    const counter = await decline.knex('usage_counters').where({ agent_id: agentId, window: 'daily' }).first();
    assert.equal(Number(counter.reserved), 100);
    const late = rows.filter((r) => Number(r.amount) !== 100);
    assert.ok(late.every((r) => r.status === 'released'));
  });

  test('when the fail mode approves small amounts, then a small one is approved and stays counted, a large one declined', async () => {
    const { agentId } = await agentWithPolicy(approveSmall, dailyHundred);
    await ask(approveSmall, agentId, 100);
    const release = await stallAgent(approveSmall.knex, agentId);
    let small;
    let large;
    try {
      small = await ask(approveSmall, agentId, 999);
      large = await ask(approveSmall, agentId, 1000);
    } finally {
      await release();
    }
    assert.equal(small.answer.approved, true);
    assert.equal(large.answer.approved, false);
    await eventually(async () => {
      const counter = await approveSmall.knex('usage_counters').where({ agent_id: agentId, window: 'daily' }).first();
      return Number(counter.reserved) === 100 + 999;
    });
  });
});

describe('a stopped database', () => {
  let db: OwnCluster;
  let gw: TestGateway;
  before(async () => {
    db = await ownCluster('spendgate-stop-');
    gw = await startTestGateway({ DATABASE_URL: db.url, STRIPE_WEBHOOK_SECRET: SECRET, AUTH_DEADLINE_MS: String(DEADLINE_MS) });
  });
  after(async () => {
    await gw?.stop().catch(() => undefined);
    await db?.remove();
  });

  test('when PostgreSQL freezes (connections open, nothing answers), then answers arrive in time by fail mode, and after the thaw the swipes declined meanwhile leave nothing reserved', { timeout: 30_000 }, async () => {
    const { agentId } = await agentWithPolicy(gw, dailyHundred);
    // Two approved first, so the process knows the agent's counters: a frozen swipe's reservation
    // goes out whole (lock, write, commit) before any answer, and lands once the database thaws.
    for (let i = 0; i < 2; i++) assert.equal((await ask(gw, agentId, 100)).answer.approved, true);
    const thaw = db.freeze();
    let frozen;
    try {
      // Two at once (one batch in flight when the database froze, one queued behind it), then one more.
      frozen = [...(await Promise.all([ask(gw, agentId, 100), ask(gw, agentId, 100)])), await ask(gw, agentId, 100)];
    } finally {
      thaw();
    }
    for (const { status, answer, ms } of frozen) {
      assert.equal(status, 200);
      assert.equal(answer.approved, false);
      assert.match(answer.metadata.spend_reason ?? '', /^fail_mode_/);
      assert.ok(ms < DEADLINE_MS + 250, `answered in ${Math.round(ms)} ms`);
    }
    await eventually(async () => (await ask(gw, agentId, 100)).answer.approved === true, 10_000);
    // Whatever the frozen swipes' decisions did once the database answered again was undone: the
    // day holds the three approved swipes and nothing else.
    await eventually(async () => {
      const counter = await gw.knex('usage_counters').where({ agent_id: agentId, window: 'daily' }).first();
      return Number(counter.reserved) === 300;
    });
    await gw.deps.ledger.flush();
    const reserved = await gw.knex('decisions').where({ agent_id: agentId, status: 'reserved' }).count({ n: '*' });
    assert.equal(Number(reserved[0]?.n), 3, 'three reservations: the swipes approved');
  });

  test('when PostgreSQL stops, then answers still arrive in time by fail mode, and decisions resume when it is back', async () => {
    const { agentId } = await agentWithPolicy(gw, dailyHundred);
    assert.equal((await ask(gw, agentId, 100)).answer.approved, true);
    await db.stop();
    for (let i = 0; i < 3; i++) {
      const { status, answer, ms } = await ask(gw, agentId, 100);
      assert.equal(status, 200);
      assert.equal(answer.approved, false);
      assert.match(answer.metadata.spend_reason ?? '', /^fail_mode_/);
      assert.ok(ms < DEADLINE_MS + 250, `answered in ${Math.round(ms)} ms`);
    }
    await db.start();
    await eventually(async () => (await ask(gw, agentId, 100)).answer.approved === true, 10_000);
    const counter = await gw.knex('usage_counters').where({ agent_id: agentId, window: 'daily' }).first();
    assert.equal(Number(counter.reserved), 200);
  });
});
