// A money-moving call, start to finish: find its amount, decide and reserve (keyed by agent and
// Idempotency-Key), forward the agent's bytes, then settle by Stripe's answer — 2xx commits,
// 4xx releases, 5xx or no answer leaves it `unknown` until reconciled. A retry with the same key
// gets the same decision, reaches Stripe with the same key, and counts once.
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Knex } from 'knex';
import { AppError } from '../errors.js';
import { recordDecision } from '../http/metrics.js';
import type { Metrics } from '../http/metrics.js';
import { DeadlineExceeded, IdempotencyConflict } from '../ledger/ledger.js';
import type { CheckResult, Ledger, SettleOptions } from '../ledger/ledger.js';
import type { Lookups } from '../agents/lookup-cache.js';
import type { AgentPolicy } from '../policy/store.js';
import { moneyAction } from './actions.js';
import type { MoneyAction, StripeLookup } from './actions.js';
import { cardControlParams } from './card-controls.js';
import type { Classification } from './classify.js';
import { policyRefusal, stripeError, stripeUnanswered } from './errors.js';
import { DEFAULT_DEADLINE_MS, LATE, MirrorDeadlineExceeded, beforeDeadline, withinDeadline } from './deadline.js';
import type { Settled, Settlements } from './settlements.js';
import { relay } from './forward.js';
import type { ForwardContext, UpstreamAnswer } from './forward.js';
import { capturesMore, countedHold, reviseHold } from './holds.js';
import { UpstreamError } from './stripe-lookup.js';
import { registerMirrorCard } from '../cards/mirror-card.js';

export interface MirrorDeps {
  knex: Knex;
  lookups: Lookups;
  ledger: Ledger;
  metrics: Metrics;
  stripeKeys: { test?: string; live?: string };
  /** Stripe reads in the key's mode, of the connected account the call names (`Stripe-Account`) if any. */
  lookup: (mode: 'test' | 'live', account?: string) => StripeLookup;
  /** Settles checked calls, retrying what the database cannot take now. */
  settlements: Settlements;
  forwarder: {
    passthrough(req: IncomingMessage, res: ServerResponse, ctx: ForwardContext): void;
    checked(req: IncomingMessage, ctx: ForwardContext): Promise<void>;
  };
  /** The database waits (look-ups, the check) must be over within this many ms, else 503 and nothing is forwarded. */
  deadlineMs?: number;
  now?: () => Date;
}

export interface CheckedCall {
  req: IncomingMessage;
  res: ServerResponse;
  log: Logger;
  /** Path and query as the agent sent them. */
  url: string;
  agentId: string;
  mode: 'test' | 'live';
  path: string;
  form: Record<string, unknown>;
  rawBody: Buffer;
  classification: Extract<Classification, { kind: 'money' }>;
  /** How the call is forwarded (keys, body); the outcome handlers are set here. */
  forward: ForwardContext;
  idempotencyKey: string;
  /** The agent sent no Idempotency-Key: `idempotencyKey` is the gateway's, and no retry can carry it. */
  generatedKey: boolean;
  /** The connected account the call acts in (`Stripe-Account`), if it names one. */
  account: string | undefined;
  /** The agent's policy as the router already read it; read here when it had none. */
  bound?: AgentPolicy;
  /**
   * performance.now() time by which the database must have answered (MIRROR_DEADLINE_MS from
   * the request's arrival); time spent waiting for Stripe's look-ups is added to it.
   */
  deadline: number;
}

