// A second gateway process for concurrency tests: fires N concurrent checks of one agent through
// its own ledger and connection pool, then prints how many were allowed as JSON.
import { createLedger } from '../../src/ledger/ledger.js';
import { compiledPolicy } from '../../src/policy/store.js';
import { testKnex } from './gateway.js';

const [agentId = '', policyId = '', count = '100', amount = '100', tag = 'w'] = process.argv.slice(2);
const knex = testKnex(10);
const ledger = createLedger(knex);
const policy = await compiledPolicy(knex, policyId, 1);
// Start together: both processes wait for the same wall-clock instant.
const startAt = Number(process.env.START_AT ?? Date.now());
await new Promise((r) => setTimeout(r, Math.max(0, startAt - Date.now())));
const results = await Promise.all(
  Array.from({ length: Number(count) }, (_, i) =>
    ledger.check({
      agentId,
      timezone: 'UTC',
      policy,
      action: { actionType: 'payment', amount: Number(amount), currency: 'usd' },
      idempotencyKey: `${tag}-${i}`,
      requestHash: `${tag}-${i}`,
      metadata: {},
      now: new Date(),
      simulate: false,
    }),
  ),
);
await knex.destroy();
process.stdout.write(JSON.stringify({ allowed: results.filter((r) => r.decision.decision === 'allow').length }));
