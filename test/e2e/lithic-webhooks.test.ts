// Lithic Auth Stream Access (`POST /webhooks/lithic`) end to end, for what the Stripe e2e tests
// cover and Lithic had only unit tests for: with the database stalled, frozen or stopped, a signed
// ASA request is still answered within AUTH_DEADLINE_MS by AUTH_FAIL_MODE in Lithic's shape
// (`{result, token, approved_amount?}`), the late decision is reconciled (the day counts only what
// was approved) and the gateway answers normally once the database is back; the same request
// delivered concurrently and repeatedly to two processes on one PostgreSQL gets one answer and
// reserves once; and an amount that needs a human is declined now with an approval request stored.
// Requests are signed with Standard Webhooks headers (test/helpers/lithic-events.ts) and verified
// by the gateway through the official lithic SDK; cards are registered through the admin API.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { Knex } from 'knex';
import { until } from '../helpers/cards.js';
import { startFakeLithic } from '../helpers/fake-lithic.js';
import type { FakeLithic } from '../helpers/fake-lithic.js';
import { agentWithPolicy, databaseUrl, stallAgent, startTestGateway, testKnex, uniqueId, ownCluster } from '../helpers/gateway.js';
import type { OwnCluster, TestGateway } from '../helpers/gateway.js';
import { startGatewayProcesses } from '../helpers/gateway-process.js';
import type { GatewayProcess } from '../helpers/gateway-process.js';
import { lithicAsaRequest, lithicSecret, signLithic } from '../helpers/processor-events.js';
import type { LithicAsaBody } from '../helpers/processor-events.js';

const SECRET = lithicSecret();
const LITHIC_KEY = 'lithic-test-key';
const DEADLINE_MS = 400;
/** What the fail mode's decline (and any reason without a Lithic code of its own) answers. */
const SOFT_DECLINE = 'INSUFFICIENT_FUNDS';
const dailyHundred = [{ rule_id: 'daily', rule_type: 'velocity_limit', description: 'daily', parameters: { limit: 100, currency: 'USD', window: 'daily' } }];

interface AsaAnswer {
  result: string;
  token: string;
  approved_amount?: number;
}

let lithic: FakeLithic;
before(async () => {
  lithic = await startFakeLithic();
});
after(async () => {
  await lithic?.stop();
});

/**
 * One signed delivery of an ASA request to a gateway's agent port; `id` is the webhook-id. A
 * delivery never answered gives up after 30 s (an error, not a hang: a stalled test releases its
 * lock only once its deliveries are done).
 */
async function deliver(agentUrl: string, request: LithicAsaBody, id?: string) {
  const body = JSON.stringify(request);
  const started = performance.now();
  const headers = { 'content-type': 'application/json', ...signLithic(body, SECRET, id ? { id } : {}) };
  const res = await fetch(`${agentUrl}/webhooks/lithic`, { method: 'POST', headers, body, signal: AbortSignal.timeout(30_000) });
  const answer = (await res.json()) as AsaAnswer;
  return { status: res.status, answer, ms: performance.now() - started };
}

/** A card at (fake) Lithic, registered to the agent through the admin API, as the README says. */
async function registeredCard(admin: TestGateway['admin'], agentId: string): Promise<string> {
  const token = lithic.addCard({ memo: `agent card [agent_id=${agentId}]` }).token as string;
  const res = await admin('POST', '/cards', { card_id: token, agent_id: agentId, processor: 'lithic' });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return token;
}

async function daily(knex: Knex, agentId: string): Promise<number> {
  const row = await knex('usage_counters').where({ agent_id: agentId, window: 'daily', currency: 'usd' }).first();
  return Number(row?.reserved ?? 0);
}

function assertInTime(ms: number): void {
  assert.ok(ms < DEADLINE_MS + 250, `answered in ${Math.round(ms)} ms`);
}

