// createApp(deps): the two listeners' express apps: middleware, routers, error handlers. No listen,
// no environment: main.ts decides where they run.
import type { IncomingMessage, ServerResponse } from 'node:http';
import express from 'express';
import type { Express } from 'express';
import helmet from 'helmet';
import type { Knex } from 'knex';
import type { Logger } from 'pino';
import { agentRoutes } from './admin/agents.js';
import { cardRoutes } from './admin/cards.js';
import { freezeRoutes } from './admin/freeze.js';
import { securityEventRoutes } from './admin/security-events.js';
import { approvalRoutes } from './admin/approvals.js';
import { keyRoutes } from './admin/keys.js';
import { policyRoutes } from './admin/policies.js';
import { simulationRoutes } from './admin/simulations.js';
import { transactionRoutes } from './admin/transactions.js';
import { violationRoutes } from './admin/violations.js';
import { checkRoutes } from './checks/routes.js';
import { parseFailMode } from './webhooks/fail-mode.js';
import { createWebhookHandler, isWebhookPath } from './webhooks/routes.js';
import type { Lookups } from './agents/lookup-cache.js';
import type { MirrorDeps } from './mirror/checked-call.js';
import { createMirrorHandler, isMirrorPath } from './mirror/routes.js';
import { readiness } from './db/database.js';
import { AppError, errorHandler } from './errors.js';
import { requireAdmin } from './http/auth.js';
import { answerWithin, unlessAnswered } from './http/deadline.js';
import { requestLogging } from './http/logging.js';
import type { Metrics } from './http/metrics.js';
import type { Ledger } from './ledger/ledger.js';
import type { Processor, ProcessorName } from '../adapters/processor.js';

export interface AppDeps {
  knex: Knex;
  /** Key and agent-policy reads, cached or not (chosen in gateway.ts). */
  lookups: Lookups;
  ledger: Ledger;
  metrics: Metrics;
  logger: Logger;
  adminToken?: string;
  /** The Stripe mirror's outside world: real keys per mode, look-ups and the forwarder. */
  mirror?: Pick<MirrorDeps, 'stripeKeys' | 'lookup' | 'forwarder' | 'settlements' | 'deadlineMs'>;
  /** Card processors configured (webhooks and card calls); chosen in gateway.ts. */
  processors?: Partial<Record<ProcessorName, Processor>>;
  /** Freezing: the processors this process can call, its queue worker, how long a freeze waits. */
  cards?: { processors: Partial<Record<ProcessorName, Processor>>; kick(): void; waitMs: number };
  /** Card authorizations: answer within this many ms, else by the fail mode. */
  authorization?: { deadlineMs: number; failMode: string };
  /**
   * How long a check (CHECK_DEADLINE_MS) and an admin request (ADMIN_DEADLINE_MS) may take before
   * they are answered 503 (src/http/deadline.ts). Defaults 1500 and 10,000 ms.
   */
  deadlines?: { checkMs: number; adminMs: number };
  /** Which proxies' X-Forwarded-For is believed (express "trust proxy"); default none. */
  trustProxy?: false | number | string[];
  now?: () => Date;
}

function base(deps: AppDeps): Express {
  const app = express();
  app.set('trust proxy', deps.trustProxy ?? false);
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(helmet({ contentSecurityPolicy: false }));
  app.use(requestLogging(deps.logger));
  return app;
}

/** The agent port: the check API, processor webhooks, health and metrics (withMirror adds the Stripe mirror). */
export function createAgentApp(deps: AppDeps): Express {
  const app = base(deps);
  mountAgent(app, deps);
  app.use(notFound);
  app.use(errorHandler('agent'));
  return app;
}

/** The admin port: /admin/v1/* behind admin credentials. */
export function createAdminApp(deps: AppDeps): Express {
  const app = base(deps);
  mountAdmin(app, deps);
  app.use(notFound);
  app.use(errorHandler('admin'));
  return app;
}

