// `npm run migrate`: apply pending migrations to DATABASE_URL (or the embedded database in
// DATA_DIR) without starting the gateway.
import { ConfigError, loadConfig } from '../config.js';
import { connect, migrate } from './database.js';
import { startEmbeddedPostgres } from './embedded.js';

try {
  const config = loadConfig(process.env);
  const embedded = config.DATABASE_URL ? undefined : await startEmbeddedPostgres(config.DATA_DIR, { info: (m) => console.error(m), warn: (m) => console.error(m) });
  const knex = connect(config.DATABASE_URL ?? embedded?.url ?? '', 1);
  try {
    const applied = await migrate(knex);
    process.stdout.write(applied.length > 0 ? `applied: ${applied.join(', ')}\n` : 'already up to date\n');
  } finally {
    await knex.destroy();
    await embedded?.stop();
  }
} catch (error) {
  console.error(`spendgate migrate: ${error instanceof ConfigError ? error.message : (error as Error).message}`);
  process.exitCode = 1;
}
