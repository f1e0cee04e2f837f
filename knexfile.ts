// knex CLI configuration: the same migrations the gateway runs at start. Needs DATABASE_URL.
import type { Knex } from 'knex';
import { migrationConfig } from './src/db/database.js';

const config: Knex.Config = {
  client: 'pg',
  connection: process.env.DATABASE_URL,
  migrations: migrationConfig,
};

export default config;
