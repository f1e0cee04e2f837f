// The policy core: agents, keys, versioned policies, the decision log (which doubles as the
// reservations), violations (append-only) and the usage counters derived from reservations.
import type { Knex } from 'knex';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('policies', (t) => {
    t.text('id').primary();
    t.text('name');
    t.text('description');
    t.integer('current_version').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.schema.createTable('policy_versions', (t) => {
    t.text('policy_id').notNullable().references('policies.id');
    t.integer('version').notNullable();
    t.text('format').notNullable(); // 'json' | 'spend_md'
    t.jsonb('document').notNullable();
    t.text('source');
    t.jsonb('unenforced').notNullable().defaultTo('[]');
    t.jsonb('inactive').notNullable().defaultTo('[]');
    t.text('created_by');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['policy_id', 'version']);
  });
  await knex.schema.createTable('agents', (t) => {
    t.text('id').primary();
    t.text('owner').notNullable();
    t.text('timezone').notNullable().defaultTo('UTC');
    t.text('policy_id').references('policies.id');
    t.text('status').notNullable().defaultTo('active');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.schema.createTable('api_keys', (t) => {
    t.text('id').primary();
    t.text('kind').notNullable(); // 'agent' | 'admin'
    t.text('agent_id').references('agents.id');
    t.text('mode'); // 'test' | 'live' for agent keys
    t.text('prefix').notNullable();
    t.binary('hash').notNullable().unique();
    t.text('description');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('expires_at', { useTz: true });
    t.timestamp('revoked_at', { useTz: true });
    t.index(['agent_id']);
  });
  // One row per recorded decision. An allowed decision is also a reservation: `status` tracks it
  // (reserved → committed | released | unknown) and `counted_amount` is what it counts.
  await knex.schema.createTable('decisions', (t) => {
    t.text('id').primary();
    t.text('agent_id').notNullable();
    t.text('policy_id').notNullable();
    t.integer('policy_version').notNullable();
    t.text('action_type').notNullable();
    t.bigInteger('amount').notNullable();
    t.text('currency').notNullable();
    t.text('counterparty').notNullable().defaultTo('');
    t.jsonb('metadata').notNullable().defaultTo('{}');
    t.text('decision').notNullable();
    t.text('reason_code');
    t.text('violated_rule_id');
    t.text('violated_rule_description');
    t.text('message');
    t.text('confidence').notNullable();
    t.boolean('notify').notNullable().defaultTo(false);
    t.integer('latency_ms').notNullable();
    t.text('idempotency_key').notNullable();
    t.text('request_hash').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable();
    t.text('status'); // null unless the decision reserved money
    t.bigInteger('counted_amount');
    t.text('reference'); // the processor's object id, once known
    t.timestamp('updated_at', { useTz: true });
    t.unique(['agent_id', 'idempotency_key']);
  });
  await knex.raw('CREATE INDEX decisions_reservations ON decisions (agent_id, created_at) WHERE status IS NOT NULL');
  await knex.schema.createTable('violations', (t) => {
    t.text('id').primary();
    t.bigIncrements('seq', { primaryKey: false });
    t.text('check_id').notNullable().unique();
    t.text('agent_id').notNullable();
    t.text('policy_id').notNullable();
    t.integer('policy_version').notNullable();
    t.text('action_type').notNullable();
    t.bigInteger('amount').notNullable();
    t.text('currency').notNullable();
    t.text('counterparty');
    t.text('decision').notNullable();
    t.text('reason_code');
    t.text('violated_rule_id');
    t.text('violated_rule_description');
    t.text('message');
    t.text('confidence').notNullable();
    t.integer('latency_ms').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable();
    t.index(['agent_id', 'seq']);
  });
  // The violations log is evidence: no UPDATE or DELETE, whoever asks.
  await knex.raw(`
    CREATE FUNCTION violations_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'violations are append-only'; END $$;
    CREATE TRIGGER violations_append_only BEFORE UPDATE OR DELETE ON violations
      FOR EACH ROW EXECUTE FUNCTION violations_append_only();
    CREATE TRIGGER violations_no_truncate BEFORE TRUNCATE ON violations
      FOR EACH STATEMENT EXECUTE FUNCTION violations_append_only();
  `);
  await knex.schema.createTable('usage_counters', (t) => {
    t.text('agent_id').notNullable();
    t.text('window').notNullable();
    t.timestamp('window_start', { useTz: true }).notNullable();
    t.timestamp('window_end', { useTz: true }).notNullable();
    t.text('currency').notNullable();
    t.text('action_filter').notNullable();
    t.text('counterparty').notNullable();
    t.bigInteger('reserved').notNullable();
    t.bigInteger('spent').notNullable();
    t.integer('count').notNullable();
    t.primary(['agent_id', 'window', 'window_start', 'currency', 'action_filter', 'counterparty']);
    t.index(['agent_id', 'window_end']);
  });
}

export async function down(knex: Knex): Promise<void> {
  for (const table of ['usage_counters', 'violations', 'decisions', 'api_keys', 'agents', 'policy_versions', 'policies']) {
    await knex.schema.dropTableIfExists(table);
  }
  await knex.raw('DROP FUNCTION IF EXISTS violations_append_only()');
}
