// The ledger against real PostgreSQL: limits hold under concurrency in one process and across two,
// idempotency keys count once, and settlement moves money between reserved, spent and released.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import type { Knex } from 'knex';
import { DeadlineExceeded, createLedger } from '../../src/ledger/ledger.js';
import { agentLockKey } from '../../src/ledger/transaction.js';
import type { CheckInput, CheckResult, Ledger, LedgerOptions } from '../../src/ledger/ledger.js';
import type { Action, PolicyDocument } from '../../src/policy/model.js';
import { compiledPolicy, savePolicy } from '../../src/policy/store.js';
import { testKnex, uniqueId } from '../helpers/gateway.js';

const run = promisify(execFile);
let knex: Knex;
let ledger: Ledger;
before(() => {
  knex = testKnex(10);
  ledger = createLedger(knex);
});
after(async () => {
  await knex.destroy();
});

async function agentWith(rules: PolicyDocument['rules'], timezone = 'UTC') {
  const agentId = uniqueId('agent');
  const policyId = uniqueId('policy');
  await savePolicy(knex, { policy_id: policyId, rules }, { create: true });
  await knex('agents').insert({ id: agentId, owner: 'o@example.com', timezone, policy_id: policyId });
  return { agentId, policyId, timezone, policy: await compiledPolicy(knex, policyId, 1) };
}

function input(agent: Awaited<ReturnType<typeof agentWith>>, key: string, action: Partial<Action> = {}, now = new Date()): CheckInput {
  return {
    agentId: agent.agentId,
    timezone: agent.timezone,
    policy: agent.policy,
    action: { actionType: 'payment', amount: 100, currency: 'usd', ...action },
    idempotencyKey: key,
    requestHash: `${key}:${JSON.stringify(action)}`,
    metadata: {},
    now,
    simulate: false,
  };
}

const dailyFifty = [{ rule_id: 'daily', rule_type: 'velocity_limit', parameters: { limit: 50, currency: 'USD', window: 'daily' } }];

async function counters(agentId: string) {
  return knex('usage_counters').where({ agent_id: agentId });
}

test('when 200 concurrent reservations of 1 USD meet a 50 USD daily limit in one process, then exactly 50 pass', async () => {
  const agent = await agentWith(dailyFifty);
  const results = await Promise.all(Array.from({ length: 200 }, (_, i) => ledger.check(input(agent, `k${i}`))));
  assert.equal(results.filter((r) => r.decision.decision === 'allow').length, 50);
  assert.equal(results.filter((r) => r.decision.reasonCode === 'velocity_limit').length, 150);
  const [{ count } = { count: 0 }] = await knex('decisions').where({ agent_id: agent.agentId }).whereNotNull('status').count({ count: '*' });
  assert.equal(Number(count), 50);
  const [counter] = await counters(agent.agentId);
  assert.equal(counter.reserved, 5000);
});

test('when two gateway processes reserve 100 each against one 50 USD daily limit, then exactly 50 pass in total', async () => {
  const agent = await agentWith(dailyFifty);
  const worker = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'helpers', 'ledger-worker.ts');
  const env = { ...process.env, START_AT: String(Date.now() + 1500) };
  const spawnWorker = (tag: string) => run(process.execPath, ['--import', 'tsx', worker, agent.agentId, agent.policyId, '100', '100', tag], { env });
  const [a, b] = await Promise.all([spawnWorker('a'), spawnWorker('b')]);
  const allowedA = JSON.parse(a.stdout).allowed as number;
  const allowedB = JSON.parse(b.stdout).allowed as number;
  assert.equal(allowedA + allowedB, 50);
  const [{ count } = { count: 0 }] = await knex('decisions').where({ agent_id: agent.agentId }).whereNotNull('status').count({ count: '*' });
  assert.equal(Number(count), 50);
  const [counter] = await counters(agent.agentId);
  assert.equal(counter.reserved, 5000);
});

test('when the same idempotency key is checked concurrently and again later, then it counts once and answers the same', async () => {
  const agent = await agentWith(dailyFifty);
  const results = await Promise.all(Array.from({ length: 10 }, () => ledger.check(input(agent, 'same'))));
  const again = await ledger.check(input(agent, 'same'));
  assert.equal(new Set([...results, again].map((r) => r.checkId)).size, 1);
  assert.equal(results.filter((r) => !r.replayed).length, 1);
  assert.equal(again.replayed, true);
  const [counter] = await counters(agent.agentId);
  assert.equal(counter.reserved, 100);
  assert.equal(counter.count, 1);
});

test('when a key is reused with other parameters, then it is refused and nothing more is counted', async () => {
  const agent = await agentWith(dailyFifty);
  await ledger.check(input(agent, 'k', { amount: 100 }));
  await assert.rejects(ledger.check(input(agent, 'k', { amount: 200 })), /same parameters/);
  const [counter] = await counters(agent.agentId);
  assert.equal(counter.reserved, 100);
});

