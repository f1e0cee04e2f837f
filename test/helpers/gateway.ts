// An in-process gateway on ports 0 against the test run's database, and small request helpers.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Knex } from 'knex';
import { loadConfig } from '../../src/config.js';
import { connect } from '../../src/db/database.js';
import { freePort, startEmbeddedPostgres } from '../../src/db/embedded.js';
import type { EmbeddedDatabase } from '../../src/db/embedded.js';
import { startGateway } from '../../src/gateway.js';
import type { Gateway } from '../../src/gateway.js';
import { createLogger } from '../../src/http/logging.js';
import { agentLockKey } from '../../src/ledger/transaction.js';

export const ADMIN_TOKEN = 'test-admin-token-0123456789';

export function databaseUrl(): string {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error('DATABASE_URL is not set: run the tests through `npm test`');
  return url;
}

/**
 * The tests' own pool. It checks what the gateway did, so it waits up to 15 s for a connection:
 * on a loaded two-core machine, opening one after a burst of 200 deliveries took longer than the
 * gateway's fail-fast 1.5 s (the gateway's own pools keep that limit).
 */
export function testKnex(poolMax = 10): Knex {
  return connect(databaseUrl(), poolMax, undefined, 15_000);
}

/** A name no other test uses, so tests never depend on each other's data. */
export function uniqueId(prefix: string): string {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}

export interface TestGateway extends Gateway {
  agentUrl: string;
  adminUrl: string;
  /** fetch against the admin API with the admin token. */
  admin(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any }>; // eslint-disable-line @typescript-eslint/no-explicit-any
  /** fetch against the agent port. */
  agent(method: string, path: string, key: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any; headers: Headers }>; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export async function startTestGateway(env: Record<string, string> = {}): Promise<TestGateway> {
  const config = loadConfig({ DATABASE_URL: databaseUrl(), PORT: '0', ADMIN_PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', SPEND_ADMIN_TOKEN: ADMIN_TOKEN, RECONCILE_CRON: 'off', MIRROR_RECONCILE_CRON: 'off', ...env });
  const gateway = await startGateway(config, createLogger(config.LOG_LEVEL));
  const agentUrl = `http://127.0.0.1:${gateway.agentPort}`;
  const adminUrl = `http://127.0.0.1:${gateway.adminPort}`;
  const send = async (url: string, method: string, body: unknown, headers: Record<string, string>) => {
    const isText = typeof body === 'string';
    const res = await fetch(url, {
      method,
      headers: { ...(body === undefined ? {} : { 'content-type': isText ? 'text/markdown' : 'application/json' }), ...headers },
      body: body === undefined ? undefined : isText ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON (e.g. /metrics)
    }
    return { status: res.status, body: parsed as any, headers: res.headers }; // eslint-disable-line @typescript-eslint/no-explicit-any
  };
  return {
    ...gateway,
    agentUrl,
    adminUrl,
    admin: (method, path, body, headers = {}) => send(`${adminUrl}/admin/v1${path}`, method, body, { authorization: `Bearer ${ADMIN_TOKEN}`, ...headers }),
    agent: (method, path, key, body, headers = {}) => send(`${agentUrl}${path}`, method, body, { 'x-api-key': key, ...headers }),
  };
}

/** Creates an agent bound to a JSON policy and returns a test-mode key for it. */
export async function agentWithPolicy(gw: TestGateway, rules: unknown[], opts: { timezone?: string; policy?: Record<string, unknown> } = {}) {
  const agentId = uniqueId('agent');
  const policyId = uniqueId('policy');
  const policy = await gw.admin('POST', '/policies', { policy_id: policyId, name: 'test', rules, ...opts.policy });
  if (policy.status !== 201) throw new Error(`policy: ${JSON.stringify(policy.body)}`);
  const agent = await gw.admin('POST', '/agents', { id: agentId, owner: 'ops@example.com', policy_id: policyId, ...(opts.timezone ? { timezone: opts.timezone } : {}) });
  if (agent.status !== 201) throw new Error(`agent: ${JSON.stringify(agent.body)}`);
  const key = await gw.admin('POST', `/agents/${agentId}/api-keys`, { mode: 'test' });
  if (key.status !== 201) throw new Error(`key: ${JSON.stringify(key.body)}`);
  return { agentId, policyId, key: key.body.key as string };
}

/** Holds the agent's ledger lock until released: its checks wait behind it (a lock wait). */
export async function stallAgent(knex: Knex, agentId: string): Promise<() => Promise<void>> {
  const trx = await knex.transaction();
  await trx.raw(`select pg_advisory_xact_lock(${agentLockKey(agentId).toString()})`);
  return async () => {
    await trx.rollback();
  };
}

/**
 * Freezes a PostgreSQL cluster (SIGSTOP to the postmaster and its children): connections stay
 * open and nothing answers, the way a hung server or a network partition looks. Returns the thaw.
 */
export function freezeCluster(clusterDir: string): () => void {
  const postmaster = Number(readFileSync(path.join(clusterDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const children = execFileSync('ps', ['-o', 'pid=', '--ppid', String(postmaster)], { encoding: 'utf8' }).split('\n').map(Number).filter((pid) => pid > 0);
  const pids = [postmaster, ...children];
  for (const pid of pids) process.kill(pid, 'SIGSTOP');
  return () => {
    for (const pid of pids) process.kill(pid, 'SIGCONT');
  };
}

/**
 * A PostgreSQL cluster of a test's own, in a temporary directory: it may be frozen, stopped and
 * started again (on the same port, so `url` stays right) without touching the run's database.
 */
export interface OwnCluster {
  readonly url: string;
  /** SIGSTOP every process of the cluster (freezeCluster); the function returned thaws it. */
  freeze(): () => void;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stop it if it runs, and delete its directory. */
  remove(): Promise<void>;
}

export async function ownCluster(prefix: string): Promise<OwnCluster> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  const port = await freePort();
  const quiet = { info: () => undefined, warn: () => undefined };
  let db: EmbeddedDatabase | undefined = await startEmbeddedPostgres(dir, quiet, 'spendgate', port);
  const { url } = db;
  return {
    url,
    freeze: () => freezeCluster(path.join(dir, 'postgres')),
    async stop() {
      await db?.stop();
      db = undefined;
    },
    async start() {
      db = await startEmbeddedPostgres(dir, quiet, 'spendgate', port);
    },
    async remove() {
      await db?.stop().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
