// /admin/v1/agents and their API keys.
import { Router } from 'express';
import { z } from 'zod';
import type { Knex } from 'knex';
import { createAgent, listAgents, requireAgent, updateAgent } from '../agents/agents.js';
import { createKey, listKeys, presentKey } from '../agents/keys.js';
import { parse } from '../http/validate.js';
import { isTimeZone } from '../policy/windows.js';

const agentId = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, _ . - (1-64)');
const timezone = z.string().refine(isTimeZone, 'must be an IANA time zone such as "Europe/Berlin"');
const createSchema = z.strictObject({ id: agentId, owner: z.string().min(1).max(320), timezone: timezone.optional(), policy_id: z.string().min(1).optional() });
const patchSchema = z
  .strictObject({ owner: z.string().min(1).max(320).optional(), timezone: timezone.optional(), policy_id: z.string().min(1).nullable().optional() })
  .refine((p) => Object.keys(p).length > 0, 'give owner, timezone or policy_id');
export const keyCreateSchema = z.strictObject({
  mode: z.enum(['test', 'live']),
  expires_in_days: z.number().int().positive().max(3650).optional(),
  description: z.string().max(200).optional(),
});

/** `forget`: as for policies (policies.ts), for an agent whose time zone or bound policy changed. */
export function agentRoutes(knex: Knex, forget: (topic: string) => void = () => undefined): Router {
  const router = Router();
  router.post('/agents', async (req, res) => {
    res.status(201).json(await createAgent(knex, parse(createSchema, req.body, 'agent')));
  });
  router.get('/agents', async (_req, res) => {
    res.json({ data: await listAgents(knex) });
  });
  router.get('/agents/:id', async (req, res) => {
    res.json(await requireAgent(knex, req.params.id));
  });
  router.patch('/agents/:id', async (req, res) => {
    const updated = await updateAgent(knex, req.params.id, parse(patchSchema, req.body, 'agent update'));
    forget(`agent:${req.params.id}`);
    res.json(updated);
  });
  router.post('/agents/:id/api-keys', async (req, res) => {
    const body = parse(keyCreateSchema, req.body, 'API key');
    await requireAgent(knex, req.params.id);
    const { record, key } = await createKey(knex, { kind: 'agent', agentId: req.params.id, mode: body.mode, expiresInDays: body.expires_in_days, description: body.description });
    req.log.info({ key_id: record.id, agent_id: req.params.id }, 'agent API key created');
    res.status(201).json({ ...presentKey(record), key });
  });
  router.get('/agents/:id/api-keys', async (req, res) => {
    await requireAgent(knex, req.params.id);
    res.json({ data: (await listKeys(knex, { agentId: req.params.id })).map(presentKey) });
  });
  return router;
}
