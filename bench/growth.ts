// A ledger that has grown: one agent's lone check and settlement, on a fresh ledger whose
// statements were planned while the tables were empty, then again once `rows` more decisions are
// stored (half of them this agent's). A statement that reads more than its keys shows here: a
// settlement once cost ~89 ms at 100,000 rows this way.
import type { Knex } from 'knex';
import { createLedger } from '../src/ledger/ledger.js';
import type { CheckInput } from '../src/ledger/ledger.js';
import { compiledPolicy, savePolicy } from '../src/policy/store.js';
import { percentiles } from './http.js';

export interface GrowthFigures {
  label: string;
  checkP50Ms: number;
  settleP50Ms: number;
}

export async function benchGrowth(knex: Knex, rows: number): Promise<GrowthFigures[]> {
  const tag = `bench-growth-${Date.now()}`;
  await savePolicy(knex, { policy_id: tag, rules: [
    { rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 500, currency: 'USD' } },
    { rule_id: 'day', rule_type: 'velocity_limit', parameters: { limit: 100_000_000, currency: 'USD', window: 'daily' } },
  ] }, { create: true });
  const policy = await compiledPolicy(knex, tag, 1);
  const agentId = `${tag}-agent`;
  await knex('agents').insert({ id: agentId, owner: 'bench@example.com', policy_id: tag });
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
  const figures = [await measure('planned and run on a new agent', 'before')];
  await knex.raw(`
    insert into decisions (id, agent_id, policy_id, policy_version, action_type, amount, currency, decision, confidence, latency_ms,
                           idempotency_key, request_hash, created_at, status, counted_amount)
    select ? || i, case when i % 2 = 0 then ? else ? || (i % 500) end, ?, 1, 'payment', 100, 'usd', 'allow', '1.0', 1, 'grown-' || i, 'h',
           now() - (i % 30) * interval '1 day', case when i % 3 = 0 then 'reserved' else 'committed' end, 100
      from generate_series(1, ?::int) i`, [`chk_${tag}_`, agentId, `${tag}-other-`, tag, rows]);
  figures.push(await measure(`after ${rows.toLocaleString('en')} more decisions, half of them this agent's`, 'after'));
  return figures;
}
