// A database of its own on the test run's PostgreSQL, for tests that act on every card or run
// the queue: other test files' gateways (and their queue workers) never see its rows.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { connect, migrate } from '../../src/db/database.js';
import { databaseUrl } from './gateway.js';

export async function isolatedDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const base = new URL(databaseUrl());
  const name = `spendgate_iso_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: base.href });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(base.href);
  url.pathname = `/${name}`;
  const knex = connect(url.href, 1);
  await migrate(knex);
  await knex.destroy();
  return {
    url: url.href,
    async drop() {
      const client = new pg.Client({ connectionString: base.href });
      await client.connect();
      await client.query(`drop database if exists ${name} with (force)`);
      await client.end();
    },
  };
}
