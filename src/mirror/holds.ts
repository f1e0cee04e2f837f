// Payments the gateway counted when they were authorized for a later capture (a PaymentIntent
// confirmed with capture_method=manual, a charge made with capture=false). Their money already
// counts, at the amount authorized, so capturing them is not new money: the capture is forwarded
// unchecked, and what Stripe says it captured replaces the amount authorized (the rest was never
// taken). Canceling such a PaymentIntent releases it. Capturing more than was authorized would
// move money nobody checked, and is refused.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { formatMoney } from '../money.js';
import type { MirrorDeps } from './checked-call.js';
import { stripeError, stripeUnanswered } from './errors.js';
import { relay } from './forward.js';
import type { ForwardContext, UpstreamAnswer } from './forward.js';

/** A payment counted when it was authorized: its decision's idempotency key, and what it counts. */
export interface CountedHold {
  idempotencyKey: string;
  amount: number;
  currency: string;
}

/** The calls that authorize a payment: a capture's hold is the decision of one of them. */
const AUTHORIZING = ['payment_intent_create', 'payment_intent_confirm', 'charge_create'];

/**
 * The counted decision that authorized the Stripe object `objectId`, if the agent's call that made
 * it was checked here. Several (an intent counted at create and again at confirm) count at least
 * what any capture can take: the capture is not counted again, but none of them is revised.
 */
export async function countedHold({ knex, settlements }: MirrorDeps, agentId: string, objectId: string): Promise<CountedHold | 'several' | undefined> {
  await settlements.flush(agentId); // the object id is written when the call that made it is settled
  const rows = await knex('decisions')
    .where({ agent_id: agentId, reference: objectId, source: 'stripe', action_type: 'payment' })
    .whereIn('status', ['reserved', 'committed', 'unknown'])
    .whereRaw(`metadata->>'endpoint' = any(?)`, [AUTHORIZING])
    .select('idempotency_key', 'counted_amount', 'currency')
    .limit(2);
  if (rows.length > 1) return 'several';
  const [row] = rows;
  return row ? { idempotencyKey: row.idempotency_key, amount: Number(row.counted_amount), currency: String(row.currency).toLowerCase() } : undefined;
}

/** Refuses a capture for more than the hold counts: the rest would be money nobody checked. */
export function capturesMore(res: ServerResponse, hold: CountedHold, amount: number): boolean {
  if (amount <= hold.amount) return false;
  stripeError(res, 403, {
    type: 'invalid_request_error',
    code: 'spend_forbidden_operation',
    message: `spendgate counted ${formatMoney(hold)} when this payment was authorized; capturing more (${formatMoney({ amount, currency: hold.currency })}) is not supported by the gateway yet.`,
  });
  return true;
}

export interface HoldCall {
  req: IncomingMessage;
  res: ServerResponse;
  log: Logger;
  agentId: string;
  /** How the call is forwarded; its body is the agent's, read already. */
  forward: ForwardContext;
}

/**
 * Forwards a capture or cancel of a counted payment and, once Stripe has answered it 2xx, counts
 * what Stripe says moved before the agent gets the answer (its next call sees the budget freed).
 */
export async function reviseHold(deps: MirrorDeps, call: HoldCall, hold: CountedHold, kind: 'capture' | 'cancel'): Promise<void> {
  const { req, res, log, agentId, forward } = call;
  await new Promise<void>((resolve) => {
    forward.onAnswer = async (answer: UpstreamAnswer) => {
      try {
        const revised = revision(answer, hold, kind);
        if (revised === 'unreadable') log.warn({ agent_id: agentId, status: answer.status }, `Stripe's answer to a ${kind} did not say what moved; the payment stays counted at the amount authorized`);
        else if (revised) await deps.settlements.settle(log, agentId, hold.idempotencyKey, revised.status, { ...revised.options, revise: true });
      } catch (error) {
        log.error({ err: error, agent_id: agentId, status: answer.status }, `recording the ${kind} failed; the payment stays counted at the amount authorized`);
      } finally {
        relay(res, answer);
        resolve();
      }
    };
    forward.onFailure = ({ error, sent }) => {
      log.error({ err: error, agent_id: agentId, sent }, `the ${kind} got no answer from Stripe; the payment stays counted at the amount authorized`);
      stripeUnanswered(res, sent, 'The outcome is unknown; retrying with the same Idempotency-Key is safe.');
      resolve();
    };
    void deps.forwarder.checked(req, forward);
  });
}

/**
 * What Stripe's answer says became of the hold: undefined when it changes nothing (a refusal, a
 * partial capture with more to come), 'unreadable' when a 2xx answer does not say.
 */
function revision(answer: UpstreamAnswer, hold: CountedHold, kind: 'capture' | 'cancel') {
  if (answer.status < 200 || answer.status >= 300) return undefined;
  let object: Record<string, unknown>;
  try {
    object = JSON.parse(answer.body.toString('utf8')) as Record<string, unknown>;
  } catch {
    return 'unreadable' as const;
  }
  if (typeof object.currency !== 'string' || object.currency.toLowerCase() !== hold.currency) return 'unreadable' as const;
  let moved: unknown;
  if (object.object === 'payment_intent') {
    // Canceled after partial captures (multicapture), what was captured stays spent.
    if (object.status === 'canceled') moved = object.amount_received ?? 0;
    else if (object.status === 'succeeded') moved = object.amount_received;
    else return undefined;
  } else if (object.object === 'charge' && kind === 'capture') {
    if (object.captured !== true) return undefined;
    moved = object.amount_captured;
  } else {
    return 'unreadable' as const;
  }
  if (!Number.isSafeInteger(moved) || (moved as number) < 0) return 'unreadable' as const;
  if (moved === hold.amount) return undefined;
  return moved === 0 ? { status: 'released' as const, options: {} } : { status: 'committed' as const, options: { amount: moved as number } };
}
