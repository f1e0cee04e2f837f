// Cards known to the gateway and what processors told us about card authorizations: the card
// registry (local status first, processor confirmation after), a frozen agent, the state of each
// authorization and its captures/refunds (so settlement events are idempotent and order-proof),
// and approval requests opened by escalations.
import type { Knex } from 'knex';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('agents', (t) => {
    t.timestamp('frozen_at', { useTz: true });
    t.text('frozen_reason');
  });
  await knex.schema.createTable('cards', (t) => {
    t.text('processor').notNullable(); // 'stripe' | 'lithic'
    t.text('id').notNullable(); // the processor's card id (Stripe ic_…, Lithic token)
    t.text('agent_id').notNullable().references('agents.id');
    // Local status decides authorizations: 'active' | 'frozen' | 'canceled'.
    t.text('status').notNullable().defaultTo('active');
    // What the processor last confirmed ('active' | 'frozen' | 'canceled' | 'pending'), null if never asked.
    t.text('processor_status');
    t.timestamp('processor_checked_at', { useTz: true });
    t.text('source').notNullable(); // 'mirror' | 'registered' | 'discovered'
    t.text('last4');
    t.text('currency');
    t.jsonb('metadata').notNullable().defaultTo('{}');
    t.timestamp('frozen_at', { useTz: true });
    t.text('frozen_reason');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['processor', 'id']);
    t.index(['agent_id']);
  });
  // One row per processor authorization: its last known state. Settlement recomputes the
  // authorization's reservations from this row and its transactions, never from deltas.
  await knex.schema.createTable('card_authorizations', (t) => {
    t.text('processor').notNullable();
    t.text('id').notNullable();
    t.text('agent_id').notNullable();
    t.text('card_id').notNullable();
    t.text('currency').notNullable();
    t.text('status').notNullable(); // 'pending' | 'closed' | 'reversed' | 'expired' | 'declined'
    t.boolean('approved').notNullable();
    t.bigInteger('amount').notNullable(); // held or finally authorized, minor units
    t.timestamp('occurred_at', { useTz: true }).notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['processor', 'id']);
  });
  await knex.schema.createTable('card_transactions', (t) => {
    t.text('processor').notNullable();
    t.text('id').notNullable();
    t.text('authorization_id');
    t.text('agent_id').notNullable();
    t.text('card_id').notNullable();
    t.text('type').notNullable(); // 'capture' | 'refund'
    t.bigInteger('amount').notNullable(); // positive, minor units
    t.text('currency').notNullable();
    t.timestamp('occurred_at', { useTz: true }).notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['processor', 'id']);
    t.index(['processor', 'authorization_id']);
  });
  // A capture names its authorization, not its agent: find the agent by the reservation's reference.
  await knex.raw('CREATE INDEX decisions_by_reference ON decisions (reference) WHERE reference IS NOT NULL');
  await knex.schema.createTable('approvals', (t) => {
    t.text('id').primary();
    t.text('agent_id').notNullable();
    t.text('check_id').notNullable().unique();
    t.text('source').notNullable(); // 'stripe' | 'lithic' | 'check' | …
    t.text('status').notNullable().defaultTo('pending');
    t.text('action_type').notNullable();
    t.bigInteger('amount').notNullable();
    t.text('currency').notNullable();
    t.text('counterparty');
    t.jsonb('details').notNullable().defaultTo('{}');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('expires_at', { useTz: true });
    t.index(['agent_id', 'created_at']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP INDEX IF EXISTS decisions_by_reference');
  for (const table of ['approvals', 'card_transactions', 'card_authorizations', 'cards']) await knex.schema.dropTableIfExists(table);
  await knex.schema.alterTable('agents', (t) => {
    t.dropColumn('frozen_at');
    t.dropColumn('frozen_reason');
  });
}
