// `npm test`'s runner: one throwaway embedded PostgreSQL for the whole run (a fresh database,
// migrated once), then node's built-in test runner over every *.test.ts file.
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect, migrate } from '../src/db/database.js';
import { startEmbeddedPostgres } from '../src/db/embedded.js';

async function testFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries
    .filter((e) => e.isFile() && e.name.endsWith('.test.ts'))
    .map((e) => path.join(e.parentPath, e.name))
    .sort();
}

const only = process.argv.slice(2);
const root = path.dirname(new URL(import.meta.url).pathname);
const files = only.length > 0 ? only : await testFiles(root);
const dataDir = await mkdtemp(path.join(tmpdir(), 'spendgate-test-'));
const quiet = { info: () => undefined, warn: (m: string) => console.error(m) };
const db = process.env.DATABASE_URL ? undefined : await startEmbeddedPostgres(dataDir, quiet, 'spendgate_test');
const url = process.env.DATABASE_URL ?? db?.url ?? '';
const knex = connect(url, 2);
await migrate(knex);
await knex.destroy();

const code = await new Promise<number>((resolve) => {
  const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', ...files], {
    stdio: 'inherit',
    env: { ...process.env, DATABASE_URL: url, SPENDGATE_TEST: '1' },
  });
  child.on('exit', (exitCode, signal) => resolve(exitCode ?? (signal ? 1 : 0)));
});

await db?.stop();
await rm(dataDir, { recursive: true, force: true });
process.exit(code);
