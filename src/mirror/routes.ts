// The Stripe mirror, /v1/* on the agent port: authenticate the agent key, classify the call, refuse
// privileged ones, check and count money-moving ones, forward the rest untouched. A plain node
// request handler in front of express: every passthrough call pays only for what it needs.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { AppError, isDatabaseUnavailable } from '../errors.js';
import { presentedKey } from '../http/auth.js';
import { endpointAllowed } from '../policy/endpoints.js';
import type { AgentPolicy } from '../policy/store.js';
import { classify } from './classify.js';
import { UnreadableForm, ambiguousParameter, parseForm } from './form.js';
import { checkedCall } from './checked-call.js';
import { countedHold, reviseHold } from './holds.js';
import type { CountedHold } from './holds.js';
import type { MirrorDeps } from './checked-call.js';
import { stripeError } from './errors.js';
import { DEFAULT_DEADLINE_MS, MirrorDeadlineExceeded, withinDeadline } from './deadline.js';
import { upstreamIdempotencyKey } from './forward.js';
import type { ForwardContext, RequestRecord } from './forward.js';

const MAX_BODY = 1024 * 1024;

/** Is this request the mirror's (a Stripe path), rather than the gateway's own? */
export function isMirrorPath(url: string): boolean {
  if (!(url.startsWith('/v1/') || url.startsWith('/v2/'))) return false;
  return !(url === '/v1/checks' || url.startsWith('/v1/checks?') || url.startsWith('/v1/checks/'));
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(new AppError('payload_too_large', `Request bodies are limited to ${MAX_BODY} bytes`));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export function isCanonicalPath(path: string): boolean {
  const segments = path.split('/').slice(1);
  return segments.every((segment) => segment !== '' && segment !== '.' && segment !== '..' && !segment.includes('%') && /^[A-Za-z0-9_.:-]+$/.test(segment));
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * One request's id and logger. A passthrough call is forwarded without either being made: the
 * logger child (pino serializes and prepares redaction for each) is created on first use, and the
 * id goes out as `Request-Id` only on the gateway's own answers — a forwarded answer carries
 * Stripe's, or this one when Stripe's is missing.
 */
class RequestContext implements RequestRecord {
  private id?: string;
  private child?: Logger;
  private watched = false;
  private logged = false;
  readonly started = performance.now();

  constructor(
    private readonly logger: Logger,
    private readonly req: IncomingMessage,
  ) {}

  get requestId(): string {
    return (this.id ??= `req_${randomUUID().replace(/-/g, '')}`);
  }

  get log(): Logger {
    return (this.child ??= this.logger.child({ req_id: this.requestId }));
  }

  /** The request's one line in the log: a 5xx always, anything else at debug level. */
  answered(status: number): void {
    if (this.logged) return;
    this.logged = true;
    if (status < 500 && !this.logger.isLevelEnabled('debug')) return;
    const ms = Math.round((performance.now() - this.started) * 10) / 10;
    const line = { method: this.req.method, path: (this.req.url ?? '').split('?')[0], status, ms };
    if (status >= 500) this.log.error(line, 'mirror request');
    else this.log.debug(line, 'mirror request');
  }

  /**
   * `res`, marked with this request's id and logged once it is sent: for the gateway's own
   * answers and checked calls. A forwarded answer is logged by the forwarder when Stripe's
   * status is known, without a listener on every proxied request.
   */
  own(res: ServerResponse): ServerResponse {
    if (!this.watched) {
      this.watched = true;
      res.once('finish', () => this.answered(res.statusCode));
    }
    if (!res.headersSent) res.setHeader('request-id', this.requestId);
    return res;
  }
}

export function createMirrorHandler(deps: MirrorDeps, logger: Logger) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const ctx = new RequestContext(logger, req);
    handle(deps, req, res, ctx).catch((error: unknown) => {
      const log = ctx.log;
      ctx.own(res);
      if (error instanceof AppError && error.status < 500) {
        return stripeError(res, error.status, { type: 'invalid_request_error', message: error.message });
      }
      if (error instanceof MirrorDeadlineExceeded) {
        log.error({ deadline_ms: error.deadlineMs }, 'the database did not answer within the mirror deadline; answered 503, nothing forwarded');
        return stripeError(res, 503, { type: 'api_error', message: error.message });
      }
      if (isDatabaseUnavailable(error)) {
        log.error({ err: error }, 'database unavailable');
        return stripeError(res, 503, { type: 'api_error', message: 'spendgate cannot reach its database right now; nothing was forwarded. Retry later.' });
      }
      log.error({ err: error }, 'mirror request failed');
      return stripeError(res, 503, { type: 'api_error', message: 'An internal error occurred in spendgate; nothing unchecked was forwarded.' });
    });
  };
}

