// The check API and the admin API when the database is slow or frozen: each request is answered
// 503 in its interface's shape within its deadline (CHECK_DEADLINE_MS, ADMIN_DEADLINE_MS) instead
// of waiting for the database for good. A check that lands late counts once for the agent's retry
// with the same Idempotency-Key, and is released when the caller gave no key; a freeze asked to
// wait for the processor has that wait on top of the deadline; the gateway recovers by itself.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { STRIPE_KEY, stripeCard, until } from '../helpers/cards.js';
import { startFakeStripe } from '../helpers/fake-stripe.js';
import type { FakeStripe } from '../helpers/fake-stripe.js';
import { agentWithPolicy, stallAgent, startTestGateway, ownCluster } from '../helpers/gateway.js';
import type { OwnCluster, TestGateway } from '../helpers/gateway.js';

// Room for a new agent's first check (key and policy read, then decided) in a parallel run on two
// cores: at 400 ms those warm-ups sometimes missed the deadline themselves.
const CHECK_DEADLINE_MS = 1000;
const ADMIN_DEADLINE_MS = 1500;
/** Past the deadline, what the 503 itself and a parallel test run on two cores may add. */
const SLACK_MS = 600;
const DAILY = [{ rule_id: 'daily', rule_type: 'velocity_limit', description: '$100 a day', parameters: { limit: 100, currency: 'USD', window: 'daily' } }];
const env = { CHECK_DEADLINE_MS: String(CHECK_DEADLINE_MS), ADMIN_DEADLINE_MS: String(ADMIN_DEADLINE_MS) };

/** The answer and how long it took; an error if none came within 5 s (without a deadline: never). */
async function timed<T>(call: Promise<T>): Promise<{ res: T; ms: number }> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const never = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('no answer within 5 s')), 5000);
  });
  try {
    const res = await Promise.race([call, never]);
    return { res, ms: performance.now() - started };
  } finally {
    clearTimeout(timer);
  }
}

const check = (gw: TestGateway, key: string, amount: number, headers: Record<string, string> = {}) =>
  gw.agent('POST', '/v1/checks', key, { action_type: 'payment', amount, currency: 'USD', counterparty: 'acme' }, headers);

async function daily(gw: TestGateway, agentId: string): Promise<{ reserved: number; count: number }> {
  await gw.deps.ledger.flush();
  const row = await gw.knex('usage_counters').where({ agent_id: agentId, window: 'daily' }).first();
  return { reserved: Number(row?.reserved ?? 0), count: Number(row?.count ?? 0) };
}

