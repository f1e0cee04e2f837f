// GET /admin/v1/security-events: what the reconciliation found changed behind the gateway's
// back, newest first, with cursor pagination. Read-only.
import { Router } from 'express';
import { z } from 'zod';
import type { Knex } from 'knex';
import { parse } from '../http/validate.js';
import { cursorPage, readCursor } from './pagination.js';

const querySchema = z.strictObject({
  agent_id: z.string().min(1).optional(),
  type: z.string().min(1).optional(),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().optional(),
});

export function securityEventRoutes(knex: Knex): Router {
  const router = Router();
  router.get('/security-events', async (req, res) => {
    const q = parse(querySchema, req.query, 'query');
    const filtered = knex('security_events').where((w) => {
      if (q.agent_id) w.where({ agent_id: q.agent_id });
      if (q.type) w.where({ type: q.type });
    });
    const page = filtered.clone().orderBy('id', 'desc');
    if (q.cursor) page.where('id', '<', Number(readCursor(q.cursor, (p) => /^id:[1-9]\d{0,15}$/.test(p)).slice(3)));
    const { data, pagination } = await cursorPage<{ id: number }>(filtered, page, q.limit, (row) => `id:${row.id}`);
    res.json({ data: data.map(present), pagination });
  });
  return router;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function present(row: any) {
  return { id: Number(row.id), type: row.type, processor: row.processor, card_id: row.card_id, agent_id: row.agent_id, message: row.message, details: row.details, created_at: row.created_at.toISOString() };
}