async function handle(deps: MirrorDeps, req: IncomingMessage, res: ServerResponse, ctx: RequestContext): Promise<void> {
  const url = req.url ?? '/';
  const path = url.split('?')[0] ?? '';
  // Stripe's v1 API is GET, POST and DELETE; anything else is refused rather than streamed through.
  if (!['GET', 'POST', 'DELETE'].includes(req.method ?? '')) {
    return stripeError(ctx.own(res), 405, { type: 'invalid_request_error', message: `spendgate forwards GET, POST and DELETE only, not ${req.method ?? '?'}.` });
  }
  // Classification reads the path literally: a path Stripe might read differently
  // (/v1//refunds, /v1/refunds/, /v1/re%66unds, /v1/./refunds) is refused, never forwarded unchecked.
  if (req.method !== 'GET' && !isCanonicalPath(path)) {
    return stripeError(ctx.own(res), 400, { type: 'invalid_request_error', message: `spendgate accepts canonical Stripe paths only (no empty, dot or percent-encoded segments, no trailing slash): ${path}` });
  }
  const key = presentedKey(req.headers);
  if (!key) return stripeError(ctx.own(res), 401, { type: 'authentication_error', code: 'spend_key_missing', message: 'You did not provide an API key. Use your spendgate agent key (sg_test_… or sg_live_…) where the Stripe secret key would go.' });
  // The key and the policy are usually cached; when they are read, the database has the deadline.
  const deadlineMs = deps.deadlineMs ?? DEFAULT_DEADLINE_MS;
  const deadline = ctx.started + deadlineMs;
  const principal = deps.lookups.cached?.principal(key) ?? (await withinDeadline(deps.lookups.principal(key), deadline, deadlineMs));
  if (!principal || principal.kind !== 'agent' || !principal.agentId || !principal.mode) {
    return stripeError(ctx.own(res), 401, { type: 'authentication_error', code: 'spend_invalid_key', message: 'Invalid API key provided (unknown, revoked or expired spendgate agent key, or its agent is frozen).' });
  }
  const upstreamKey = deps.stripeKeys[principal.mode];
  if (!upstreamKey) {
    return stripeError(ctx.own(res), 403, { type: 'invalid_request_error', code: 'spend_forbidden_operation', message: `This gateway holds no Stripe ${principal.mode}-mode key, so a sg_${principal.mode}_ key cannot reach Stripe.` });
  }
  const contentType = (header(req, 'content-type') ?? '').toLowerCase();
  // Only /v1/files takes multipart; any other body must be a form the gateway can read.
  const multipart = contentType.startsWith('multipart/');
  if (req.method === 'POST' && multipart && path !== '/v1/files') {
    return stripeError(ctx.own(res), 400, { type: 'invalid_request_error', message: 'spendgate reads Stripe form bodies only (application/x-www-form-urlencoded); multipart is accepted for /v1/files alone.' });
  }
  const rawBody = req.method === 'POST' && !multipart ? await readBody(req) : undefined;
  const bodyText = rawBody?.toString('utf8') ?? '';
  const queryText = url.includes('?') ? url.slice(url.indexOf('?') + 1) : '';
  const ambiguous = req.method === 'POST' ? ambiguousParameter(queryText, bodyText) : undefined;
  if (ambiguous !== undefined) {
    return stripeError(ctx.own(res), 400, { type: 'invalid_request_error', param: ambiguous, message: `Parameter ${ambiguous} was given more than once (or in both the query string and the body); spendgate refuses ambiguous requests.` });
  }
  // Stripe reads POST parameters from the query string too: classify what Stripe will see.
  let form: Record<string, unknown> = {};
  try {
    if (req.method === 'POST') form = parseForm([queryText, bodyText].filter(Boolean).join('&'));
  } catch (error) {
    if (!(error instanceof UnreadableForm)) throw error;
    return stripeError(ctx.own(res), 400, { type: 'invalid_request_error', message: `spendgate cannot read this form the way Stripe would (${error.message}); nothing was forwarded.` });
  }
  const classification = classify(req.method ?? 'GET', path, form);
  const bound = deps.lookups.cached?.agentPolicy(principal.agentId) ?? (await withinDeadline(boundPolicy(deps, principal.agentId), deadline, deadlineMs));
  const refusal = outsideAllowedEndpoints(bound, req.method ?? 'GET', path);
  if (refusal) {
    ctx.log.warn({ agent_id: principal.agentId, method: req.method, path }, 'call outside security.allowed_endpoints refused');
    return stripeError(ctx.own(res), 403, { type: 'invalid_request_error', code: 'spend_forbidden_operation', message: refusal });
  }
  const agentKey = header(req, 'idempotency-key');
  const forward: ForwardContext = {
    upstreamKey,
    rawBody,
    request: ctx,
    ...(agentKey ? { idempotencyKey: agentKey, upstreamIdempotencyKey: upstreamIdempotencyKey(principal.agentId, agentKey) } : {}),
  };
  switch (classification.kind) {
    case 'privileged':
      ctx.log.warn({ agent_id: principal.agentId, path, reason: classification.reason }, 'privileged call refused');
      return stripeError(ctx.own(res), 403, { type: 'invalid_request_error', code: 'spend_forbidden_operation', message: `spendgate refused this call: ${classification.reason}.` });
    case 'other':
      return deps.forwarder.passthrough(req, res, forward);
    case 'cancel':
      return cancelCall(deps, req, res, ctx, principal.agentId, forward, classification.id, deadline);
    case 'money': {
      if (agentKey !== undefined && (agentKey.length === 0 || agentKey.length > 255)) {
        return stripeError(ctx.own(res), 400, { type: 'invalid_request_error', param: 'Idempotency-Key', message: 'Idempotency-Key must be 1-255 characters' });
      }
      const idempotencyKey = agentKey ?? `sg_gen_${randomUUID()}`;
      forward.idempotencyKey = agentKey;
      forward.upstreamIdempotencyKey = upstreamIdempotencyKey(principal.agentId, idempotencyKey);
      return checkedCall(deps, { req, res: ctx.own(res), log: ctx.log, url, agentId: principal.agentId, mode: principal.mode, path, form, rawBody: rawBody ?? Buffer.alloc(0), classification, forward, idempotencyKey, generatedKey: agentKey === undefined, account: header(req, 'stripe-account'), bound, deadline });
    }
  }
}