describe('a check or an admin request waiting on a lock', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startTestGateway(env);
  });
  after(async () => {
    await gw?.stop();
  });

  test('when a check waits on its agent\'s lock past CHECK_DEADLINE_MS, then it answers 503 api_error in time; the retry with the same Idempotency-Key counts once', async () => {
    const { key, agentId } = await agentWithPolicy(gw, DAILY);
    assert.equal((await check(gw, key, 10)).status, 200); // the key and policy are cached now
    const release = await stallAgent(gw.knex, agentId);
    let late;
    try {
      late = await timed(check(gw, key, 25, { 'Idempotency-Key': 'stalled-check' }));
    } finally {
      await release();
    }
    assert.equal(late.res.status, 503);
    assert.equal(late.res.body.error.type, 'api_error');
    assert.equal(late.res.body.error.code, 'unavailable');
    assert.match(late.res.body.error.message, /within \d+ ms.*same Idempotency-Key is safe/);
    assert.match(late.res.body.error.request_id, /^req_/);
    assert.ok(late.ms >= CHECK_DEADLINE_MS && late.ms < CHECK_DEADLINE_MS + SLACK_MS, `answered in ${Math.round(late.ms)} ms`);

    // Inside its transaction when the answer left, the check lands reserved; still queued, it never
    // starts. Either way the retry gets one decision, counted once.
    const retried = await check(gw, key, 25, { 'Idempotency-Key': 'stalled-check' });
    assert.equal(retried.status, 200);
    assert.equal(retried.body.decision, 'allow');
    const again = await check(gw, key, 25, { 'Idempotency-Key': 'stalled-check' });
    assert.equal(again.body.check_id, retried.body.check_id);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(await daily(gw, agentId), { reserved: 3500, count: 2 });
  });

  test('when a check without an Idempotency-Key lands after its 503, then its reservation is released (no retry can replay it)', async () => {
    const { key, agentId } = await agentWithPolicy(gw, DAILY);
    assert.equal((await check(gw, key, 10)).status, 200);
    const release = await stallAgent(gw.knex, agentId);
    let late;
    try {
      // The check joins a batch at once (nothing else of this agent is in flight) and waits on the lock.
      late = await timed(check(gw, key, 40));
      assert.equal(late.res.status, 503);
    } finally {
      await release();
    }
    // It was inside its transaction, waiting on the lock, when the answer left: it lands, then is released.
    await until('the late check released', async () => {
      const rows = await gw.knex('decisions').where({ agent_id: agentId, amount: 4000 });
      return rows.length === 1 && rows[0].status === 'released';
    });
    assert.equal((await daily(gw, agentId)).reserved, 1000, 'only the first check stays counted');
    assert.equal((await check(gw, key, 90)).body.decision, 'allow', 'the released $40 is budget again');
  });

  test('when the client of a keyless check gives up before the deadline and the check lands afterwards, then its reservation is released', async () => {
    const { key, agentId } = await agentWithPolicy(gw, DAILY);
    assert.equal((await check(gw, key, 10)).status, 200);
    const release = await stallAgent(gw.knex, agentId);
    try {
      const gaveUp = fetch(`${gw.agentUrl}/v1/checks`, {
        method: 'POST',
        headers: { 'x-api-key': key, 'content-type': 'application/json' },
        body: JSON.stringify({ action_type: 'payment', amount: 30, currency: 'USD', counterparty: 'acme' }),
        signal: AbortSignal.timeout(150), // the client's own timeout, shorter than CHECK_DEADLINE_MS
      });
      await assert.rejects(gaveUp, /aborted|timeout/i);
      await new Promise((r) => setTimeout(r, 50)); // the gateway sees the connection close
    } finally {
      await release();
    }
    await until('the abandoned check released', async () => {
      const rows = await gw.knex('decisions').where({ agent_id: agentId, amount: 3000 });
      return rows.length === 1 && rows[0].status === 'released';
    });
    assert.equal((await daily(gw, agentId)).reserved, 1000);
  });

  test('when an admin request is answered 503 while its credentials are still being read, then it never runs', async () => {
    const { agentId } = await agentWithPolicy(gw, DAILY);
    const created = await gw.admin('POST', '/admin-keys', {});
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const trx = await gw.knex.transaction();
    await trx.raw('lock table api_keys in access exclusive mode'); // the new key's look-up waits
    let late;
    try {
      // No body, so nothing is left to read once the look-up answers: the freeze itself would run.
      late = await timed(fetch(`${gw.adminUrl}/admin/v1/agents/${agentId}/freeze`, { method: 'POST', headers: { authorization: `Bearer ${created.body.key as string}` } }));
    } finally {
      await trx.rollback();
    }
    assert.equal(late.res.status, 503);
    await new Promise((r) => setTimeout(r, 500)); // the look-up has answered by now
    assert.equal((await gw.admin('GET', `/agents/${agentId}`)).body.status, 'active', 'not frozen after its 503');
  });

  test('when an admin request waits on a locked table past ADMIN_DEADLINE_MS, then it answers 503 in the admin shape in time, and the late result changes nothing', async () => {
    const trx = await gw.knex.transaction();
    await trx.raw('lock table agents in access exclusive mode');
    let late;
    try {
      late = await timed(gw.admin('POST', '/agents', { id: 'deadline-late-agent', owner: 'ops@example.com' }));
    } finally {
      await trx.rollback();
    }
    assert.equal(late.res.status, 503);
    assert.deepEqual(Object.keys(late.res.body.error).sort(), ['code', 'message', 'request_id']);
    assert.equal(late.res.body.error.code, 'unavailable');
    assert.match(late.res.body.error.message, /may still complete: read the current state/);
    assert.ok(late.ms >= ADMIN_DEADLINE_MS && late.ms < ADMIN_DEADLINE_MS + SLACK_MS, `answered in ${Math.round(late.ms)} ms`);
    // The handler finished after the 503: the agent exists once, and the gateway goes on answering.
    await until('the late creation', async () => (await gw.admin('GET', '/agents/deadline-late-agent')).status === 200);
    const again = await gw.admin('POST', '/agents', { id: 'deadline-late-agent', owner: 'ops@example.com' });
    assert.equal(again.status, 409);
  });
});

