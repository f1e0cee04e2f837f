// A ledger that has grown, in a database of its own: one agent's lone check and settlement on a
// new ledger (its statements planned while the tables are empty), then again once `rows` more
// decisions are stored (half of them this agent's), on the same connection. A statement that reads
// more than its keys shows here: a settlement once took ~89 ms at 100,000 rows this way.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { connect, migrate } from '../src/db/database.js';
import { createLedger } from '../src/ledger/ledger.js';
import type { CheckInput } from '../src/ledger/ledger.js';
import { compiledPolicy, savePolicy } from '../src/policy/store.js';
import { percentiles } from './http.js';

export interface GrowthFigures {
  label: string;
  checkP50Ms: number;
  settleP50Ms: number;
}

async function admin(url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** Undefined when the database's user may not create a database. */
export async function benchGrowth(baseUrl: string, rows: number): Promise<GrowthFigures[] | undefined> {
  const name = `spendgate_growth_${randomBytes(4).toString('hex')}`;
  try {
    await admin(baseUrl, `create database ${name}`);
  } catch {
    return undefined;
  }
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  // One connection: the plans made before the growth are the ones used after it.
  const knex = connect(url.href, 1);
  try {
    await migrate(knex);
    // No ANALYZE between the rounds: it would have the plans remade on the grown tables.
    for (const table of ['decisions', 'usage_counters']) await knex.raw(`alter table ${table} set (autovacuum_enabled = off)`);
    await savePolicy(knex, { policy_id: 'growth', rules: [
      { rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 500, currency: 'USD' } },
      { rule_id: 'day', rule_type: 'velocity_limit', parameters: { limit: 100_000_000, currency: 'USD', window: 'daily' } },
    ] }, { create: true });
    const policy = await compiledPolicy(knex, 'growth', 1);
    const agentId = 'growth-agent';
    await knex('agents').insert({ id: agentId, owner: 'bench@example.com', policy_id: 'growth' });
    const ledger = createLedger(knex);
    const input = (key: string): CheckInput => ({
      agentId, timezone: 'UTC', policy, action: { actionType: 'payment', amount: 100, currency: 'usd' },
      idempotencyKey: key, requestHash: key, metadata: {}, now: new Date(), simulate: false,
    });
    // One call at a time, a millisecond apart: what one agent's checked call waits for.
    const measure = async (label: string, round: string): Promise<GrowthFigures> => {
      const checks: number[] = [];
      const settles: number[] = [];
      for (let i = 0; i < 300; i++) {
        await new Promise((r) => setTimeout(r, 1));
        let started = performance.now();
        const result = await ledger.check(input(`${round}-${i}`));
        checks.push(performance.now() - started);
        started = performance.now();
        await ledger.settle(agentId, `${round}-${i}`, 'committed', { reservation: result.reservation });
        settles.push(performance.now() - started);
      }
      return { label, checkP50Ms: percentiles(checks)(0.5), settleP50Ms: percentiles(settles)(0.5) };
    };
    const figures = [await measure('on empty tables', 'before')];
    await knex.raw(`
      insert into decisions (id, agent_id, policy_id, policy_version, action_type, amount, currency, decision, confidence, latency_ms,
                             idempotency_key, request_hash, created_at, status, counted_amount)
      select 'chk_grown_' || i, case when i % 2 = 0 then ? else 'other-' || (i % 500) end, 'growth', 1, 'payment', 100, 'usd', 'allow', '1.0', 1,
             'grown-' || i, 'h', now() - (i % 30) * interval '1 day', case when i % 3 = 0 then 'reserved' else 'committed' end, 100
        from generate_series(1, ?::int) i`, [agentId, rows]);
    figures.push(await measure(`after ${rows.toLocaleString('en')} more decisions, half of them this agent's`, 'after'));
    return figures;
  } finally {
    await knex.destroy();
    await admin(baseUrl, `drop database if exists ${name} with (force)`);
  }
}
