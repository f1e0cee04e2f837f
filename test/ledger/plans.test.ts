// The ledger's statements are planned once per connection (a generic plan, with the planner
// settings of ledger transactions): each must reach its rows through an index on the keys it is
// given. A plan made while a table was nearly empty (a fresh install, a new connection) is kept
// for as long as the connection lives, so it must stay a lookup of those keys once the table has
// grown: a scan of a whole index, or of all of an agent's history, would cost every batch more
// as the ledger fills up.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Knex } from 'knex';
import pg from 'pg';
import { STATEMENTS } from '../../src/ledger/statements.js';
import type { StatementName } from '../../src/ledger/statements.js';
import { PLANNER_SETTINGS } from '../../src/ledger/transaction.js';
import { testKnex } from '../helpers/gateway.js';
import { isolatedDatabase } from '../helpers/isolated-db.js';

let knex: Knex;
before(() => {
  knex = testKnex(1);
});
after(async () => {
  await knex.destroy();
});

for (const [name, sql] of Object.entries(STATEMENTS)) {
  test(`when the ledger's "${name}" statement is planned generically, then no table is scanned sequentially`, async () => {
    const plan = await knex.transaction(async (trx) => {
      await trx.raw(PLANNER_SETTINGS);
      const { rows } = await trx.raw(`explain (generic_plan) ${sql}`);
      return (rows as { 'QUERY PLAN': string }[]).map((r) => r['QUERY PLAN']).join('\n');
    });
    assert.doesNotMatch(plan, /Seq Scan/, plan);
    // Every ledger statement reaches a table through one of its indexes (the write: its ON CONFLICT arbiter).
    assert.match(plan, /Index/, plan);
  });
}

const NOW = new Date('2026-11-22T12:00:00Z');
const DAY = 86_400_000;
const today = new Date(Math.floor(NOW.getTime() / DAY) * DAY);
const tomorrow = new Date(today.getTime() + DAY);

/** One key of the hot agent, as each statement is called with it. */
const SAMPLES: Record<StatementName, unknown[]> = {
  previous: [['hot'], ['k-730']],
  counters: [['hot'], NOW, NOW],
  guards: [['hot'], ['stripe'], ['ic_42']],
  reservations: [['hot'], ['k-730']],
  settledCounters: [['hot'], ['k-730']],
  settleKnown: [['chk_730'], ['committed'], [100], [null], [100], ['hot'], ['k-730']],
  settle: [['chk_730'], ['committed'], [100], [null]],
  write: [
    ['chk_new'], ['hot'], ['p'], [1], ['payment'], [100], ['usd'], [''], [{}], ['allow'],
    [null], [null], [null], ['ok'], ['1.0'], [false], [1], ['k-new'], ['h'], [NOW], [true], ['stripe'],
    ['hot'], ['daily'], [today], [tomorrow], ['usd'], [''], [''], [100], [0], [1],
    [null], [null],
  ],
  writeIfUnchanged: [],
  writeSettlingIfUnchanged: [],
};
// The same write, checked against the counters it was decided from.
SAMPLES.writeIfUnchanged = [...SAMPLES.write, ['hot'], ['daily'], [today], [tomorrow], ['usd'], [''], [''], [0], [0], [0], ['hot'], NOW, NOW, ['stripe'], ['ic_1']];
// And with the settlement of an earlier reservation riding along.
SAMPLES.writeSettlingIfUnchanged = [...SAMPLES.writeIfUnchanged, ['chk_730'], ['committed'], [100], [null], [100]];