export async function checkedCall(deps: MirrorDeps, call: CheckedCall): Promise<void> {
  const { req, res, log, agentId, classification } = call;
  const startedAt = performance.now();
  const now = deps.now?.() ?? new Date();
  const deadlineMs = deps.deadlineMs ?? DEFAULT_DEADLINE_MS;
  let deadline = call.deadline;
  const bound = call.bound ?? (await withinDeadline(deps.lookups.agentPolicy(agentId), deadline, deadlineMs));

  let found;
  const asked = performance.now();
  try {
    found = await moneyAction(classification.endpoint, call.form, classification.id, deps.lookup(call.mode, call.account), now);
    deadline += performance.now() - asked; // Stripe's time is not the database's
  } catch (error) {
    if (error instanceof UpstreamError) {
      const payload = JSON.stringify(error.body);
      res.writeHead(error.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), ...(error.requestId ? { 'request-id': error.requestId } : {}) });
      res.end(payload);
      return;
    }
    if (error instanceof AppError && error.code === 'invalid_request') {
      return stripeError(res, 400, { type: 'invalid_request_error', message: error.message, ...((error.details as { param?: string } | undefined)?.param ? { param: (error.details as { param: string }).param } : {}) });
    }
    throw error;
  }

  // A capture of a payment the gateway already counted when it was authorized (confirm with
  // capture_method=manual, or a charge with capture=false) moves that money, not new money.
  const isCapture = classification.endpoint === 'payment_intent_capture' || classification.endpoint === 'charge_capture';
  const hold = isCapture && found.objectId ? await withinDeadline(countedHold(deps, agentId, found.objectId), deadline, deadlineMs) : undefined;
  if (hold) {
    const asSent = { ...call.forward, rawBody: call.rawBody };
    if (hold === 'several') return deps.forwarder.passthrough(req, res, asSent);
    if (capturesMore(res, hold, found.action.amount)) return;
    return reviseHold(deps, { req, res, log, agentId, forward: asSent }, hold, 'capture');
  }

  let body = call.rawBody;
  if (classification.endpoint === 'issuing_card_create') {
    if (Object.prototype.hasOwnProperty.call(call.form, 'spending_controls')) {
      return stripeError(res, 403, { type: 'invalid_request_error', code: 'spend_forbidden_operation', message: "spendgate sets a new card's spending_controls from the agent's policy; leave them out." });
    }
    const metadata = call.form.metadata as Record<string, unknown> | undefined;
    if (metadata && 'agent_id' in metadata && metadata.agent_id !== agentId) {
      return stripeError(res, 403, { type: 'invalid_request_error', code: 'spend_forbidden_operation', message: 'metadata[agent_id] must be your own agent id.' });
    }
    const extra = cardControlParams(bound.policy, found.action.currency, agentId);
    body = Buffer.concat([call.rawBody, Buffer.from(`${call.rawBody.length > 0 ? '&' : ''}${extra}`)]);
  }

  // A retry of an attempt that was released (Stripe refused it, it never left, or reconciliation
  // found it never ran) would move money again if forwarded on the old decision, after that budget
  // may have gone to other calls: it is decided and reserved afresh, under the next attempt's key.
  const context: ReserveContext = {
    objectId: found.objectId, action: found.action, bound, now, startedAt, deadline, deadlineMs,
    requestHash: createHash('sha256').update(`${req.method} ${call.url}\n`).update(call.rawBody).digest('hex'),
  };
  let attempt = 1;
  let result = await reserve(deps, call, attempt, context);
  while (result?.replayed && result.status === 'released' && result.decision.decision === 'allow') {
    if (attempt >= MAX_ATTEMPTS) {
      return stripeError(res, 400, { type: 'idempotency_error', message: `This Idempotency-Key failed ${MAX_ATTEMPTS} times; spendgate will not try it again. Use a new key.` });
    }
    result = await reserve(deps, call, ++attempt, context);
  }
  if (result === undefined) return; // answered (an idempotency conflict)
  const ledgerKey = attemptKey(call.idempotencyKey, attempt);
  const checked = result;
  const decision = checked.decision;
  if (!checked.replayed) recordDecision(deps.metrics, 'stripe', decision, startedAt);
  if (decision.decision !== 'allow') return policyRefusal(res, checked.checkId, decision);

  const forward = call.forward;
  forward.rawBody = body;
  await new Promise<void>((resolve) => {
    const finish = () => resolve();
    forward.onAnswer = async (answer: UpstreamAnswer) => {
      // The reservation already counts the money against every limit; the settlement only says
      // how (spent, released, unknown), so the agent gets the answer first and the settlement
      // rides with its next check (within settleDeferMs). Settled before the answer leaves: a new
      // card (registered, so a freeze right after covers it), a payment authorized for a later
      // capture (the capture, maybe through another process, must find it counted), and money
      // beyond what was reserved (a crash must not leave it uncounted); and a replay's, whose
      // reservation is not known here, so it cannot ride with a check.
      const settlement = settlementOf(answer, found.action.currency);
      const card = classification.endpoint === 'issuing_card_create';
      const first = card || settlement.awaitsCapture || !checked.reservation || (settlement.options.amount ?? 0) > checked.reservation.amount;
      try {
        if (!first) relay(res, answer);
        await deps.settlements.settle(log, agentId, ledgerKey, settlement.status, { ...settlement.options, reservation: checked.reservation, defer: !first });
        if (card) await registerMirrorCard(deps.knex, agentId, answer.status, answer.body, log);
      } catch (error) {
        log.error({ err: error, agent_id: agentId, status: answer.status }, 'settling after Stripe answered failed; the reservation stays counted until reconciled');
      } finally {
        relay(res, answer); // does nothing if it already left
        finish();
      }
    };
    forward.onFailure = async ({ error, sent }) => {
      try {
        await deps.settlements.settle(log, agentId, ledgerKey, sent ? 'unknown' : 'released', { reservation: checked.reservation });
      } catch (failure) {
        log.error({ err: failure, agent_id: agentId }, 'could not settle after the Stripe call failed; the reservation stays counted until reconciled');
      } finally {
        log.error({ err: error, agent_id: agentId, sent }, sent ? 'Stripe did not answer; reservation kept as unknown' : 'Stripe unreachable; reservation released');
        stripeUnanswered(res, sent, 'The outcome is unknown and stays counted until it is reconciled; retrying with the same Idempotency-Key is safe.');
        finish();
      }
    };
    void deps.forwarder.checked(req, forward);
  });
}