test('when reservations are committed, released or marked unknown, then the budget follows', async () => {
  const agent = await agentWith(dailyFifty);
  for (const key of ['a', 'b', 'c']) assert.equal((await ledger.check(input(agent, key, { amount: 1500 }))).decision.decision, 'allow');
  assert.equal((await ledger.check(input(agent, 'd', { amount: 1500 }))).decision.decision, 'block');
  assert.equal(await ledger.settle(agent.agentId, 'a', 'committed', { amount: 1000, reference: 'pi_123' }), 'committed');
  assert.equal(await ledger.settle(agent.agentId, 'b', 'released'), 'released');
  assert.equal(await ledger.settle(agent.agentId, 'c', 'unknown'), 'unknown');
  const [counter] = await counters(agent.agentId);
  assert.deepEqual({ reserved: counter.reserved, spent: counter.spent, count: counter.count }, { reserved: 1500, spent: 1000, count: 2 });
  // 10 spent + 15 unknown (stays reserved) = 25 used: 25 left.
  assert.equal((await ledger.check(input(agent, 'e', { amount: 2501 }))).decision.decision, 'block');
  assert.equal((await ledger.check(input(agent, 'f', { amount: 2500 }))).decision.decision, 'allow');
  // Committed is final; a released reservation stays released unless Stripe says the money moved.
  assert.equal(await ledger.settle(agent.agentId, 'a', 'released'), 'committed');
  assert.equal(await ledger.settle(agent.agentId, 'b', 'unknown'), 'released');
  assert.equal(await ledger.settle(agent.agentId, 'b', 'committed', { amount: 100 }), 'committed');
  const [after] = await counters(agent.agentId);
  assert.equal(after.spent, 1100, 'money that moved after all is counted');
  assert.equal((await knex('decisions').where({ agent_id: agent.agentId, idempotency_key: 'a' }).first()).reference, 'pi_123');
});

test('when a committed payment is revised (captured for less, or canceled), then the budget counts what moved, once, and a released one stays released', async () => {
  const agent = await agentWith(dailyFifty);
  for (const key of ['held', 'canceled', 'spent']) assert.equal((await ledger.check(input(agent, key, { amount: 1500 }))).decision.decision, 'allow');
  for (const key of ['held', 'canceled', 'spent']) await ledger.settle(agent.agentId, key, 'committed');
  assert.equal(await ledger.settle(agent.agentId, 'held', 'committed', { amount: 500 }), 'committed');
  assert.equal((await counters(agent.agentId))[0].spent, 4500, 'without revise, committed is final');

  assert.equal(await ledger.settle(agent.agentId, 'held', 'committed', { amount: 500, revise: true }), 'committed');
  assert.equal(await ledger.settle(agent.agentId, 'canceled', 'released', { revise: true }), 'released');
  const [counter] = await counters(agent.agentId);
  assert.deepEqual({ reserved: counter.reserved, spent: counter.spent, count: counter.count }, { reserved: 0, spent: 2000, count: 2 });
  // Given again (a retried capture, a cancel replayed), nothing changes.
  assert.equal(await ledger.settle(agent.agentId, 'held', 'committed', { amount: 500, revise: true }), 'committed');
  assert.equal(await ledger.settle(agent.agentId, 'canceled', 'released', { revise: true }), 'released');
  assert.equal(await ledger.settle(agent.agentId, 'canceled', 'committed', { amount: 1500, revise: true }), 'released', 'a revise never brings a released payment back');
  await assert.rejects(ledger.settle(agent.agentId, 'held', 'unknown', { revise: true }), /never unknown/);
  const [again] = await counters(agent.agentId);
  assert.deepEqual({ reserved: again.reserved, spent: again.spent, count: again.count }, { reserved: 0, spent: 2000, count: 2 });
  const held = await knex('decisions').where({ agent_id: agent.agentId, idempotency_key: 'held' }).first('status', 'counted_amount');
  assert.deepEqual({ ...held, counted_amount: Number(held.counted_amount) }, { status: 'committed', counted_amount: 500 });
  // The $30 freed is the agent's again: 20 counted, 30 left.
  assert.equal((await ledger.check(input(agent, 'rest', { amount: 3001 }))).decision.decision, 'block');
  assert.equal((await ledger.check(input(agent, 'rest2', { amount: 3000 }))).decision.decision, 'allow');
});

/** Every counter of an agent, without the agent id: comparable across agents. */
async function counterValues(agentId: string) {
  const rows = await knex('usage_counters').where({ agent_id: agentId }).orderBy(['window', 'currency', 'action_filter', 'counterparty']);
  return rows.map((c) => ({ window: c.window, currency: c.currency, filter: c.action_filter, counterparty: c.counterparty, reserved: Number(c.reserved), spent: Number(c.spent), count: c.count }));
}

/** The agent's counter of one window, counterparty ('' any) and currency ('' any), with no action filter. */
async function counterPicker(agentId: string) {
  const values = await counterValues(agentId);
  return (window: string, counterparty = '', currency = 'usd') => values.find((c) => c.window === window && c.counterparty === counterparty && c.currency === currency && c.filter === '');
}

const manyCounters = [
  ...dailyFifty,
  { rule_id: 'monthly', rule_type: 'velocity_limit', parameters: { limit: 500, currency: 'USD', window: 'monthly' } },
  { rule_id: 'refunds', rule_type: 'velocity_limit', parameters: { limit: 40, currency: 'USD', window: 'daily', action_types: ['refund'] } },
  { rule_id: 'rate', rule_type: 'rate_limit', parameters: { max_count: 100, window: 'daily' } },
  { rule_id: 'per_cp', rule_type: 'counterparty_limit', parameters: { max_count: 50, window: 'daily' } },
];

