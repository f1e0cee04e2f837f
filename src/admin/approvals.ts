// GET /admin/v1/approvals: approval requests opened by escalations (a card authorization that
// needs a human is declined now and stored here), newest first, cursor-paginated. Read-only: the
// approve/deny workflow is not built yet, so every request stays `pending` and nothing is let
// through by it — the listing says so in `workflow`.
import { Router } from 'express';
import { z } from 'zod';
import type { Knex } from 'knex';
import { parse } from '../http/validate.js';
import { cursorPage, readCursor } from './pagination.js';

const querySchema = z.strictObject({
  agent_id: z.string().min(1).optional(),
  status: z.enum(['pending', 'approved', 'denied', 'expired']).optional(),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().optional(),
});

const POSITION = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\|(apr_[A-Za-z0-9]{1,64})$/;

export function approvalRoutes(knex: Knex): Router {
  const router = Router();
  router.get('/approvals', async (req, res) => {
    const q = parse(querySchema, req.query, 'query');
    const filtered = knex('approvals').where((w) => {
      if (q.agent_id) w.where({ agent_id: q.agent_id });
      if (q.status) w.where({ status: q.status });
    });
    const page = filtered.clone().orderBy([{ column: 'created_at', order: 'desc' }, { column: 'id', order: 'desc' }]);
    if (q.cursor) {
      const position = readCursor(q.cursor, (p) => POSITION.test(p) && !Number.isNaN(Date.parse(p.split('|')[0] ?? '')));
      const [at = '', id = ''] = position.split('|');
      page.whereRaw('(created_at, id) < (?::timestamptz, ?)', [at, id]);
    }
    const { data, pagination } = await cursorPage<{ id: string; created_at: Date }>(filtered, page, q.limit, (row) => `${row.created_at.toISOString()}|${row.id}`);
    res.json({ data: data.map(present), pagination, workflow: 'inactive: approving or denying is not built yet; escalated card authorizations were declined' });
  });
  return router;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function present(row: any) {
  return {
    id: row.id, agent_id: row.agent_id, check_id: row.check_id, source: row.source, status: row.status, action_type: row.action_type,
    amount: Number(row.amount), currency: row.currency, counterparty: row.counterparty, details: row.details,
    created_at: row.created_at.toISOString(), expires_at: row.expires_at ? row.expires_at.toISOString() : null,
  };
}
