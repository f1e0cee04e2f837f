// The freeze machinery's durable state: freeze/unfreeze jobs as operators asked for them, the
// queue of processor calls that carries them out (claimed with FOR UPDATE SKIP LOCKED, so several
// gateway processes share it and a crash half-way resumes), security events the reconciliation
// raises, and one row per scheduled-job run so a cron tick runs once across processes.
import type { Knex } from 'knex';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('card_jobs', (t) => {
    t.text('id').primary();
    t.text('action').notNullable(); // 'freeze' | 'unfreeze'
    t.jsonb('scope').notNullable(); // {"all": true} | {"agent_id": …} | {"processor", "card_id"}
    t.text('reason');
    t.text('requested_by');
    t.integer('total').notNullable().defaultTo(0);
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.schema.createTable('card_commands', (t) => {
    t.bigIncrements('id').primary();
    t.text('job_id').references('card_jobs.id').onDelete('CASCADE');
    t.text('processor').notNullable();
    t.text('card_id').notNullable();
    t.text('action').notNullable(); // 'freeze' | 'unfreeze' | 'apply_controls'
    t.jsonb('payload');
    // 'pending' until the processor confirms ('confirmed'), refuses for good ('failed'), or a
    // newer command for the same card replaces it ('superseded').
    t.text('status').notNullable().defaultTo('pending');
    t.integer('attempts').notNullable().defaultTo(0);
    // When a worker may (re)try it; a claimed command's lease pushes this into the future.
    t.timestamp('next_attempt_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.text('last_error');
    t.text('last_error_kind');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('completed_at', { useTz: true });
    t.index(['job_id']);
    t.index(['processor', 'card_id']);
  });
  await knex.raw(`create index card_commands_due on card_commands (next_attempt_at) where status = 'pending'`);
  await knex.schema.createTable('security_events', (t) => {
    t.bigIncrements('id').primary();
    t.text('type').notNullable(); // e.g. 'card_reactivated_outside_gateway'
    t.text('processor');
    t.text('card_id');
    t.text('agent_id');
    t.text('message').notNullable();
    t.jsonb('details').notNullable().defaultTo('{}');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.index(['created_at']);
    t.index(['agent_id', 'created_at']);
  });
  await knex.schema.createTable('job_runs', (t) => {
    t.text('job').notNullable();
    t.timestamp('slot', { useTz: true }).notNullable(); // the scheduled minute
    t.timestamp('started_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.jsonb('result');
    t.primary(['job', 'slot']);
  });
}

export async function down(knex: Knex): Promise<void> {
  for (const table of ['job_runs', 'security_events', 'card_commands', 'card_jobs']) await knex.schema.dropTableIfExists(table);
}