test('when reservations are settled with the reservation their check returned, then every counter ends as the general path leaves it', async () => {
  const known = await agentWith(manyCounters);
  const general = await agentWith(manyCounters);
  const actions: Partial<Action>[] = [
    { amount: 1500, counterparty: 'acme' }, { amount: 700, actionType: 'refund', counterparty: 'acme' },
    { amount: 900, counterparty: 'globex' }, { amount: 300, actionType: 'refund' }, { amount: 1200, counterparty: 'acme' },
  ];
  // committed for less, committed for more than reserved, released, unknown, committed as reserved
  const settlements = [['committed', 1000], ['committed', 800], ['released', undefined], ['unknown', undefined], ['committed', undefined]] as const;
  for (const agent of [known, general]) {
    const results: CheckResult[] = [];
    for (const [i, action] of actions.entries()) results.push(await ledger.check(input(agent, `s${i}`, action)));
    assert.ok(results.every((r) => r.decision.decision === 'allow' && r.reservation), 'every check reserved');
    await Promise.all(settlements.map(([status, amount], i) => ledger.settle(agent.agentId, `s${i}`, status, {
      ...(amount !== undefined ? { amount } : {}),
      ...(agent === known ? { reservation: results[i]?.reservation } : {}),
    })));
  }
  const values = await counterValues(known.agentId);
  assert.equal(values.length, 7, 'daily, monthly, refunds, rate and three counterparty counters');
  assert.deepEqual(values, await counterValues(general.agentId));
  const daily = values.find((c) => c.window === 'daily' && c.currency === 'usd' && c.filter === '' && c.counterparty === '');
  assert.deepEqual({ reserved: daily?.reserved, spent: daily?.spent, count: daily?.count }, { reserved: 300, spent: 1000 + 800 + 1200, count: 4 });
  const statuses = await knex('decisions').where({ agent_id: known.agentId }).orderBy('idempotency_key').select('status', 'counted_amount');
  assert.deepEqual(statuses.map((d) => [d.status, Number(d.counted_amount)]), [['committed', 1000], ['committed', 800], ['released', 900], ['unknown', 300], ['committed', 1200]]);
});

/**
 * A ledger on its own pool whose connections report the statements they are sent: `names` every
 * one (a simple-protocol text by its first word, an unnamed one as ''), `statements()` the
 * ledger's named statements since `clear()` but the lock every transaction starts with.
 */
function statementSpy(options: LedgerOptions = {}) {
  const spied = testKnex(2);
  const names: string[] = [];
  const client = spied.client as { acquireConnection(): Promise<{ query: (...args: unknown[]) => unknown; spied?: boolean }> };
  const acquire = client.acquireConnection.bind(client);
  client.acquireConnection = async () => {
    const connection = await acquire();
    if (!connection.spied) {
      const query = connection.query.bind(connection);
      connection.query = (statement: unknown, ...rest: unknown[]) => {
        names.push(typeof statement === 'string' ? statement.split(' ')[0] ?? '' : ((statement as { name?: string }).name ?? ''));
        return query(statement, ...rest);
      };
      connection.spied = true;
    }
    return connection;
  };
  return {
    ledger: createLedger(spied, options),
    names,
    statements: () => names.filter((n) => n.startsWith('ledger_') && n !== 'ledger_lock'),
    clear: () => {
      names.length = 0;
    },
    destroy: () => spied.destroy(),
  };
}

/** `run` with a statement spy, destroyed after it. */
async function withSpy(run: (spy: ReturnType<typeof statementSpy>) => Promise<void>, options: LedgerOptions = {}): Promise<void> {
  const spy = statementSpy(options);
  try {
    await run(spy);
  } finally {
    await spy.destroy();
  }
}

test('when a settlement is given the reservation its check returned, then it is one statement between BEGIN and COMMIT, with no read', () => withSpy(async (spy) => {
  const agent = await agentWith(dailyFifty);
  const result = await spy.ledger.check(input(agent, 'k', { amount: 1000 }));
  spy.clear();
  assert.equal(await spy.ledger.settle(agent.agentId, 'k', 'committed', { amount: 900, reservation: result.reservation }), 'committed');
  assert.deepEqual(spy.names, ['begin', 'ledger_lock', 'ledger_settleKnown', 'set'], 'BEGIN with the locks, the settlement, COMMIT (synchronous_commit off: it counts less)');
  spy.clear();
  // Already settled: the known path finds nothing to apply and the general path reads.
  assert.equal(await spy.ledger.settle(agent.agentId, 'k', 'released', { reservation: result.reservation }), 'committed');
  assert.deepEqual(spy.statements(), ['ledger_settleKnown', 'ledger_reservations', 'ledger_settledCounters']);
}));

const READS = ['ledger_guards', 'ledger_previous', 'ledger_counters'];

/** The agent's daily counter and the decision under `key`, as the database holds them now. */
async function dailyAndDecision(agentId: string, key: string) {
  const [counter] = await counters(agentId);
  const decision = await knex('decisions').where({ agent_id: agentId, idempotency_key: key }).first('status', 'counted_amount');
  return { reserved: Number(counter.reserved), spent: Number(counter.spent), count: counter.count, status: decision?.status, counted: Number(decision?.counted_amount) };
}

const WAIT_LONG = { settleDeferMs: 60_000 };

test("when a deferred settlement waits and its agent's next check comes, then both go in one write and the check is decided as the settlement leaves the budget", () => withSpy(async (spy) => {
  const agent = await agentWith(dailyFifty);
  await spy.ledger.check(input(agent, 'warm', { amount: 100 }));
  const first = await spy.ledger.check(input(agent, 'first', { amount: 3000 }));
  const released = spy.ledger.settle(agent.agentId, 'first', 'released', { reservation: first.reservation, defer: true });
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(await dailyAndDecision(agent.agentId, 'first'), { reserved: 3100, spent: 0, count: 2, status: 'reserved', counted: 3000 }, 'still waiting: counted in full');
  spy.clear();
  // 31 + 40 would pass the 50 limit; 1 + 40 does not: only the release makes room.
  const second = await spy.ledger.check(input(agent, 'second', { amount: 4000 }));
  assert.equal(second.decision.decision, 'allow');
  assert.equal(await released, 'released');
  assert.deepEqual(spy.names, ['begin', 'ledger_lock', 'ledger_writeSettlingIfUnchanged', 'commit'], 'one round trip, no read');
  assert.deepEqual(await dailyAndDecision(agent.agentId, 'first'), { reserved: 4100, spent: 0, count: 2, status: 'released', counted: 3000 });
}, WAIT_LONG));