describe('a freeze that waits for the processor', () => {
  let fake: FakeStripe;
  let gw: TestGateway;
  before(async () => {
    fake = await startFakeStripe();
    gw = await startTestGateway({ ...env, STRIPE_SECRET_KEY: STRIPE_KEY, STRIPE_API_BASE: fake.url });
  });
  after(async () => {
    await gw?.stop();
    await fake?.stop();
  });

  test('when Stripe confirms a freeze after longer than ADMIN_DEADLINE_MS but within wait_ms, then the answer is the confirmed freeze, not a 503', async () => {
    const { agentId } = await agentWithPolicy(gw, DAILY);
    const card = await stripeCard(fake, agentId);
    assert.equal((await gw.admin('POST', '/cards', { card_id: card, agent_id: agentId, processor: 'stripe' })).status, 201);
    fake.on('POST', `/v1/issuing/cards/${card}`, { delayMs: ADMIN_DEADLINE_MS + 300, times: 1 });
    const { res, ms } = await timed(gw.admin('POST', `/cards/${card}/freeze`, { wait_ms: 5000 }));
    assert.ok(ms > ADMIN_DEADLINE_MS + 300, `Stripe was slow (${Math.round(ms)} ms)`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(fake.get(card)?.status, 'inactive');
  });
});

describe('a frozen database', () => {
  let db: OwnCluster;
  let gw: TestGateway;
  before(async () => {
    db = await ownCluster('spendgate-api-deadline-');
    gw = await startTestGateway({ ...env, DATABASE_URL: db.url });
  });
  after(async () => {
    await gw?.stop().catch(() => undefined);
    await db?.remove();
  });

  test('when PostgreSQL freezes (connections open, nothing answers), then checks and admin requests answer 503 in time (never 500); both work again when it thaws', { timeout: 30_000 }, async () => {
    const { key, agentId } = await agentWithPolicy(gw, DAILY);
    assert.equal((await check(gw, key, 10)).status, 200); // cached key and policy
    const fresh = await agentWithPolicy(gw, DAILY); // a key the gateway has not read yet
    const suspect = await agentWithPolicy(gw, DAILY);
    await gw.deps.ledger.flush();
    const thaw = db.freeze();
    let answers;
    try {
      answers = [
        ['check, cached key', CHECK_DEADLINE_MS, await timed(check(gw, key, 10, { 'Idempotency-Key': 'frozen-1' }))],
        ['check, new key', CHECK_DEADLINE_MS, await timed(check(gw, fresh.key, 10))],
        ['admin list', ADMIN_DEADLINE_MS, await timed(gw.admin('GET', '/agents'))],
        ['admin freeze', ADMIN_DEADLINE_MS, await timed(gw.admin('POST', `/agents/${suspect.agentId}/freeze`, { wait_ms: 0 }))],
      ] as const;
    } finally {
      thaw();
    }
    for (const [what, deadline, { res, ms }] of answers) {
      assert.equal(res.status, 503, what);
      assert.equal(res.body.error.code, 'unavailable', what);
      assert.ok(ms < deadline + SLACK_MS, `${what}: answered in ${Math.round(ms)} ms`);
    }
    await until('checks and admin requests passing after the thaw', async () =>
      (await check(gw, fresh.key, 10)).status === 200 && (await gw.admin('GET', '/agents')).status === 200, 10_000);
    const retried = await check(gw, key, 10, { 'Idempotency-Key': 'frozen-1' });
    assert.equal(retried.status, 200);
    assert.equal((await daily(gw, agentId)).reserved, 2000, 'the check made during the freeze counts once');
    // The freeze answered 503 may have landed later or failed (its connection never opened): a
    // retry freezes the agent either way.
    const again = await gw.admin('POST', `/agents/${suspect.agentId}/freeze`, { wait_ms: 0 });
    assert.ok(again.status === 200 || again.status === 202, JSON.stringify(again.body));
    assert.equal((await gw.admin('GET', `/agents/${suspect.agentId}`)).body.status, 'frozen');
  });
});
