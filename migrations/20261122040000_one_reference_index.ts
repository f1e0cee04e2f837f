// `decisions` had two indexes on `reference`: (agent_id, reference) for the mirror's and the
// settlement's look-ups, and (reference) for finding a capture's agent. A reference is a
// processor's object id, unique in practice, so (reference) serves both; every decision with a
// reference, and every settlement that sets one, wrote both.
import type { Knex } from 'knex';

export async function up(knex: Knex): Promise<void> {
  await knex.raw('DROP INDEX IF EXISTS decisions_references');
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('CREATE INDEX IF NOT EXISTS decisions_references ON decisions (agent_id, reference) WHERE reference IS NOT NULL');
}