test('when a deferred settlement has no check to ride with, then it waits settleDeferMs and is written on its own', () => withSpy(async (spy) => {
  const agent = await agentWith(dailyFifty);
  const first = await spy.ledger.check(input(agent, 'first', { amount: 3000 }));
  spy.clear();
  const settled = spy.ledger.settle(agent.agentId, 'first', 'committed', { amount: 2500, reservation: first.reservation, defer: true });
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(spy.statements(), [], 'still waiting');
  assert.equal(await settled, 'committed');
  assert.deepEqual(spy.statements(), ['ledger_settleKnown']);
  assert.deepEqual(await dailyAndDecision(agent.agentId, 'first'), { reserved: 0, spent: 2500, count: 1, status: 'committed', counted: 2500 });
}, { settleDeferMs: 300 }));

test('when flush() is called, then every deferred settlement is written before it returns', () => withSpy(async (spy) => {
  const agent = await agentWith(dailyFifty);
  const first = await spy.ledger.check(input(agent, 'first', { amount: 3000 }));
  const settled = spy.ledger.settle(agent.agentId, 'first', 'committed', { reservation: first.reservation, defer: true });
  await spy.ledger.flush(agent.agentId);
  assert.equal(await settled, 'committed');
  assert.deepEqual(await dailyAndDecision(agent.agentId, 'first'), { reserved: 0, spent: 3000, count: 1, status: 'committed', counted: 3000 });
}, WAIT_LONG));

test('when a deferred settlement was overtaken by another process settling the same reservation, then the batch takes the general path and the money counts once', () => withSpy(async (spy) => {
  const agent = await agentWith(dailyFifty);
  await spy.ledger.check(input(agent, 'warm', { amount: 100 }));
  const first = await spy.ledger.check(input(agent, 'first', { amount: 3000 }));
  const deferred = spy.ledger.settle(agent.agentId, 'first', 'committed', { reservation: first.reservation, defer: true });
  assert.equal(await ledger.settle(agent.agentId, 'first', 'released'), 'released', 'another process releases it');
  spy.clear();
  const second = await spy.ledger.check(input(agent, 'second', { amount: 1000 }));
  assert.equal(second.decision.decision, 'allow');
  // Stripe says the money moved after all: committed beats released, and it counts once.
  assert.equal(await deferred, 'committed');
  assert.deepEqual(spy.statements().slice(0, 3), ['ledger_writeSettlingIfUnchanged', 'ledger_guards', 'ledger_reservations'], 'the checked write wrote nothing; the batch was read again');
  assert.deepEqual(await dailyAndDecision(agent.agentId, 'first'), { reserved: 1100, spent: 3000, count: 3, status: 'committed', counted: 3000 });
  assert.equal((await ledger.check(input(agent, 'third', { amount: 1000 }))).decision.decision, 'block', '1 + 30 + 10 + 10 would pass 50');
}, WAIT_LONG));

test("when a deferred settlement's reservation is older than the counters the process knows, then the batch reads, and the agent's next check is again one write", () => withSpy(async (spy) => {
  const agent = await agentWith(dailyFifty);
  const start = Date.now();
  await spy.ledger.check(input(agent, 'warm', { amount: 100 }, new Date(start)));
  const old = await spy.ledger.check(input(agent, 'old', { amount: 1000 }, new Date(start + 1)));
  await spy.ledger.check(input(agent, 'between', { amount: 100 }, new Date(start + 2))); // the known span moves past 'old'
  const settled = spy.ledger.settle(agent.agentId, 'old', 'committed', { reservation: old.reservation, defer: true });
  spy.clear();
  assert.equal((await spy.ledger.check(input(agent, 'next', { amount: 100 }, new Date(start + 3)))).decision.decision, 'allow');
  assert.equal(await settled, 'committed');
  assert.deepEqual(spy.statements().slice(0, 2), ['ledger_guards', 'ledger_reservations'], 'no checked write: the general path read');
  spy.clear();
  await spy.ledger.check(input(agent, 'after', { amount: 100 }, new Date(start + 4)));
  assert.deepEqual(spy.statements(), ['ledger_writeIfUnchanged'], 'not taken for another process moving the counters');
  assert.deepEqual(await dailyAndDecision(agent.agentId, 'old'), { reserved: 400, spent: 1000, count: 5, status: 'committed', counted: 1000 });
}, WAIT_LONG));

test('when the process stops before a deferred settlement is written, then the reservation stays counted in full for every process', () => withSpy(async (spy) => {
  const agent = await agentWith(dailyFifty);
  const first = await spy.ledger.check(input(agent, 'first', { amount: 3000 }));
  spy.ledger.settle(agent.agentId, 'first', 'released', { reservation: first.reservation, defer: true }).catch(() => undefined);
  // The spy's process is gone (its pool destroyed below, the settlement never written); another one decides.
  assert.equal((await ledger.check(input(agent, 'other', { amount: 2500 }))).decision.decision, 'block');
  assert.deepEqual(await dailyAndDecision(agent.agentId, 'first'), { reserved: 3000, spent: 0, count: 1, status: 'reserved', counted: 3000 });
}, WAIT_LONG));