describe('Lithic ASA with a stalled database (the agent ledger lock held elsewhere)', () => {
  let decline: TestGateway;
  let approveSmall: TestGateway;
  before(async () => {
    const env = { LITHIC_WEBHOOK_SECRET: SECRET, LITHIC_API_KEY: LITHIC_KEY, LITHIC_API_BASE: lithic.url, AUTH_DEADLINE_MS: String(DEADLINE_MS) };
    decline = await startTestGateway(env);
    approveSmall = await startTestGateway({ ...env, AUTH_FAIL_MODE: 'approve_under:10 USD' });
  });
  after(async () => {
    await decline?.stop();
    await approveSmall?.stop();
  });

  test('when reservations wait on a lock, then Lithic gets a decline with its token within the deadline, the late reservation is released, and the gateway approves again once the lock is gone', async () => {
    const { agentId } = await agentWithPolicy(decline, dailyHundred);
    const cardToken = await registeredCard(decline.admin, agentId);
    const warm = lithicAsaRequest({ cardToken, amount: 100 });
    assert.deepEqual((await deliver(decline.agentUrl, warm)).answer, { result: 'APPROVED', token: warm.token }); // and the caches are warm
    const stalled = [lithicAsaRequest({ cardToken, amount: 2000 }), lithicAsaRequest({ cardToken, amount: 3000 })];
    const release = await stallAgent(decline.knex, agentId);
    let answers;
    try {
      answers = await Promise.all(stalled.map((request) => deliver(decline.agentUrl, request)));
    } finally {
      await release();
    }
    answers.forEach(({ status, answer, ms }, i) => {
      assert.equal(status, 200);
      assert.deepEqual(answer, { result: SOFT_DECLINE, token: stalled[i]?.token }, 'declined by the fail mode, in Lithic\'s shape, with no approved_amount');
      assertInTime(ms);
    });
    // The first was inside a transaction when its answer left: it commits, then is released. The
    // second had not started: it never is.
    await until('the late reservations released', async () => {
      const late = await decline.knex('decisions').where({ agent_id: agentId }).whereNot({ amount: 100 });
      return late.length > 0 && late.every((r) => r.status === 'released');
    });
    const rows = await decline.knex('decisions').where({ agent_id: agentId });
    assert.ok(rows.length <= 3, `${rows.length} decisions`);
    assert.deepEqual(rows.filter((r) => r.status === 'reserved').map((r) => r.reference), [warm.token], 'only the approved swipe holds money');
    assert.equal(await daily(decline.knex, agentId), 100);

    const next = lithicAsaRequest({ cardToken, amount: 100 });
    const normal = await deliver(decline.agentUrl, next);
    assert.deepEqual(normal.answer, { result: 'APPROVED', token: next.token }, 'decided normally again');
    await until('the day at 200', async () => (await daily(decline.knex, agentId)) === 200);
  });

  test('when the fail mode approves small amounts, then a small one is APPROVED and stays counted, a large one declined and never counted', async () => {
    const { agentId } = await agentWithPolicy(approveSmall, dailyHundred);
    const cardToken = await registeredCard(approveSmall.admin, agentId);
    const warm = lithicAsaRequest({ cardToken, amount: 100 });
    assert.equal((await deliver(approveSmall.agentUrl, warm)).answer.result, 'APPROVED');
    const smallRequest = lithicAsaRequest({ cardToken, amount: 999 });
    const largeRequest = lithicAsaRequest({ cardToken, amount: 1000 });
    const release = await stallAgent(approveSmall.knex, agentId);
    let small;
    let large;
    try {
      small = await deliver(approveSmall.agentUrl, smallRequest);
      large = await deliver(approveSmall.agentUrl, largeRequest);
    } finally {
      await release();
    }
    assert.deepEqual(small.answer, { result: 'APPROVED', token: smallRequest.token }, 'approve_under:10 USD approves 9.99');
    assert.deepEqual(large.answer, { result: SOFT_DECLINE, token: largeRequest.token }, 'and declines 10.00');
    assertInTime(small.ms);
    assertInTime(large.ms);
    // The small one's late reservation stays (the money was approved); the large one holds nothing.
    await until('the small late reservation kept', async () => {
      const held = await approveSmall.knex('decisions').where({ agent_id: agentId, status: 'reserved' }).pluck('reference');
      return (await daily(approveSmall.knex, agentId)) === 100 + 999 && held.length === 2 && held.includes(smallRequest.token);
    });
    const largeRows = await approveSmall.knex('decisions').where({ agent_id: agentId, reference: largeRequest.token });
    assert.ok(largeRows.every((r) => r.status !== 'reserved'), 'nothing reserved for the declined 10.00');

    const next = lithicAsaRequest({ cardToken, amount: 100 });
    assert.deepEqual((await deliver(approveSmall.agentUrl, next)).answer, { result: 'APPROVED', token: next.token });
    await until('the day at 1,199', async () => (await daily(approveSmall.knex, agentId)) === 100 + 999 + 100);
  });
});

