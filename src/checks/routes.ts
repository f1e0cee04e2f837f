// POST /v1/checks on the agent port (seed 002): may this agent do this now?
import { Router } from 'express';
import type { Logger } from 'pino';
import { AppError } from '../errors.js';
import { requireAgentKey } from '../http/auth.js';
import { deadlineOf, undeliverable, unlessAnswered } from '../http/deadline.js';
import { parse } from '../http/validate.js';
import { checkRequestSchema } from './request.js';
import { runCheck } from './service.js';
import type { CheckDeps, CheckOutcome } from './service.js';

export function checkRoutes(deps: CheckDeps): Router {
  const router = Router();
  router.post('/v1/checks', requireAgentKey(deps.lookups), unlessAnswered, async (req, res) => {
    const request = parse(checkRequestSchema, req.body, 'check');
    const agentId = req.principal?.agentId ?? '';
    if (request.agent_id && request.agent_id !== agentId) {
      throw new AppError('forbidden', `This API key belongs to agent "${agentId}", not "${request.agent_id}"`);
    }
    const header = req.get('Idempotency-Key');
    if (header !== undefined && (header.length === 0 || header.length > 255)) throw new AppError('invalid_request', 'Idempotency-Key must be 1-255 characters');
    const outcome = await runCheck(deps, agentId, request, header, 'agent', deadlineOf(res));
    if (undeliverable(res)) {
      await unheard(deps, req.log, agentId, outcome);
      return;
    }
    if (outcome.replayed) res.setHeader('Idempotent-Replayed', 'true');
    res.json(outcome.body);
  });
  // /v1/checks is ours, not Stripe's: other methods are not forwarded to Stripe.
  router.all('/v1/checks', (req) => {
    throw new AppError('not_found', `Unrecognized request URL (${req.method} /v1/checks); use POST`);
  });
  return router;
}

/**
 * A check whose answer reached no one: answered 503 by its deadline, or its client went away. Its
 * reservation stays counted for the agent's retry with the same key, which gets the same decision
 * and counts once; a key the gateway generated can never be retried, so that reservation is
 * released.
 */
async function unheard(deps: CheckDeps, log: Logger, agentId: string, { body, reserved }: CheckOutcome): Promise<void> {
  const fields = { agent_id: agentId, check_id: body.check_id, decision: body.decision };
  if (!reserved) {
    log.warn(fields, 'a check\'s answer reached no one; it reserved nothing');
    return;
  }
  if (!reserved.generated) {
    log.warn(fields, 'a check\'s answer reached no one; its reservation stays counted for a retry with the same Idempotency-Key');
    return;
  }
  try {
    await deps.ledger.settle(agentId, reserved.key, 'released', reserved.reservation ? { reservation: reserved.reservation } : {});
    log.warn(fields, 'a check\'s answer reached no one; released (no Idempotency-Key was given, so no retry can replay it)');
  } catch (error) {
    log.error({ ...fields, idempotency_key: reserved.key, err: error }, 'could not release the reservation of a check whose answer reached no one; it stays counted');
  }
}