test("when a settlement of one agent and a check of another are taken together, then the settlement goes apart and the check still takes the one-write path", () => withSpy(async (spy) => {
  const [x, y, z] = [await agentWith(dailyFifty), await agentWith(dailyFifty), await agentWith(dailyFifty)];
  const reserved = await spy.ledger.check(input(x, 'x1', { amount: 3000 }));
  await spy.ledger.check(input(y, 'y0', { amount: 100 }));
  await new Promise((r) => setImmediate(r)); // y0's batch has left the in-flight set
  spy.clear();
  // While z's check is in flight, x's settlement and y's check wait and go in the next batch.
  const inFlight = spy.ledger.check(input(z, 'z1', { amount: 100 }));
  const settled = spy.ledger.settle(x.agentId, 'x1', 'committed', { reservation: reserved.reservation });
  const checked = spy.ledger.check(input(y, 'y1', { amount: 100 }));
  await inFlight;
  assert.equal(await settled, 'committed');
  assert.equal((await checked).decision.decision, 'allow');
  const sent = spy.statements();
  assert.deepEqual(sent.slice(0, 4), [...READS, 'ledger_write'], "z's first check reads");
  assert.deepEqual(sent.slice(4).sort(), ['ledger_settleKnown', 'ledger_writeIfUnchanged'], "then x's settlement and y's check, side by side");
  assert.deepEqual(await dailyAndDecision(x.agentId, 'x1'), { reserved: 0, spent: 3000, count: 1, status: 'committed', counted: 3000 });
}, { settleDeferMs: 0, overlapAfterMs: 60_000 }));

test("when an agent's counters are known to the process, then its next check is one round trip: BEGIN with its lock, the checked write, COMMIT", () => withSpy(async (spy) => {
  const agent = await agentWith(manyCounters);
  await spy.ledger.check(input(agent, 'first', { amount: 1000, counterparty: 'acme' }));
  assert.deepEqual(spy.statements(), [...READS, 'ledger_write'], 'the first check reads');
  spy.clear();
  const second = await spy.ledger.check(input(agent, 'second', { amount: 500, counterparty: 'acme' }));
  assert.equal(second.decision.decision, 'allow');
  assert.deepEqual(spy.names, ['begin', 'ledger_lock', 'ledger_writeIfUnchanged', 'commit'], 'no read: decided from the counters the first check left');
  // Every counter the reservation falls in moved, exactly as the general path moves them.
  const pick = await counterPicker(agent.agentId);
  assert.deepEqual([pick('daily')?.reserved, pick('monthly')?.reserved, pick('daily', '', '')?.count, pick('daily', '=acme', '')?.count], [1500, 1500, 2, 2]);
}));

test("when another process moved an agent's counters after this one saw them, then the checked write writes nothing and the check is decided on what the database holds", () => withSpy(async (spy) => {
  const agent = await agentWith(dailyFifty);
  assert.equal((await spy.ledger.check(input(agent, 'here', { amount: 3000 }))).decision.decision, 'allow');
  // Another process (its own ledger) reserves 15 USD of the 20 left.
  assert.equal((await createLedger(knex).check(input(agent, 'there', { amount: 1500 }))).decision.decision, 'allow');
  spy.clear();
  // From the counters it saw (30 USD), this process would allow 10 USD more; the truth is 45.
  const late = await spy.ledger.check(input(agent, 'late', { amount: 1000 }));
  assert.equal(late.decision.decision, 'block');
  assert.equal(late.decision.reasonCode, 'velocity_limit');
  assert.deepEqual(spy.statements(), ['ledger_writeIfUnchanged', ...READS, 'ledger_write'], 'the checked write, then the general path');
  spy.clear();
  // Two processes share this agent: for a while its checks here read first, and waste no write.
  assert.equal((await spy.ledger.check(input(agent, 'after', { amount: 500 }))).decision.decision, 'allow');
  assert.deepEqual(spy.statements(), [...READS, 'ledger_write']);
  const [counter] = await counters(agent.agentId);
  assert.deepEqual([Number(counter.reserved), counter.count], [5000, 3]);
  assert.equal((await knex('decisions').where({ agent_id: agent.agentId, idempotency_key: 'late' }).first()).status, null, 'recorded once, as a block');
}));

test('when a card or its agent is frozen after the counters were seen, then the next check on it is declined all the same', async () => {
  const agent = await agentWith(dailyFifty);
  const local = createLedger(knex);
  const card = { processor: 'stripe', id: uniqueId('ic') };
  await knex('cards').insert({ processor: card.processor, id: card.id, agent_id: agent.agentId, status: 'active', source: 'registered' });
  assert.equal((await local.check({ ...input(agent, 'a'), card })).decision.decision, 'allow');
  assert.equal((await local.check({ ...input(agent, 'b'), card })).decision.decision, 'allow');
  await knex('cards').where(card).update({ status: 'frozen' });
  const declined = await local.check({ ...input(agent, 'c'), card });
  assert.equal(declined.decision.decision, 'block');
  assert.match(declined.decision.message ?? '', /frozen/);
  await knex('cards').where(card).update({ status: 'active' });
  assert.equal((await local.check({ ...input(agent, 'd'), card })).decision.decision, 'allow');
  await knex('agents').where({ id: agent.agentId }).update({ status: 'frozen' });
  assert.equal((await local.check({ ...input(agent, 'e'), card })).decision.decision, 'block');
  const [counter] = await counters(agent.agentId);
  assert.deepEqual([Number(counter.reserved), counter.count], [300, 3]);
});

test('when a key decided without a read comes again, then it gets the same decision and counts once', async () => {
  const agent = await agentWith(dailyFifty);
  const local = createLedger(knex);
  await local.check(input(agent, 'seen'));
  const first = await local.check(input(agent, 'again', { amount: 700 }));
  const replay = await local.check(input(agent, 'again', { amount: 700 }));
  assert.equal(replay.replayed, true);
  assert.equal(replay.checkId, first.checkId);
  await assert.rejects(local.check(input(agent, 'again', { amount: 800 })), /same parameters/);
  const [counter] = await counters(agent.agentId);
  assert.deepEqual([Number(counter.reserved), counter.count], [800, 2]);
});

