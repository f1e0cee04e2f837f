// Where a decision came from (the check API, the Stripe mirror, later webhooks), so the
// money-moving ones can be listed as transactions.
import type { Knex } from 'knex';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('decisions', (t) => {
    t.text('source').notNullable().defaultTo('check');
  });
  await knex.raw(`CREATE INDEX decisions_transactions ON decisions (created_at DESC) WHERE source <> 'check'`);
  // The mirror asks "did I already count this Stripe object?" before counting a capture.
  await knex.raw('CREATE INDEX decisions_references ON decisions (agent_id, reference) WHERE reference IS NOT NULL');
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP INDEX IF EXISTS decisions_transactions');
  await knex.raw('DROP INDEX IF EXISTS decisions_references');
  await knex.schema.alterTable('decisions', (t) => {
    t.dropColumn('source');
  });
}
