// The ledger's statements are planned once per connection (a generic plan, with sequential scans
// disabled in the ledger's transactions): each must reach its rows through an index, or a plan made
// while a table was nearly empty would scan the whole table on every batch once it has grown.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Knex } from 'knex';
import { STATEMENTS } from '../../src/ledger/statements.js';
import { testKnex } from '../helpers/gateway.js';

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
      await trx.raw('set local enable_seqscan = off');
      const { rows } = await trx.raw(`explain (generic_plan) ${sql}`);
      return (rows as { 'QUERY PLAN': string }[]).map((r) => r['QUERY PLAN']).join('\n');
    });
    assert.doesNotMatch(plan, /Seq Scan/, plan);
    // Every ledger statement reaches a table through one of its indexes (the write: its ON CONFLICT arbiter).
    assert.match(plan, /Index/, plan);
  });
}