test('when a retried key or a frozen card sends a checked write back, then the agent is not taken for contended: its next check is still one round trip', () => withSpy(async (spy) => {
  const agent = await agentWith(dailyFifty);
  const card = { processor: 'stripe', id: uniqueId('ic') };
  await knex('cards').insert({ processor: card.processor, id: card.id, agent_id: agent.agentId, status: 'active', source: 'registered' });
  await spy.ledger.check({ ...input(agent, 'a'), card });
  await spy.ledger.check({ ...input(agent, 'b'), card });
  spy.clear();
  assert.equal((await spy.ledger.check({ ...input(agent, 'b'), card })).replayed, true);
  assert.deepEqual(spy.statements(), ['ledger_writeIfUnchanged', ...READS], 'the retry is answered by the general path');
  spy.clear();
  await spy.ledger.check({ ...input(agent, 'c'), card });
  assert.deepEqual(spy.statements(), ['ledger_writeIfUnchanged']);
  await knex('cards').where(card).update({ status: 'frozen' });
  assert.equal((await spy.ledger.check({ ...input(agent, 'd'), card })).decision.decision, 'block');
  await knex('cards').where(card).update({ status: 'active' });
  spy.clear();
  await spy.ledger.check({ ...input(agent, 'e'), card });
  assert.deepEqual(spy.statements(), ['ledger_writeIfUnchanged']);
  const [counter] = await counters(agent.agentId);
  assert.deepEqual([Number(counter.reserved), counter.count], [400, 4]);
}));

test('when another process changes one of two agents decided together, then both are decided on what the database holds', async () => {
  const [a, b] = [await agentWith(dailyFifty), await agentWith(dailyFifty)];
  const local = createLedger(knex);
  await Promise.all([local.check(input(a, 'warm', { amount: 2000 })), local.check(input(b, 'warm', { amount: 2000 }))]);
  await createLedger(knex).check(input(a, 'elsewhere', { amount: 2500 }));
  // a: 45 USD used, so 10 more are refused; b: 20 used, so 10 more pass.
  const [forA, forB] = await Promise.all([local.check(input(a, 'ten', { amount: 1000 })), local.check(input(b, 'ten', { amount: 1000 }))]);
  assert.deepEqual([forA.decision.decision, forB.decision.decision], ['block', 'allow']);
  const [[counterA], [counterB]] = [await counters(a.agentId), await counters(b.agentId)];
  assert.deepEqual([Number(counterA.reserved), Number(counterB.reserved)], [4500, 3000]);
});

test('when a partial approval is decided from known counters, then the smaller amount is reserved and the asked one kept', () => withSpy(async (spy) => {
  const agent = await agentWith(dailyFifty);
  await spy.ledger.check(input(agent, 'first', { amount: 3000 }));
  spy.clear();
  const partial = await spy.ledger.check({ ...input(agent, 'partial', { amount: 4000 }), allowPartial: true });
  assert.deepEqual([partial.decision.decision, partial.partialAmount], ['allow', 2000]);
  assert.deepEqual(spy.statements(), ['ledger_writeIfUnchanged']);
  const row = await knex('decisions').where({ id: partial.checkId }).first();
  assert.deepEqual([Number(row.amount), Number(row.counted_amount), row.metadata.requested_amount], [2000, 2000, 4000]);
  const [counter] = await counters(agent.agentId);
  assert.deepEqual([Number(counter.reserved), counter.count], [5000, 2]);
}));

test('when two processes that both know the counters race 200 reservations of 1 USD against a 50 USD daily limit, then exactly 50 pass', async () => {
  const agent = await agentWith(dailyFifty);
  const [one, two] = [createLedger(knex), createLedger(knex)];
  await one.check(input(agent, 'warm-one'));
  await two.check(input(agent, 'warm-two'));
  const results = await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 ? one : two).check(input(agent, `race-${i}`))));
  assert.equal(results.filter((r) => r.decision.decision === 'allow').length, 48);
  const [counter] = await counters(agent.agentId);
  assert.deepEqual([Number(counter.reserved), counter.count], [5000, 50]);
});

test('when a known reservation is settled, then the next check is decided without a read from the counters as the settlement left them', () => withSpy(async (spy) => {
  const agent = await agentWith(dailyFifty);
  const held = await spy.ledger.check(input(agent, 'held', { amount: 4000 }));
  assert.equal(await spy.ledger.settle(agent.agentId, 'held', 'released', { reservation: held.reservation }), 'released');
  spy.clear();
  assert.equal((await spy.ledger.check(input(agent, 'next', { amount: 4500 }))).decision.decision, 'allow', 'the released 40 USD are free again');
  assert.deepEqual(spy.statements(), ['ledger_writeIfUnchanged']);
  const committed = await spy.ledger.check(input(agent, 'small', { amount: 200 }));
  assert.equal(await spy.ledger.settle(agent.agentId, 'small', 'committed', { amount: 500, reservation: committed.reservation }), 'committed');
  spy.clear();
  assert.equal((await spy.ledger.check(input(agent, 'over', { amount: 1 }))).decision.decision, 'block', '45 + 5 USD spent: the limit is reached');
  assert.deepEqual(spy.statements(), [...READS, 'ledger_write'], 'a block is recorded by the general path');
  const [counter] = await counters(agent.agentId);
  assert.deepEqual([Number(counter.reserved), Number(counter.spent), counter.count], [4500, 500, 2]);
}));

test('when the day turns over, then the first check of the new day reads (a counter not seen yet) and the budget starts again', () => withSpy(async (spy) => {
  const agent = await agentWith(dailyFifty);
  const evening = new Date('2026-11-02T23:59:00Z');
  const morning = new Date('2026-11-03T00:00:00Z');
  await spy.ledger.check(input(agent, 'a', { amount: 4000 }, evening));
  assert.equal((await spy.ledger.check(input(agent, 'b', { amount: 1000 }, evening))).decision.decision, 'allow');
  spy.clear();
  assert.equal((await spy.ledger.check(input(agent, 'c', { amount: 5000 }, morning))).decision.decision, 'allow');
  assert.deepEqual(spy.statements(), [...READS, 'ledger_write']);
}));

