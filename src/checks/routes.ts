// POST /v1/checks on the agent port (seed 002): may this agent do this now?
import { Router } from 'express';
import { AppError } from '../errors.js';
import { requireAgentKey } from '../http/auth.js';
import { parse } from '../http/validate.js';
import { checkRequestSchema } from './request.js';
import { runCheck } from './service.js';
import type { CheckDeps } from './service.js';

export function checkRoutes(deps: CheckDeps): Router {
  const router = Router();
  router.post('/v1/checks', requireAgentKey(deps.lookups), async (req, res) => {
    const request = parse(checkRequestSchema, req.body, 'check');
    const agentId = req.principal?.agentId ?? '';
    if (request.agent_id && request.agent_id !== agentId) {
      throw new AppError('forbidden', `This API key belongs to agent "${agentId}", not "${request.agent_id}"`);
    }
    const header = req.get('Idempotency-Key');
    if (header !== undefined && (header.length === 0 || header.length > 255)) throw new AppError('invalid_request', 'Idempotency-Key must be 1-255 characters');
    const { body, replayed } = await runCheck(deps, agentId, request, header);
    if (replayed) res.setHeader('Idempotent-Replayed', 'true');
    res.json(body);
  });
  // /v1/checks is ours, not Stripe's: other methods are not forwarded to Stripe.
  router.all('/v1/checks', (req) => {
    throw new AppError('not_found', `Unrecognized request URL (${req.method} /v1/checks); use POST`);
  });
  return router;
}