/** How often a key is decided again after its attempts were released, before the agent must use a new one. */
const MAX_ATTEMPTS = 20;

/**
 * The ledger's key for the n-th attempt under an agent's Idempotency-Key (the first is the key
 * itself). U+001F cannot occur in an HTTP header, so no agent key can collide with it.
 */
function attemptKey(key: string, attempt: number): string {
  return attempt <= 1 ? key : `${key}\u001f${attempt}`;
}

/** What every attempt of one call is decided with. */
interface ReserveContext {
  objectId: string | undefined;
  action: MoneyAction['action'];
  bound: AgentPolicy;
  requestHash: string;
  now: Date;
  startedAt: number;
  deadline: number;
  deadlineMs: number;
}

/**
 * Decide and reserve one attempt within the deadline. What reconciliation needs later is kept with
 * it: the key Stripe sees, the key's mode and the connected account. Undefined once answered.
 */
async function reserve(deps: MirrorDeps, call: CheckedCall, attempt: number, a: ReserveContext): Promise<CheckResult | undefined> {
  const ledgerKey = attemptKey(call.idempotencyKey, attempt);
  let result;
  try {
    const work = deps.ledger.check({
      agentId: call.agentId,
      timezone: a.bound.timezone,
      policy: a.bound.policy,
      action: a.action,
      idempotencyKey: ledgerKey,
      requestHash: a.requestHash,
      metadata: {
        source: 'stripe', endpoint: call.classification.endpoint, path: call.path, mode: call.mode,
        ...(call.forward.upstreamIdempotencyKey ? { upstream_key: call.forward.upstreamIdempotencyKey } : {}),
        ...(call.account ? { stripe_account: call.account } : {}),
        ...(a.objectId ? { object: a.objectId } : {}),
        ...(attempt > 1 ? { attempt } : {}),
      },
      now: a.now,
      simulate: false,
      startedAt: a.startedAt,
      source: 'stripe',
      deadline: a.deadline,
    });
    result = await beforeDeadline(work, a.deadline);
    if (result === LATE) void work.then((late) => afterDeadline(deps, call, ledgerKey, late, a.startedAt), () => undefined);
  } catch (error) {
    if (error instanceof IdempotencyConflict) {
      stripeError(call.res, 400, { type: 'idempotency_error', message: `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${call.idempotencyKey}' if you meant to execute a different request.` });
      return undefined;
    }
    if (!(error instanceof DeadlineExceeded)) throw error;
    result = LATE; // dropped before it started: nothing was recorded
  }
  if (result === LATE) throw new MirrorDeadlineExceeded(a.deadlineMs);
  return result;
}

