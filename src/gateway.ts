// startGateway(config): everything `npm start` runs, as one function tests and benchmarks can
// call too: database (embedded or DATABASE_URL), migrations, SPEND_FILES, both listeners.
import { existsSync } from 'node:fs';
import { readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Knex } from 'knex';
import type { Logger } from 'pino';
import { createKey } from './agents/keys.js';
import { cachedLookups } from './agents/lookup-cache.js';
import { startInvalidation } from './db/invalidation.js';
import { createAdminApp, createAgentApp, createCombinedApp, withMirror } from './app.js';
import type { AppDeps } from './app.js';
import { configWarnings } from './config.js';
import type { Config } from './config.js';
import { connect, migrate } from './db/database.js';
import { startEmbeddedPostgres } from './db/embedded.js';
import type { EmbeddedDatabase } from './db/embedded.js';
import { createMetrics } from './http/metrics.js';
import { createLedger } from './ledger/ledger.js';
import { createForwarder } from './mirror/forward.js';
import { Settlements } from './mirror/settlements.js';
import { stripeClient, stripeEvents, stripeLookup } from './mirror/stripe-lookup.js';
import { applySpendMd } from './policy/store.js';
import { createLithicProcessor } from '../adapters/lithic/index.js';
import type { Processor, ProcessorName } from '../adapters/processor.js';
import { createStripeProcessor } from '../adapters/stripe/index.js';
import { startCardWorker } from './cards/worker.js';
import { startJobs } from './jobs/index.js';

/** sk_test_/rk_test_ keys serve sg_test_ agent keys; sk_live_/rk_live_ serve sg_live_. */
function stripeKeysByMode(key: string | undefined): { test?: string; live?: string } {
  if (!key) return {};
  return /^(sk|rk)_live_/.test(key) ? { live: key } : { test: key };
}

export interface Gateway {
  agentPort: number;
  adminPort: number;
  knex: Knex;
  deps: AppDeps;
  stop(): Promise<void>;
}

export async function startGateway(config: Config, logger: Logger): Promise<Gateway> {
  const started = performance.now();
  for (const warning of configWarnings(config)) logger.warn(warning);

  let embedded: EmbeddedDatabase | undefined;
  let url = config.DATABASE_URL;
  if (!url) {
    embedded = await startEmbeddedPostgres(config.DATA_DIR, { info: (m) => logger.info(m), warn: (m) => logger.warn(m) });
    url = embedded.url;
    logger.info({ data_dir: path.resolve(config.DATA_DIR) }, 'embedded PostgreSQL running');
  }
  const knex = connect(url, 10, { warn: (m) => logger.warn(m), error: (m) => logger.error(m) });
  const stopDatabase = async () => {
    await knex.destroy();
    await embedded?.stop();
  };
  try {
    const applied = await migrate(knex);
    if (applied.length > 0) logger.info({ migrations: applied }, 'migrations applied');
    if (embedded && !config.SPEND_ADMIN_TOKEN) await bootstrapAdminKey(knex, config.DATA_DIR, logger);
    for (const file of await spendFiles(config.SPEND_FILES ?? [])) {
      const result = await applySpendMd(knex, await readFile(file, 'utf8'), { file, allowUnenforced: config.SPEND_ALLOW_UNENFORCED, createdBy: 'SPEND_FILES' });
      logger.info({ file, agent_id: result.agent.id, policy_version: result.policy.version, unchanged: result.unchanged ?? false }, 'SPEND.md applied');
      for (const s of result.unenforced) logger.warn({ file, key: s.key, line: s.line }, `NOT ENFORCED: ${s.note}`);
      for (const s of result.inactive) logger.info({ file, key: s.key, line: s.line }, `inactive setting: ${s.note}`);
    }
  } catch (error) {
    await stopDatabase();
    throw error;
  }

  const forwarder = createForwarder(config.STRIPE_API_BASE, { timeoutMs: config.STRIPE_TIMEOUT_MS });
  const stripeKeys = stripeKeysByMode(config.STRIPE_SECRET_KEY);
  const clients = { test: stripeKeys.test ? stripeClient(stripeKeys.test, config.STRIPE_API_BASE) : undefined, live: stripeKeys.live ? stripeClient(stripeKeys.live, config.STRIPE_API_BASE) : undefined };
  const ledger = createLedger(knex);
  const settlements = new Settlements(ledger);
  const mirror = {
    stripeKeys,
    forwarder,
    settlements,
    deadlineMs: config.MIRROR_DEADLINE_MS,
    lookup: (mode: 'test' | 'live', account?: string) => {
      const client = clients[mode];
      if (!client) throw new Error(`no Stripe ${mode}-mode key`);
      return stripeLookup(client, account);
    },
  };
  const invalidation = await startInvalidation(url, logger);
  const processors = processorsFor(config);
  // Card calls need the processor's API key; a webhook secret alone only answers webhooks.
  const callable = Object.fromEntries(Object.entries(processors).filter(([name]) => (name === 'stripe' ? config.STRIPE_SECRET_KEY : config.LITHIC_API_KEY))) as typeof processors;
  const cardWorker = startCardWorker(knex, callable, logger.child({ component: 'card-queue' }), {
    concurrency: config.FREEZE_CONCURRENCY, retryBaseMs: config.FREEZE_RETRY_BASE_MS, retryMaxMs: config.FREEZE_RETRY_MAX_MS, pollMs: 1000, leaseMs: config.STRIPE_TIMEOUT_MS + 5000,
  });
  const events = { test: clients.test && stripeEvents(clients.test), live: clients.live && stripeEvents(clients.live) };
  const jobs = startJobs(
    { knex, logger: logger.child({ component: 'jobs' }), processors: callable, kick: cardWorker.kick, ledger, stripeEvents: (mode) => events[mode] },
    { 'reconcile-cards': config.RECONCILE_CRON, 'reconcile-mirror': config.MIRROR_RECONCILE_CRON },
  );
  const deps: AppDeps = {
    knex, lookups: cachedLookups(knex, invalidation), ledger, metrics: createMetrics(), logger,
    adminToken: config.SPEND_ADMIN_TOKEN, trustProxy: config.TRUST_PROXY, mirror, processors,
    cards: { kick: cardWorker.kick, waitMs: config.FREEZE_WAIT_MS, processors: callable },
    authorization: { deadlineMs: config.AUTH_DEADLINE_MS, failMode: config.AUTH_FAIL_MODE },
    deadlines: { checkMs: config.CHECK_DEADLINE_MS, adminMs: config.ADMIN_DEADLINE_MS },
  };
  const servers: Server[] = [];
  const listen = (listener: (req: IncomingMessage, res: ServerResponse) => void, port: number, host: string) =>
    new Promise<Server>((resolve, reject) => {
      const server = createServer(listener);
      server.keepAliveTimeout = 65_000;
      server.once('error', reject);
      server.listen(port, host, () => resolve(server));
      servers.push(server);
    });
  try {
    if (config.ADMIN_PORT === config.PORT && config.PORT !== 0) {
      await listen(withMirror(deps, createCombinedApp(deps)), config.PORT, config.HOST);
    } else {
      await listen(withMirror(deps, createAgentApp(deps)), config.PORT, config.HOST);
      await listen(createAdminApp(deps), config.ADMIN_PORT, config.ADMIN_HOST);
    }
  } catch (error) {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    await jobs.stop();
    await cardWorker.stop();
    await invalidation.stop();
    await stopDatabase();
    throw error;
  }
  const port = (i: number) => ((servers[i] ?? servers[0])?.address() as AddressInfo).port;
  logger.info({ agent_port: port(0), admin_port: port(1), startup_ms: Math.round(performance.now() - started) }, 'spendgate ready');

  return {
    agentPort: port(0),
    adminPort: port(1),
    knex,
    deps,
    async stop() {
      await Promise.all(servers.map((s) => new Promise((r) => { s.close(r); s.closeAllConnections(); })));
      await deps.ledger.flush(); // settlements deferred after their answers left
      await settlements.stop(); // those the database could not take: named in the log
      await forwarder.close();
      await jobs.stop();
      await cardWorker.stop();
      await invalidation.stop();
      await stopDatabase();
    },
  };
}

