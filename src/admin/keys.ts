// /admin/v1/api-keys (every agent key) and /admin/v1/admin-keys: list, revoke, rotate.
import { Router } from 'express';
import { z } from 'zod';
import type { Knex } from 'knex';
import { requireAgent } from '../agents/agents.js';
import { createKey, listKeys, presentKey, revokeAgentKeys, revokeKey, rotateKey } from '../agents/keys.js';
import { AppError } from '../errors.js';
import { parse } from '../http/validate.js';

const revokeManySchema = z
  .strictObject({ all: z.literal(true).optional(), agent_id: z.string().min(1).optional() })
  .refine((b) => (b.all === true) !== (b.agent_id !== undefined), 'give either {"all": true} or {"agent_id": …}');
const rotateSchema = z.strictObject({
  grace_hours: z.number().min(0).max(24 * 30).default(24),
  expires_in_days: z.number().int().positive().max(3650).optional(),
});
const adminKeySchema = z.strictObject({ expires_in_days: z.number().int().positive().max(3650).optional(), description: z.string().max(200).optional() });

/**
 * `forget` drops this process's cached keys at once; other processes drop theirs when the
 * invalidation published with the change arrives.
 */
export function keyRoutes(knex: Knex, forget: (topic: string) => void = () => undefined): Router {
  const router = Router();
  router.get('/api-keys', async (req, res) => {
    const agentId = typeof req.query.agent_id === 'string' ? req.query.agent_id : undefined;
    res.json({ data: (await listKeys(knex, { kind: 'agent', agentId })).map(presentKey) });
  });
  router.post('/api-keys/revoke', async (req, res) => {
    const body = parse(revokeManySchema, req.body, 'revocation');
    if (body.agent_id) await requireAgent(knex, body.agent_id);
    const revoked = await revokeAgentKeys(knex, body.agent_id);
    forget(body.agent_id ? `agent:${body.agent_id}` : 'all');
    req.log.warn({ count: revoked.length, agent_id: body.agent_id ?? 'all' }, 'agent API keys revoked');
    res.json({ revoked: revoked.length, data: revoked.map(presentKey) });
  });
  for (const [path, kind] of [['/api-keys', 'agent'], ['/admin-keys', 'admin']] as const) {
    router.post(`${path}/:id/revoke`, async (req, res) => {
      const revoked = await revokeKey(knex, req.params.id, kind);
      forget(`key:${revoked.id}`);
      req.log.warn({ key_id: revoked.id, kind }, 'API key revoked');
      res.json(presentKey(revoked));
    });
    router.post(`${path}/:id/rotate`, async (req, res) => {
      const body = parse(rotateSchema, req.body, 'rotation');
      const { record, key, previous } = await rotateKey(knex, req.params.id, kind, body.grace_hours, body.expires_in_days);
      forget(`key:${previous.id}`);
      req.log.info({ key_id: record.id, previous_key_id: previous.id, kind }, 'API key rotated');
      res.status(201).json({ ...presentKey(record), key, previous: presentKey(previous) });
    });
  }
  router.post('/admin-keys', async (req, res) => {
    const body = parse(adminKeySchema, req.body, 'admin key');
    const { record, key } = await createKey(knex, { kind: 'admin', expiresInDays: body.expires_in_days, description: body.description });
    req.log.info({ key_id: record.id }, 'admin key created');
    res.status(201).json({ ...presentKey(record), key });
  });
  router.get('/admin-keys', async (_req, res) => {
    res.json({ data: (await listKeys(knex, { kind: 'admin' })).map(presentKey) });
  });
  router.use('/api-keys/:id', () => {
    throw new AppError('not_found', 'Use POST /admin/v1/api-keys/{id}/revoke or /rotate');
  });
  return router;
}
