// Durable reservations per second: one hot budget (every request on one agent) and 64 budgets.
import type { Knex } from 'knex';
import { createLedger } from '../src/ledger/ledger.js';
import type { CheckInput } from '../src/ledger/ledger.js';
import { compiledPolicy, savePolicy } from '../src/policy/store.js';
import { percentiles } from './http.js';

export interface LedgerFigures {
  budgets: number;
  reservations: number;
  concurrency: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
}

export async function benchLedger(knex: Knex, budgets: number, total: number, concurrency: number, maxBatch = 256): Promise<LedgerFigures> {
  const tag = `bench-${budgets}-${maxBatch}-${Date.now()}`;
  await savePolicy(knex, { policy_id: tag, rules: [
    { rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 500, currency: 'USD' } },
    { rule_id: 'day', rule_type: 'velocity_limit', parameters: { limit: 100_000_000, currency: 'USD', window: 'daily' } },
    { rule_id: 'month', rule_type: 'velocity_limit', parameters: { limit: 1_000_000_000, currency: 'USD', window: 'monthly' } },
  ] }, { create: true });
  const policy = await compiledPolicy(knex, tag, 1);
  const agents = Array.from({ length: budgets }, (_, i) => `${tag}-a${i}`);
  await knex('agents').insert(agents.map((id) => ({ id, owner: 'bench@example.com', policy_id: tag })));
  const ledger = createLedger(knex, { maxBatch });
  const input = (i: number): CheckInput => ({
    agentId: agents[i % budgets] ?? '', timezone: 'UTC', policy, action: { actionType: 'payment', amount: 100, currency: 'usd' },
    idempotencyKey: `k${i}`, requestHash: `k${i}`, metadata: {}, now: new Date(), simulate: false,
  });
  // Warm up the pool and the counters.
  await Promise.all(Array.from({ length: Math.min(200, total) }, (_, i) => ledger.check(input(total + i))));
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < total) {
      const i = next++;
      const t0 = performance.now();
      const result = await ledger.check(input(i));
      latencies.push(performance.now() - t0);
      if (result.decision.decision !== 'allow') throw new Error(`unexpected ${result.decision.decision}`);
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  const pct = percentiles(latencies);
  return { budgets, reservations: total, concurrency, perSecond: Math.round(total / seconds), p50Ms: pct(0.5), p99Ms: pct(0.99) };
}