describe('Lithic ASA with PostgreSQL frozen or stopped', () => {
  let db: OwnCluster;
  let gw: TestGateway;
  before(async () => {
    db = await ownCluster('spendgate-lithic-stop-');
    // A webhook secret only (no API key): registration does not ask Lithic, and no card worker runs.
    gw = await startTestGateway({ DATABASE_URL: db.url, LITHIC_WEBHOOK_SECRET: SECRET, AUTH_DEADLINE_MS: String(DEADLINE_MS) });
  });
  after(async () => {
    await gw?.stop().catch(() => undefined);
    await db?.remove();
  });

  test('when PostgreSQL freezes (connections open, nothing answers), then Lithic gets declines in time, and after the thaw the day holds only the approved swipes', { timeout: 60_000 }, async () => {
    const { agentId } = await agentWithPolicy(gw, dailyHundred);
    const cardToken = await registeredCard(gw.admin, agentId);
    // Two approved first, so the process knows the card, the agent and its counters.
    for (let i = 0; i < 2; i++) assert.equal((await deliver(gw.agentUrl, lithicAsaRequest({ cardToken, amount: 100 }))).answer.result, 'APPROVED');
    const frozenRequests = [0, 1, 2].map(() => lithicAsaRequest({ cardToken, amount: 100 }));
    const thaw = db.freeze();
    let frozen;
    try {
      // Two at once (one batch in flight when the database froze, one queued behind it), then one more.
      frozen = [...(await Promise.all(frozenRequests.slice(0, 2).map((r) => deliver(gw.agentUrl, r)))), await deliver(gw.agentUrl, frozenRequests[2] as LithicAsaBody)];
    } finally {
      thaw();
    }
    frozen.forEach(({ status, answer, ms }, i) => {
      assert.equal(status, 200);
      assert.deepEqual(answer, { result: SOFT_DECLINE, token: frozenRequests[i]?.token });
      assertInTime(ms);
    });
    await until('an approval after the thaw', async () => (await deliver(gw.agentUrl, lithicAsaRequest({ cardToken, amount: 100 }))).answer.result === 'APPROVED');
    await until('the day at 300', async () => (await daily(gw.knex, agentId)) === 300);
    await gw.deps.ledger.flush();
    const reserved = await gw.knex('decisions').where({ agent_id: agentId, status: 'reserved' }).pluck('reference');
    assert.equal(reserved.length, 3, 'three reservations: the swipes approved');
    for (const r of frozenRequests) assert.ok(!reserved.includes(r.token), 'no swipe declined while frozen holds money');
  });

  test('when PostgreSQL stops, then Lithic still gets declines in time, and decisions resume when it is back', async () => {
    const { agentId } = await agentWithPolicy(gw, dailyHundred);
    const cardToken = await registeredCard(gw.admin, agentId);
    assert.equal((await deliver(gw.agentUrl, lithicAsaRequest({ cardToken, amount: 100 }))).answer.result, 'APPROVED');
    await db.stop();
    for (let i = 0; i < 3; i++) {
      const request = lithicAsaRequest({ cardToken, amount: 100 });
      const { status, answer, ms } = await deliver(gw.agentUrl, request);
      assert.equal(status, 200);
      assert.deepEqual(answer, { result: SOFT_DECLINE, token: request.token });
      assertInTime(ms);
    }
    await db.start();
    await until('an approval once PostgreSQL is back', async () => (await deliver(gw.agentUrl, lithicAsaRequest({ cardToken, amount: 100 }))).answer.result === 'APPROVED');
    await until('the day at 200', async () => (await daily(gw.knex, agentId)) === 200);
    await gw.deps.ledger.flush();
    assert.equal((await gw.knex('decisions').where({ agent_id: agentId, status: 'reserved' })).length, 2, 'two reservations: the swipes approved');
  });
});