test('when a reservation was settled elsewhere before its known settlement arrives, then that settlement takes the general path and counts once', async () => {
  const agent = await agentWith(dailyFifty);
  const result = await ledger.check(input(agent, 'k', { amount: 1000 }));
  assert.ok(result.reservation);
  // A retry in another process committed it first (no reservation given: the general path).
  assert.equal(await ledger.settle(agent.agentId, 'k', 'committed', { amount: 1000 }), 'committed');
  assert.equal(await ledger.settle(agent.agentId, 'k', 'released', { reservation: result.reservation }), 'committed', 'committed is final');
  assert.equal(await ledger.settle(agent.agentId, 'k', 'committed', { amount: 1000, reservation: result.reservation }), 'committed');
  const [counter] = await counters(agent.agentId);
  assert.deepEqual({ reserved: Number(counter.reserved), spent: Number(counter.spent), count: counter.count }, { reserved: 0, spent: 1000, count: 1 });
});

test("when a settlement names another agent's reservation, then that reservation is untouched and the agent's own key is settled", async () => {
  const [a, b] = [await agentWith(dailyFifty), await agentWith(dailyFifty)];
  const ofA = await ledger.check(input(a, 'k', { amount: 1000 }));
  await ledger.check(input(b, 'k', { amount: 700 }));
  assert.equal(await ledger.settle(b.agentId, 'k', 'released', { reservation: ofA.reservation }), 'released');
  assert.equal((await knex('decisions').where({ id: ofA.checkId }).first()).status, 'reserved');
  const [counterA] = await counters(a.agentId);
  const [counterB] = await counters(b.agentId);
  assert.deepEqual([Number(counterA.reserved), counterA.count, Number(counterB.reserved), counterB.count], [1000, 1, 0, 0]);
});

test('when 100 known reservations of one agent settle at once, then every counter moves by their sum', async () => {
  const agent = await agentWith(manyCounters);
  const results = await Promise.all(Array.from({ length: 100 }, (_, i) => ledger.check(input(agent, `m${i}`, { amount: 10, counterparty: i % 2 ? 'acme' : 'globex' }))));
  assert.equal(results.filter((r) => r.reservation).length, 100);
  const settled = await Promise.all(results.map((r, i) => ledger.settle(agent.agentId, `m${i}`, i < 60 ? 'committed' : 'released', { reservation: r.reservation })));
  assert.equal(settled.filter((s) => s === 'committed').length, 60);
  const pick = await counterPicker(agent.agentId);
  assert.deepEqual(pick('daily'), { window: 'daily', currency: 'usd', filter: '', counterparty: '', reserved: 0, spent: 600, count: 60 });
  assert.deepEqual(pick('monthly'), { window: 'monthly', currency: 'usd', filter: '', counterparty: '', reserved: 0, spent: 600, count: 60 });
  assert.deepEqual(pick('daily', '', '')?.count, 60, 'the rate counter (any currency)');
  assert.equal((pick('daily', '=acme', '')?.count ?? 0) + (pick('daily', '=globex', '')?.count ?? 0), 60, 'the counterparty counters');
});

test('when the policy gains a new limit mid-day, then its counter starts from what was already reserved today', async () => {
  const agent = await agentWith(dailyFifty);
  await ledger.check(input(agent, 'r1', { amount: 3000, actionType: 'refund' }));
  await ledger.check(input(agent, 'p1', { amount: 1000 }));
  await savePolicy(knex, { policy_id: agent.policyId, rules: [...dailyFifty, { rule_id: 'refunds', rule_type: 'velocity_limit', parameters: { limit: 35, currency: 'USD', window: 'daily', action_types: ['refund'] } }] });
  const v2 = { ...agent, policy: await compiledPolicy(knex, agent.policyId, 2) };
  const refund = await ledger.check(input(v2, 'r2', { amount: 501, actionType: 'refund' }));
  assert.equal(refund.decision.decision, 'block');
  assert.equal(refund.decision.violatedRuleId, 'refunds');
  assert.equal(refund.decision.policyVersion, 2);
  assert.equal((await ledger.check(input(v2, 'r3', { amount: 500, actionType: 'refund' }))).decision.decision, 'allow');
});

test('when the day turns over in the agent time zone, then the daily budget starts again', async () => {
  const agent = await agentWith(dailyFifty, 'America/New_York');
  // 23:59 on 2026-11-01 in New York (a 25-hour DST day) is 04:59 UTC on 2026-11-02.
  const lateEvening = new Date('2026-11-02T04:59:00Z');
  const nextMorning = new Date('2026-11-02T05:00:00Z');
  assert.equal((await ledger.check(input(agent, 'a', { amount: 5000 }, lateEvening))).decision.decision, 'allow');
  assert.equal((await ledger.check(input(agent, 'b', { amount: 1 }, lateEvening))).decision.decision, 'block');
  assert.equal((await ledger.check(input(agent, 'c', { amount: 5000 }, nextMorning))).decision.decision, 'allow');
});

test('when a check is simulated, then nothing is recorded or reserved', async () => {
  const agent = await agentWith(dailyFifty);
  const result = await ledger.check({ ...input(agent, 'sim', { amount: 5000 }), simulate: true });
  assert.equal(result.decision.decision, 'allow');
  assert.equal((await knex('decisions').where({ agent_id: agent.agentId })).length, 0);
  assert.equal((await counters(agent.agentId)).every((c) => c.reserved === 0), true);
});

