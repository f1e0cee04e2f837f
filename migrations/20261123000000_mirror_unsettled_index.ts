// The mirror's calls whose outcome is not known yet (`unknown`, or left `reserved`), oldest first,
// for the reconciliation job (src/jobs/reconcile-mirror.ts) to find without reading every decision.
// Card authorizations share the source but carry no `endpoint`: theirs stay reserved until Stripe
// settles them through its events, and are not the job's.
import type { Knex } from 'knex';

export const PREDICATE = `source = 'stripe' AND status IN ('reserved', 'unknown') AND metadata->>'endpoint' IS NOT NULL`;

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`CREATE INDEX IF NOT EXISTS decisions_mirror_unsettled ON decisions (created_at) WHERE ${PREDICATE}`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP INDEX IF EXISTS decisions_mirror_unsettled');
}