/** ADMIN_PORT equal to PORT: one listener serves both. */
export function createCombinedApp(deps: AppDeps): Express {
  const app = base(deps);
  mountAdmin(app, deps);
  mountAgent(app, deps);
  app.use(notFound);
  app.use(errorHandler('agent'));
  return app;
}

function notFound(req: express.Request): never {
  throw new AppError('not_found', `Unrecognized request URL (${req.method} ${req.path})`);
}

function mountAgent(app: Express, deps: AppDeps): void {
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    const ready = await readiness(deps.knex);
    res.status(ready.ready ? 200 : 503).json({ status: ready.ready ? 'ready' : 'not_ready', ...(ready.reason ? { reason: ready.reason } : {}) });
  });
  app.get('/metrics', async (_req, res) => {
    res.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });
  const agent = express.Router();
  // JSON only for the check API: the mirror reads Stripe's form bodies itself, byte for byte.
  agent.use('/v1/checks', answerWithin(deps.deadlines?.checkMs ?? 1500, 'agent', (ms) =>
    `spendgate could not decide within ${ms} ms (its database is slow or not answering). Retrying with the same Idempotency-Key is safe: a decision that lands late is returned and counts once.`));
  agent.use('/v1/checks', express.json({ limit: '256kb', strict: true }));
  agent.use(checkRoutes(deps));
  app.use(agent);
}

function mountAdmin(app: Express, deps: AppDeps): void {
  const admin = express.Router();
  admin.use(answerWithin(deps.deadlines?.adminMs ?? 10_000, 'admin', (ms) =>
    `spendgate did not finish this request within ${ms} ms (its database, or a processor it called, is slow or not answering). It may still complete: read the current state before retrying.`));
  admin.use(requireAdmin(deps.lookups, deps.adminToken));
  admin.use(express.json({ limit: '256kb', strict: true }));
  admin.use(unlessAnswered);
  const forget = (topic: string) => deps.lookups.forget?.(topic);
  admin.use(agentRoutes(deps.knex, forget));
  admin.use(keyRoutes(deps.knex, forget));
  admin.use(policyRoutes(deps.knex, forget));
  admin.use(violationRoutes(deps.knex));
  admin.use(transactionRoutes(deps.knex));
  admin.use(simulationRoutes(deps));
  admin.use(freezeRoutes({ knex: deps.knex, processors: deps.cards?.processors ?? {}, kick: deps.cards?.kick ?? (() => undefined), waitMs: deps.cards?.waitMs ?? 5000, forgetAgent: (id) => deps.lookups.forget?.(`agent:${id}`) }));
  admin.use(cardRoutes(deps.knex, deps.cards?.processors ?? {}));
  admin.use(securityEventRoutes(deps.knex));
  admin.use(approvalRoutes(deps.knex));
  admin.use((req) => {
    throw new AppError('not_found', `Unrecognized admin URL (${req.method} /admin/v1${req.path})`);
  });
  admin.use(errorHandler('admin'));
  app.use('/admin/v1', admin);
}

type Listener = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * The agent port's request listener: Stripe paths go to the mirror and processor webhooks to their
 * handler, both plain node handlers (no express, helmet or per-request logger on those paths);
 * everything else to express.
 */
export function withMirror(deps: AppDeps, app: Express): Listener {
  const mirror = deps.mirror ? createMirrorHandler({ ...deps.mirror, knex: deps.knex, lookups: deps.lookups, ledger: deps.ledger, metrics: deps.metrics, now: deps.now }, deps.logger) : undefined;
  const webhooks = createWebhookHandler({
    knex: deps.knex, lookups: deps.lookups, ledger: deps.ledger, metrics: deps.metrics, logger: deps.logger, processors: deps.processors ?? {},
    deadlineMs: deps.authorization?.deadlineMs ?? 1500, failMode: parseFailMode(deps.authorization?.failMode ?? 'decline'),
    ...(deps.now ? { now: deps.now } : {}),
  });
  return (req, res) => {
    const url = req.url ?? '/';
    if (mirror && isMirrorPath(url)) return mirror(req, res);
    if (isWebhookPath(url)) return webhooks(req, res);
    return app(req, res);
  };
}