/** A processor is configured when its API key or its webhook secret is. */
function processorsFor(config: Config): Partial<Record<ProcessorName, Processor>> {
  const processors: Partial<Record<ProcessorName, Processor>> = {};
  if (config.STRIPE_SECRET_KEY || config.STRIPE_WEBHOOK_SECRET) {
    processors.stripe = createStripeProcessor({ apiKey: config.STRIPE_SECRET_KEY, apiBase: config.STRIPE_API_BASE, timeoutMs: config.STRIPE_TIMEOUT_MS, secrets: config.STRIPE_WEBHOOK_SECRET ?? [] });
  }
  if (config.LITHIC_API_KEY || config.LITHIC_WEBHOOK_SECRET) {
    processors.lithic = createLithicProcessor({ apiKey: config.LITHIC_API_KEY, apiBase: config.LITHIC_API_BASE, timeoutMs: config.STRIPE_TIMEOUT_MS, secrets: config.LITHIC_WEBHOOK_SECRET ?? [] });
  }
  return processors;
}

/** SPEND_FILES entries are files or folders (every *.md inside). */
async function spendFiles(entries: string[]): Promise<string[]> {
  const files: string[] = [];
  for (const entry of entries) {
    const info = await stat(entry).catch(() => undefined);
    if (!info) throw new Error(`SPEND_FILES: ${entry} does not exist`);
    if (!info.isDirectory()) files.push(entry);
    else files.push(...(await readdir(entry)).filter((f) => /\.md$/i.test(f)).sort().map((f) => path.join(entry, f)));
  }
  return files;
}

/**
 * A fresh install with no SPEND_ADMIN_TOKEN gets one admin key, written (never logged) to
 * DATA_DIR/admin.key for the operator and the `spend` CLI.
 */
async function bootstrapAdminKey(knex: Knex, dataDir: string, logger: Logger): Promise<void> {
  const file = path.join(dataDir, 'admin.key');
  if (existsSync(file)) return;
  const existing = await knex('api_keys').where({ kind: 'admin' }).whereNull('revoked_at').first();
  if (existing) return;
  const { record, key } = await createKey(knex, { kind: 'admin', description: 'bootstrap key' });
  await writeFile(file, `${key}\n`, { mode: 0o600 });
  logger.warn({ key_id: record.id, file: path.resolve(file) }, 'created the first admin key; it is in this file (readable by you only)');
}