/**
 * A check that finished after its call was answered 503. Its reservation stays counted for the
 * agent's retry with the same key, which replays the decision and forwards; a key the gateway
 * generated can never be retried, so that reservation is released.
 */
async function afterDeadline(deps: MirrorDeps, call: CheckedCall, ledgerKey: string, late: CheckResult, startedAt: number): Promise<void> {
  if (late.replayed) return;
  recordDecision(deps.metrics, 'stripe', late.decision, startedAt);
  if (late.status !== 'reserved') return;
  const fields = { agent_id: call.agentId, check_id: late.checkId };
  if (!call.generatedKey) {
    call.log.warn(fields, 'a check finished after its deadline; its reservation stays counted (pending) for a retry with the same Idempotency-Key');
    return;
  }
  try {
    await deps.settlements.settle(call.log, call.agentId, ledgerKey, 'released', { reservation: late.reservation });
    call.log.warn(fields, 'a check finished after its deadline; released (its key was generated, so no retry can use it)');
  } catch (error) {
    call.log.error({ ...fields, err: error }, 'could not release a late reservation; it stays counted');
  }
}

/**
 * What Stripe says moved, from its answer: the amount counted is Stripe's, not the one read before
 * forwarding (an intent's amount can change in between).
 */
export function reportedAmount(object: Record<string, unknown>, currency: string): number | undefined {
  if (typeof object.currency !== 'string' || object.currency.toLowerCase() !== currency) return undefined;
  const pick = (...fields: string[]) => fields.map((f) => object[f]).find((v): v is number => Number.isSafeInteger(v) && (v as number) > 0);
  switch (object.object) {
    case 'payment_intent':
      return pick('amount_received', 'amount');
    case 'invoice':
      return pick('amount_paid');
    case 'charge':
    case 'refund':
    case 'transfer':
    case 'payout':
    case 'topup':
      return pick('amount');
    default:
      return undefined;
  }
}

/**
 * The settlement Stripe's answer calls for: 2xx commits (with the object's id and the amount
 * Stripe reports), 4xx releases, anything else is unknown.
 */
function settlementOf(answer: UpstreamAnswer, currency: string): { status: Settled; options: SettleOptions; awaitsCapture: boolean } {
  if (answer.status >= 400 && answer.status < 500) return { status: 'released', options: {}, awaitsCapture: false };
  if (answer.status < 200 || answer.status >= 300) return { status: 'unknown', options: {}, awaitsCapture: false };
  let parsed: Record<string, unknown> = {};
  try {
    parsed = JSON.parse(answer.body.toString('utf8')) as Record<string, unknown>;
  } catch {
    // not JSON: committed without an object id, at the amount reserved
  }
  const reference = typeof parsed.id === 'string' ? parsed.id : undefined;
  const amount = reportedAmount(parsed, currency);
  const awaitsCapture = (parsed.object === 'payment_intent' && parsed.status === 'requires_capture') || (parsed.object === 'charge' && parsed.captured === false);
  return { status: 'committed', options: { ...(reference ? { reference } : {}), ...(amount !== undefined ? { amount } : {}) }, awaitsCapture };
}