/** A SQL literal PostgreSQL coerces to the parameter's type (EXECUTE takes no bind parameters). */
function literal(client: pg.Client, value: unknown): string {
  const element = (v: unknown): string => {
    if (v === null) return 'NULL';
    const text = v instanceof Date ? v.toISOString() : typeof v === 'object' ? JSON.stringify(v) : String(v);
    return `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  };
  if (Array.isArray(value)) return client.escapeLiteral(`{${value.map(element).join(',')}}`);
  return client.escapeLiteral(value instanceof Date ? value.toISOString() : String(value));
}

interface PlanNode {
  'Node Type': string;
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  'Rows Removed by Filter'?: number;
  'Rows Removed by Join Filter'?: number;
  'Rows Removed by Index Recheck'?: number;
  Plans?: PlanNode[];
}

/** The most rows any node of the plan produced or threw away, over all its loops (EXPLAIN reports them per loop). */
function mostRowsTouched(node: PlanNode): number {
  const loops = node['Actual Loops'] ?? 1;
  const own = loops * Math.max(
    node['Actual Rows'] ?? 0,
    node['Rows Removed by Filter'] ?? 0,
    node['Rows Removed by Join Filter'] ?? 0,
    node['Rows Removed by Index Recheck'] ?? 0,
  );
  return Math.max(own, ...(node.Plans ?? []).map(mostRowsTouched));
}

/**
 * Plans every ledger statement on one connection while the tables hold `before` (nothing, or a
 * handful of rows PostgreSQL has analyzed), then fills them and runs each plan again.
 */
async function rowsTouchedAfterGrowth(before: 'empty' | 'a few analyzed rows'): Promise<string[]> {
  const db = await isolatedDatabase();
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  const inTransaction = async <T>(work: () => Promise<T>): Promise<T> => {
    await client.query(`begin; ${PLANNER_SETTINGS}`);
    try {
      return await work();
    } finally {
      await client.query('rollback');
    }
  };
  const execute = (name: string) => `execute "${name}"(${SAMPLES[name as StatementName].map((v) => literal(client, v)).join(', ')})`;
  try {
    // No statistics change under the test: the plans made first stay the connection's.
    for (const table of ['decisions', 'usage_counters', 'agents', 'cards']) await client.query(`alter table ${table} set (autovacuum_enabled = off)`);
    await client.query(`insert into agents (id, owner) values ('hot', 'ops@example.com')`);
    if (before === 'a few analyzed rows') {
      await fill(client, 3, 1);
      for (const table of ['decisions', 'usage_counters', 'agents', 'cards']) await client.query(`analyze ${table}`);
    }
    for (const [name, sql] of Object.entries(STATEMENTS)) {
      await client.query(`prepare "${name}" as ${sql}`);
      await inTransaction(() => client.query(execute(name)));
    }
    await fill(client, 6000, 365);
    const broad: string[] = [];
    for (const name of Object.keys(STATEMENTS)) {
      const plan = await inTransaction(async () => (await client.query(`explain (analyze, format json) ${execute(name)}`)).rows[0]['QUERY PLAN'][0].Plan as PlanNode);
      const touched = mostRowsTouched(plan);
      if (touched > 20) broad.push(`"${name}" touched ${touched} rows for one key:\n${JSON.stringify(plan, null, 1)}`);
    }
    return broad;
  } finally {
    await client.end();
    await db.drop();
  }
}

/** `decisions` reservations (half of them the hot agent's), a day's counter per agent and day, frozen agents and cards. */
async function fill(client: pg.Client, decisions: number, days: number): Promise<void> {
  const n = Math.max(1, Math.round(decisions / 6));
  await client.query(`insert into agents (id, owner, status) select 'agent-' || i, 'ops@example.com', case when i % 7 = 0 then 'frozen' else 'active' end from generate_series(1, $1::int) i on conflict do nothing`, [n]);
  await client.query(`insert into cards (processor, id, agent_id, status, source) select 'stripe', 'ic_' || i, 'hot', case when i % 7 = 0 then 'frozen' else 'active' end, 'registered' from generate_series(1, $1::int) i on conflict do nothing`, [n * 2]);
  await client.query(`
    insert into decisions (id, agent_id, policy_id, policy_version, action_type, amount, currency, decision, confidence, latency_ms,
                           idempotency_key, request_hash, created_at, status, counted_amount)
    select 'chk_' || i, a.agent_id, 'p', 1, 'payment', 100, 'usd', 'allow', '1.0', 1, 'k-' || i, 'h',
           $1::timestamptz - (i % 365) * interval '1 day', case when i % 3 = 0 then 'committed' else 'reserved' end, 100
      from generate_series(1, $2::int) i,
           lateral (select case when i % 2 = 0 then 'hot' else 'agent-' || (i % $3::int + 1) end as agent_id) a
    on conflict do nothing`, [NOW, decisions, n]);
  await client.query(`
    insert into usage_counters (agent_id, "window", window_start, window_end, currency, action_filter, counterparty, reserved, spent, count)
    select a.id, 'daily', $1::timestamptz - d * interval '1 day', $1::timestamptz - (d - 1) * interval '1 day', 'usd', '', '', 0, 0, 0
      from (select 'hot' as id union all select 'agent-' || i from generate_series(1, least($3::int, 20)) i) a, generate_series(0, $2::int) d
    on conflict do nothing`, [today, days, n]);
}

for (const before of ['empty', 'a few analyzed rows'] as const) {
  test(`when each ledger statement was planned on ${before === 'empty' ? 'empty tables' : 'tables holding a few analyzed rows'}, then once they hold thousands it still touches only the rows of its keys`, async () => {
    assert.deepEqual(Object.keys(SAMPLES).sort(), Object.keys(STATEMENTS).sort(), 'every ledger statement has a sample call here');
    assert.deepEqual(await rowsTouchedAfterGrowth(before), []);
  });
}