test('when checks arrive while a batch is in flight, then they wait for it and go together in the next one', async () => {
  const agents = await Promise.all(Array.from({ length: 9 }, () => agentWith(dailyFifty)));
  const batching = createLedger(knex, { overlapAfterMs: 60_000 });
  const [first, ...rest] = agents as [Awaited<ReturnType<typeof agentWith>>, ...Awaited<ReturnType<typeof agentWith>>[]];
  const results = await Promise.all([batching.check(input(first, 'k')), ...rest.map((agent) => batching.check(input(agent, 'k')))]);
  assert.ok(results.every((r) => r.decision.decision === 'allow'));
  const stamps = await knex('decisions').whereIn('agent_id', agents.map((a) => a.agentId)).select('agent_id', knex.raw('xmin::text as xid'));
  const transactions = new Set(stamps.map((s: { xid: string }) => s.xid));
  assert.equal(stamps.length, 9);
  assert.equal(transactions.size, 2, 'the first check alone, then the eight that waited for it, in one transaction');
});

test('when a batch waits on a lock another process holds, then checks of other agents start beside it once it has run overlapAfterMs', async () => {
  const [stuck, free] = await Promise.all([agentWith(dailyFifty), agentWith(dailyFifty)]);
  const batching = createLedger(knex, { overlapAfterMs: 200 });
  const holder = await knex.transaction();
  await holder.raw(`select pg_advisory_xact_lock(${agentLockKey(stuck.agentId).toString()})`);
  let stuckDone = false;
  let waiting: Promise<CheckResult> | undefined;
  try {
    const started = performance.now();
    waiting = batching.check(input(stuck, 'k'));
    void waiting.then(() => (stuckDone = true), () => undefined);
    const result = await batching.check(input(free, 'k'));
    const waited = performance.now() - started;
    assert.equal(result.decision.decision, 'allow');
    assert.equal(stuckDone, false, 'decided while the first batch still waits on its lock');
    assert.ok(waited >= 190, `the second batch waited for the first ${waited.toFixed(0)} ms, not overlapAfterMs`);
  } finally {
    await holder.rollback();
  }
  assert.equal((await waiting).decision.decision, 'allow');
});

test('when every batch in flight hangs, then a queued check is dropped at its deadline, not kept until the database answers', async () => {
  const [a, b, queued] = await Promise.all([agentWith(dailyFifty), agentWith(dailyFifty), agentWith(dailyFifty)]);
  const batching = createLedger(knex, { maxConcurrentBatches: 2, overlapAfterMs: 20 });
  const holders = await Promise.all([a, b].map(async (agent) => {
    const holder = await knex.transaction();
    await holder.raw(`select pg_advisory_xact_lock(${agentLockKey(agent.agentId).toString()})`);
    return holder;
  }));
  const stuck: Promise<CheckResult>[] = [];
  try {
    stuck.push(batching.check(input(a, 'k')));
    await new Promise((r) => setTimeout(r, 60)); // the second batch starts beside the first after overlapAfterMs
    stuck.push(batching.check(input(b, 'k')));
    await new Promise((r) => setTimeout(r, 60));
    const started = performance.now();
    const late = batching.check({ ...input(queued, 'k'), deadline: started + 100 });
    const outcome = await Promise.race([late.then(() => 'decided', (error: unknown) => error), new Promise((r) => setTimeout(() => r('still queued after 3 s'), 3000))]);
    assert.ok(outcome instanceof DeadlineExceeded, String(outcome));
    const waited = performance.now() - started;
    assert.ok(waited < 1000, `rejected after ${waited.toFixed(0)} ms, with both batches still hung`);
  } finally {
    await Promise.all(holders.map((h) => h.rollback()));
  }
  assert.deepEqual((await Promise.all(stuck)).map((r) => r.decision.decision), ['allow', 'allow']);
  assert.equal((await knex('decisions').where({ agent_id: queued.agentId })).length, 0, 'the dropped check recorded nothing');
});

test('when someone tries to edit or delete a violation in the database, then PostgreSQL refuses', async () => {
  const agent = await agentWith([{ rule_id: 'cap', rule_type: 'max_amount', parameters: { limit: 1, currency: 'USD' } }]);
  const result = await ledger.check(input(agent, 'big', { amount: 500 }));
  assert.equal(result.decision.decision, 'block');
  await assert.rejects(knex('violations').where({ check_id: result.checkId }).update({ decision: 'allow' }), /append-only/);
  await assert.rejects(knex('violations').where({ check_id: result.checkId }).delete(), /append-only/);
  assert.equal((await knex('violations').where({ check_id: result.checkId })).length, 1);
});

test('when a gateway process is killed in the middle of reserving, then every counter still equals the reservations it sums', async () => {
  const agent = await agentWith([{ rule_id: 'daily', rule_type: 'velocity_limit', parameters: { limit: 1_000_000, currency: 'USD', window: 'daily' } }]);
  const worker = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'helpers', 'ledger-worker.ts');
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, ['--import', 'tsx', worker, agent.agentId, agent.policyId, '5000', '100', 'crash'], { env: process.env, stdio: 'ignore' });
  // Kill it once some batches have committed and others are surely in flight.
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const [{ n } = { n: 0 }] = await knex('decisions').where({ agent_id: agent.agentId }).count({ n: '*' });
    if (Number(n) >= 200) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  const reserved = await knex('decisions').where({ agent_id: agent.agentId, status: 'reserved' }).sum({ total: 'counted_amount' }).count({ n: '*' }).first();
  const [counter] = await counters(agent.agentId);
  assert.ok(Number(reserved?.n) >= 200 && Number(reserved?.n) < 5000, `killed part-way (${reserved?.n} reserved)`);
  assert.equal(counter.reserved, Number(reserved?.total));
  assert.equal(counter.count, Number(reserved?.n));
  // And the ledger carries on from there: the next reservation counts on top.
  assert.equal((await ledger.check(input(agent, 'after-crash', { amount: 100 }))).decision.decision, 'allow');
  const [after] = await counters(agent.agentId);
  assert.equal(after.reserved, Number(reserved?.total) + 100);
});