describe('Lithic ASA across two gateway processes on one PostgreSQL', () => {
  const ADMIN = 'two-process-lithic-admin-00';
  let gateways: GatewayProcess[] = [];
  let knex: Knex;
  before(async () => {
    knex = testKnex(2);
    // Exactly-once is tested here, not the deadline: a delivery answered by the fail mode under
    // load would differ from its twins for that reason alone.
    gateways = await startGatewayProcesses(2, {
      DATABASE_URL: databaseUrl(), SPEND_ADMIN_TOKEN: ADMIN, LITHIC_WEBHOOK_SECRET: SECRET, LITHIC_API_KEY: LITHIC_KEY, LITHIC_API_BASE: lithic.url,
      AUTH_DEADLINE_MS: '10000', RECONCILE_CRON: 'off', MIRROR_RECONCILE_CRON: 'off',
    });
  });
  after(async () => {
    await Promise.all(gateways.map((g) => g.stop()));
    await knex?.destroy();
  });

  test('when 60 one-dollar requests are each delivered twice to both processes at once against a 30 USD daily limit, then redelivered to both under new webhook ids, then every delivery of a request gets the same answer and 30 are reserved, each once', async () => {
    const [a, b] = gateways as [GatewayProcess, GatewayProcess];
    const admin: TestGateway['admin'] = async (method, url, body) => {
      const res = await fetch(`http://127.0.0.1:${a.adminPort}/admin/v1${url}`, { method, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return { status: res.status, body: await res.json() };
    };
    const agentId = uniqueId('lithic-swiper');
    assert.equal((await admin('POST', '/policies', { policy_id: agentId, rules: [{ rule_id: 'daily', rule_type: 'velocity_limit', parameters: { limit: 30, currency: 'USD', window: 'daily' } }] })).status, 201);
    assert.equal((await admin('POST', '/agents', { id: agentId, owner: 'ops@example.com', policy_id: agentId })).status, 201);
    const cardToken = await registeredCard(admin, agentId);
    assert.ok(lithic.requests.some((r) => r.method === 'GET' && r.path === `/v1/cards/${cardToken}`), 'registration read the card at Lithic');

    // Half carry an event token (programs that have them), half do not.
    const requests = Array.from({ length: 60 }, (_, i) => lithicAsaRequest({ cardToken, amount: 100, ...(i % 2 === 0 ? { eventToken: randomUUID() } : {}) }));
    const urls = { a: `http://127.0.0.1:${a.port}`, b: `http://127.0.0.1:${b.port}` };
    const messageId = () => `msg_${randomBytes(12).toString('hex')}`;
    const racing = await Promise.all(requests.map((request) => {
      const id = messageId(); // a redelivery keeps its webhook-id
      return Promise.all([urls.a, urls.b, urls.a, urls.b].map((url) => deliver(url, request, id)));
    }));
    const later = await Promise.all(requests.map((request) => Promise.all([urls.b, urls.a].map((url) => deliver(url, request, messageId())))));

    const approved = new Set<string>();
    requests.forEach((request, i) => {
      const all = [...(racing[i] ?? []), ...(later[i] ?? [])];
      assert.equal(all.length, 6);
      const first = all[0]?.answer;
      assert.ok(first && ['APPROVED', 'VELOCITY_EXCEEDED'].includes(first.result), JSON.stringify(first));
      assert.deepEqual(first, { result: first.result, token: request.token });
      for (const { status, answer } of all) {
        assert.equal(status, 200);
        assert.deepEqual(answer, first, 'every delivery of one request gets the same answer');
      }
      if (first.result === 'APPROVED') approved.add(request.token);
    });
    assert.equal(approved.size, 30);

    const rows = await knex('decisions').where({ agent_id: agentId }).select('reference', 'status', 'source');
    assert.equal(rows.length, 60, 'one decision per request, however often it was delivered');
    assert.equal(new Set(rows.map((r) => r.reference)).size, 60);
    assert.ok(rows.every((r) => r.source === 'lithic'));
    const reserved = rows.filter((r) => r.status === 'reserved').map((r) => r.reference as string);
    assert.deepEqual(new Set(reserved), approved, 'the approved requests, and only they, hold money');
    assert.equal(await daily(knex, agentId), 3000);
  });
});

describe('Lithic ASA escalation', () => {
  let gw: TestGateway;
  before(async () => {
    // Not a deadline test: a generous deadline, so load on the machine never answers by fail mode.
    gw = await startTestGateway({ LITHIC_WEBHOOK_SECRET: SECRET, LITHIC_API_KEY: LITHIC_KEY, LITHIC_API_BASE: lithic.url, AUTH_DEADLINE_MS: '5000' });
  });
  after(async () => {
    await gw?.stop();
  });

  test('when the amount needs approval, then Lithic gets a decline now, an approval request is stored and listed, and a redelivery opens no second one', async () => {
    const { agentId } = await agentWithPolicy(gw, [...dailyHundred, { rule_id: 'human', rule_type: 'escalate_if', description: 'big', parameters: { amount_above: 20, currency: 'USD' } }]);
    const cardToken = await registeredCard(gw.admin, agentId);
    const small = lithicAsaRequest({ cardToken, amount: 1500 });
    assert.deepEqual((await deliver(gw.agentUrl, small)).answer, { result: 'APPROVED', token: small.token }, 'under the threshold: approved');

    const big = lithicAsaRequest({ cardToken, amount: 5000, merchant: { descriptor: 'BIG GPU RENTAL' } });
    const res = await deliver(gw.agentUrl, big);
    assert.equal(res.status, 200);
    assert.deepEqual(res.answer, { result: SOFT_DECLINE, token: big.token }, 'declined now, as a soft decline');
    const decision = await gw.knex('decisions').where({ agent_id: agentId, reference: big.token }).first();
    assert.equal(decision.decision, 'escalate');
    assert.equal(decision.status, null, 'nothing reserved for it');

    const listed = await gw.admin('GET', `/approvals?agent_id=${agentId}`);
    assert.equal(listed.status, 200);
    assert.equal(listed.body.pagination.total_count, 1);
    const [approval] = listed.body.data;
    assert.equal(approval.id, `apr_${String(decision.id).slice(4)}`);
    assert.equal(approval.check_id, decision.id);
    assert.equal(approval.status, 'pending');
    assert.equal(approval.source, 'lithic');
    assert.equal(approval.action_type, 'card_authorization');
    assert.equal(approval.amount, 5000);
    assert.equal(approval.currency, 'usd');
    assert.equal(approval.counterparty, 'BIG GPU RENTAL');
    assert.equal(approval.details.processor, 'lithic');
    assert.equal(approval.details.authorization_id, big.token);
    assert.equal(approval.details.card_id, cardToken);

    const again = await deliver(gw.agentUrl, big);
    assert.deepEqual(again.answer, res.answer, 'a redelivery gets the same answer');
    assert.equal((await gw.admin('GET', `/approvals?agent_id=${agentId}`)).body.pagination.total_count, 1, 'and opens no second approval request');
    assert.equal(await daily(gw.knex, agentId), 1500, 'the day holds only the approved swipe');
  });
});
