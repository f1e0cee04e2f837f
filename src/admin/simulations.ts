// POST /admin/v1/simulations: what would this agent's policy decide? Nothing is recorded or reserved.
import { Router } from 'express';
import { z } from 'zod';
import { AppError } from '../errors.js';
import { deadlineOf } from '../http/deadline.js';
import { parse } from '../http/validate.js';
import { checkRequestSchema } from '../checks/request.js';
import { runCheck } from '../checks/service.js';
import type { CheckDeps } from '../checks/service.js';

const simulationSchema = checkRequestSchema.extend({ agent_id: z.string().min(1), simulate: z.literal(true).default(true) });

export function simulationRoutes(deps: CheckDeps): Router {
  const router = Router();
  router.post('/simulations', async (req, res) => {
    const request = parse(simulationSchema, req.body, 'simulation');
    if (!request.agent_id) throw new AppError('invalid_request', 'agent_id is required');
    const { body } = await runCheck(deps, request.agent_id, request, undefined, 'operator', deadlineOf(res));
    res.json(body);
  });
  return router;
}