/** The agent's policy, read once per call (cached); undefined when it has none (checked calls then refuse). */
async function boundPolicy(deps: MirrorDeps, agentId: string): Promise<AgentPolicy | undefined> {
  return deps.lookups.agentPolicy(agentId).catch((error: unknown) => {
    if (error instanceof AppError && error.status < 500) return undefined;
    throw error;
  });
}

/**
 * security.allowed_endpoints: when the agent's policy lists them, nothing else is forwarded. Paths
 * must then be canonical for every method, so no spelling of a path can slip past a pattern.
 */
function outsideAllowedEndpoints(bound: AgentPolicy | undefined, method: string, path: string): string | undefined {
  const patterns = bound?.policy.allowedEndpoints;
  if (!patterns) return undefined;
  if (!isCanonicalPath(path)) return `spendgate refused this call: with security.allowed_endpoints set, paths must be canonical (${path}).`;
  if (endpointAllowed(patterns, method, path)) return undefined;
  return `spendgate refused this call: ${method} ${path} is not in this agent's security.allowed_endpoints.`;
}

/**
 * A PaymentIntent cancel: forwarded whatever happens (it moves no money), and if the gateway
 * counted the intent when it was authorized, that count is released once Stripe confirms. Without
 * the database it is forwarded all the same, and the intent stays counted.
 */
async function cancelCall(deps: MirrorDeps, req: IncomingMessage, res: ServerResponse, ctx: RequestContext, agentId: string, forward: ForwardContext, intentId: string, deadline: number): Promise<void> {
  const deadlineMs = deps.deadlineMs ?? DEFAULT_DEADLINE_MS;
  let hold: CountedHold | 'several' | undefined;
  try {
    hold = await withinDeadline(countedHold(deps, agentId, intentId), deadline, deadlineMs);
  } catch (error) {
    ctx.log.error({ err: error, agent_id: agentId }, 'could not look up a canceled PaymentIntent; forwarded, and it stays counted if it was');
  }
  if (!hold || hold === 'several') return deps.forwarder.passthrough(req, res, forward);
  return reviseHold(deps, { req, res: ctx.own(res), log: ctx.log, agentId, forward }, hold, 'cancel');
}
