// One ledger transaction on one pooled, pipelined connection: BEGIN with the batch's agent locks,
// the work, COMMIT — and the helpers its statements use (named statements, writes coalesced per
// socket write, statements awaited with COMMIT).
import { createHash } from 'node:crypto';
import type { Knex } from 'knex';
import { STATEMENTS } from './statements.js';
import type { StatementName } from './statements.js';

/**
 * One connection in an open transaction. The hot statements go to the pg client directly (knex
 * adds ~0.3 ms of query building per statement, and a batch has several); the rare ones use the
 * query builder on the same connection.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Rows = { rows: any[] };

/** The pooled pg client: simple-protocol text, or a named statement with its values. */
interface PgConnection {
  query(statement: string | { name: string; text: string; values: unknown[] }): Promise<Rows>;
}

export interface Tx {
  knex: Knex;
  connection: PgConnection;
  /**
   * Statements sent but not awaited (a batch's last writes): COMMIT follows them in the same round
   * trip and the transaction waits for all of them.
   */
  unawaited: Promise<unknown>[];
  /**
   * Wait for the commit's WAL flush (the default). Set false only when losing the transaction in a
   * crash can never make the ledger count less than the truth (see ledger.ts).
   */
  durable: boolean;
}

/**
 * A named statement: PostgreSQL parses and plans it once per connection, not on every batch
 * (on this machine that halves each round trip).
 */
export function prepared(tx: Tx, name: StatementName, values: unknown[]): Promise<Rows> {
  return tx.connection.query({ name: `ledger_${name}`, text: STATEMENTS[name], values });
}

/** Agents' lock keys, kept: a batch locks every agent it holds, and each key is a SHA-256. */
const lockKeys = new Map<string, bigint>();
const LOCK_KEYS_KEPT = 10_000;

/**
 * The advisory-lock key of an agent: 64 bits of SHA-256, computed here so BEGIN and every lock of
 * a batch travel in one round trip. Every process computes the same key.
 */
export function agentLockKey(agentId: string): bigint {
  let key = lockKeys.get(agentId);
  if (key === undefined) {
    if (lockKeys.size >= LOCK_KEYS_KEPT) lockKeys.clear();
    key = createHash('sha256').update(`ledger:${agentId}`).digest().readBigInt64BE(0);
    lockKeys.set(agentId, key);
  }
  return key;
}

/**
 * The planner settings of every ledger transaction. Its named statements are planned once per
 * connection (a generic plan): planning each batch cost PostgreSQL ~0.8 ms, as much as running it.
 * Such a plan is kept while the connection lives, so it must be a lookup of the keys given
 * whatever the tables' size when it was made (statements.ts, test/ledger/plans.test.ts). Every
 * statement looks up a handful of keys: a nested loop of index lookups is the one join that stays
 * right as the tables grow. Bitmap scans stay on: the queries the ledger sends through knex (planned
 * for each call) need them, e.g. card_transactions by `authorization_id = … or id = …`.
 */
export const PLANNER_SETTINGS = `select ${Object.entries({
  plan_cache_mode: 'force_generic_plan',
  enable_seqscan: 'off',
  enable_hashjoin: 'off',
  enable_mergejoin: 'off',
}).map(([name, value]) => `set_config('${name}', '${value}', true)`).join(', ')}`;

/**
 * The settings and every lock of a transaction in one named statement, planned once per connection:
 * as a simple query with the keys written in, PostgreSQL parsed, analyzed and planned it for every
 * transaction (~0.2 ms of a lone reservation on this VM). unnest returns the keys in the array's
 * order, so they are locked in key order.
 */
const LOCK_AGENTS = `${PLANNER_SETTINGS}, (select count(pg_advisory_xact_lock(k)) from unnest($1::bigint[]) as k)`;

/**
 * BEGIN, lock the agents (always in key order, so two processes locking overlapping sets cannot
 * deadlock), run `work`, COMMIT — on one pooled connection; ROLLBACK on any error.
 *
 * The connections are pipelined (database.ts): BEGIN and the locks are not awaited before `work`
 * sends its first reads, and COMMIT is sent right behind the batch's last writes. PostgreSQL still
 * runs each statement after the one before it — the reads start, and take their snapshots, only
 * once every lock is held — but a batch of checks waits for two round trips (its reads, then its
 * writes with COMMIT), and work that only writes for one.
 */
export async function inTransaction<T>(knex: Knex, agentIds: string[], work: (tx: Tx) => Promise<T>): Promise<T> {
  const client = knex.client as unknown as { acquireConnection(): Promise<PgConnection>; releaseConnection(c: unknown): Promise<void> };
  const connection = await client.acquireConnection();
  const tx: Tx = { knex, connection, unawaited: [], durable: true };
  const keys = [...new Set(agentIds.map(agentLockKey))].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  try {
    // The settings and every lock are one statement after BEGIN, not one per agent (PostgreSQL
    // parses, plans and answers each).
    coalesceWrites(connection);
    const begun = Promise.all([connection.query('begin'), connection.query({ name: 'ledger_lock', text: LOCK_AGENTS, values: [keys.map(String)] })]);
    begun.catch(() => undefined); // reported below
    let result: T;
    try {
      result = await working(work, tx);
    } catch (error) {
      // The statements behind BEGIN fail only because it did: report its error if it failed.
      await begun;
      throw error;
    }
    // Work that reads waited for BEGIN already; work that only writes did not, and its COMMIT
    // leaves in the same round trip as BEGIN. A COMMIT behind a failed BEGIN or write finds the
    // transaction aborted and rolls back without an error: Promise.all reports the first error,
    // BEGIN's before the statements that failed because of it.
    const commit = connection.query(tx.durable ? 'commit' : 'set local synchronous_commit = off; commit');
    await Promise.all([begun, ...tx.unawaited, commit]);
    return result;
  } catch (error) {
    await Promise.allSettled(tx.unawaited);
    await connection.query('rollback').catch(() => undefined);
    throw error;
  } finally {
    await client.releaseConnection(connection);
  }
}

/** `work(tx)`, and once it is done (or failed), every statement it sent without awaiting. */
async function working<T>(work: (tx: Tx) => Promise<T>, tx: Tx): Promise<T> {
  try {
    return await work(tx);
  } catch (error) {
    await Promise.allSettled(tx.unawaited);
    throw error;
  }
}

/**
 * Statements sent before the event loop turns leave in one write to PostgreSQL's socket (a batch's
 * BEGIN, locks and reads; its writes and COMMIT): one wake-up of the backend instead of one per
 * statement. Profiled under load, writev() was the gateway's largest single cost on this VM.
 */
export function coalesceWrites(client: unknown): void {
  const stream = (client as { connection?: { stream?: { cork?: () => void; uncork?: () => void } } }).connection?.stream;
  if (!stream?.cork || !stream.uncork) return;
  stream.cork();
  setImmediate(() => stream.uncork?.());
}

/** Send now, await with COMMIT (see Tx.unawaited). */
export function sendBeforeCommit(tx: Tx, statement: Promise<unknown>): void {
  statement.catch(() => undefined); // awaited (and reported) by inTransaction
  tx.unawaited.push(statement);
}
