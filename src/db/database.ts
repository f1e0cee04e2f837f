// PostgreSQL through knex: the pool, the migrations, and readiness. bigint columns come back as
// numbers: every amount is a safe integer of minor units (checked where it enters).
import knexFactory from 'knex';
import type { Knex } from 'knex';
import pg from 'pg';
import * as policyCore from '../../migrations/20261122000000_policy_core.js';
import * as transactions from '../../migrations/20261122010000_transactions.js';
import * as cards from '../../migrations/20261122020000_cards.js';
import * as cardCommands from '../../migrations/20261122030000_card_commands.js';
import * as oneReferenceIndex from '../../migrations/20261122040000_one_reference_index.js';
import * as mirrorUnsettledIndex from '../../migrations/20261123000000_mirror_unsettled_index.js';

pg.types.setTypeParser(pg.types.builtins.INT8, (value) => {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new Error(`bigint ${value} is outside the safe integer range`);
  return n;
});

const MIGRATIONS: Record<string, Knex.Migration> = {
  '20261122000000_policy_core': policyCore,
  '20261122010000_transactions': transactions,
  '20261122020000_cards': cards,
  '20261122030000_card_commands': cardCommands,
  '20261122040000_one_reference_index': oneReferenceIndex,
  '20261123000000_mirror_unsettled_index': mirrorUnsettledIndex,
};

/** Migrations are listed in code, so they load the same under tsx, compiled, or in a container. */
export const migrationConfig: Knex.MigratorConfig = {
  tableName: 'knex_migrations',
  migrationSource: {
    getMigrations: async () => Object.keys(MIGRATIONS).sort(),
    getMigrationName: (name: string) => name,
    getMigration: async (name: string) => MIGRATIONS[name] as Knex.Migration,
  },
};

interface KnexLog {
  warn(message: string): void;
  error(message: string): void;
}

/** knex's own warnings go to our JSON log (or nowhere), never to stdout as plain text. */
/**
 * Pipelined connections (node-postgres `pipeline`, not in knex's types): a query is sent without
 * waiting for the one before it to finish. Code that awaits each query behaves exactly as before;
 * the ledger sends a batch's independent statements together (ledger/store.ts), and may send
 * COMMIT before BEGIN has answered (ledger/transaction.ts). That is safe only because the
 * server runs them in order and no client-side query timeout is set: one would report a BEGIN
 * still waiting for a lock as failed while the statements behind it went on to commit.
 */
function pgConnection(url: string, timeoutMs: number): Knex.PgConnectionConfig {
  const config = { connectionString: url, application_name: 'spendgate', connectionTimeoutMillis: timeoutMs, pipeline: true };
  return config;
}

/**
 * A pool on the database. A request must fail fast (503) rather than queue behind a dead
 * database: connecting, or waiting for a pooled connection, gives up after `timeoutMs`.
 */
export function connect(url: string, poolMax = 10, log?: KnexLog, timeoutMs = 1500): Knex {
  const quiet = () => undefined;
  return knexFactory({
    log: {
      warn: (m: unknown) => (log ? log.warn(`knex: ${String(m)}`) : quiet()),
      error: (m: unknown) => (log ? log.error(`knex: ${String(m)}`) : quiet()),
      deprecate: quiet,
      debug: quiet,
    },
    client: 'pg',
    connection: pgConnection(url, timeoutMs),
    pool: { min: 0, max: poolMax },
    migrations: migrationConfig,
    acquireConnectionTimeout: timeoutMs,
  });
}

export async function migrate(knex: Knex): Promise<string[]> {
  const [, applied] = (await knex.migrate.latest()) as [number, string[]];
  return applied;
}

/** Ready = the database answers and no migration is pending. */
export async function readiness(knex: Knex): Promise<{ ready: boolean; reason?: string }> {
  try {
    await knex.raw('select 1');
    const [, pending] = (await knex.migrate.list()) as [unknown[], unknown[]];
    return pending.length === 0 ? { ready: true } : { ready: false, reason: `${pending.length} migration(s) pending` };
  } catch (error) {
    return { ready: false, reason: `database unreachable: ${(error as Error).message}` };
  }
}
