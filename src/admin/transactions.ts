// GET /admin/v1/transactions: every money-moving call the gateway decided (not the check API's
// questions), with what happened to it at Stripe. Read-only.
import { Router } from 'express';
import { z } from 'zod';
import type { Knex } from 'knex';
import { parse } from '../http/validate.js';
import { cursorPage, readCursor } from './pagination.js';
import { toMajorNumber } from '../money.js';

/** A transaction's status, from its decision and its reservation. */
const STATUS_SQL = `case when decision <> 'allow' then 'declined'
  when status = 'reserved' then 'pending' when status = 'committed' then 'completed'
  when status = 'released' then 'failed' else 'unknown' end`;

const STATUSES = ['pending', 'completed', 'declined', 'failed', 'unknown'] as const;

const date = z.iso.datetime({ offset: true }).or(z.iso.date());
const querySchema = z.strictObject({
  agent_id: z.string().optional(),
  status: z.enum(STATUSES).optional(),
  from: date.optional(),
  to: date.optional(),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().optional(),
});

function decodeCursor(cursor: string): { at: Date; id: string } {
  const [at = '', id = ''] = readCursor(cursor, (p) => /^[^|]+\|[A-Za-z0-9_]+$/.test(p) && !Number.isNaN(Date.parse(p.split('|')[0] ?? ''))).split('|');
  return { at: new Date(at), id };
}

export function transactionRoutes(knex: Knex): Router {
  const router = Router();
  router.get('/transactions', async (req, res) => {
    const q = parse(querySchema, req.query, 'query');
    const filtered = knex('decisions').whereNot({ source: 'check' }).where((w) => {
      if (q.agent_id) w.where({ agent_id: q.agent_id });
      if (q.status) w.whereRaw(`(${STATUS_SQL}) = ?`, [q.status]);
      if (q.from) w.where('created_at', '>=', new Date(q.from));
      if (q.to) w.where('created_at', '<', new Date(q.to));
    });
    const page = filtered.clone().select('*', knex.raw(`${STATUS_SQL} as tx_status`)).orderBy([{ column: 'created_at', order: 'desc' }, { column: 'id', order: 'desc' }]);
    if (q.cursor) {
      const { at, id } = decodeCursor(q.cursor);
      page.whereRaw('(created_at, id) < (?, ?)', [at, id]);
    }
    const { data, pagination } = await cursorPage<{ created_at: Date; id: string }>(filtered, page, q.limit, (row) => `${row.created_at.toISOString()}|${row.id}`);
    res.json({ data: data.map(present), pagination });
  });
  return router;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function present(row: any) {
  const metadata = (row.metadata ?? {}) as Record<string, unknown>;
  return {
    id: row.id,
    check_id: row.id,
    agent_id: row.agent_id,
    source: row.source,
    action: row.action_type,
    endpoint: metadata.endpoint ?? null,
    amount: toMajorNumber(row.amount, row.currency),
    amount_minor: row.amount,
    // What it counts now: nothing once released (a mirror call keeps the amount it had reserved).
    counted_minor: row.status === 'released' ? 0 : row.counted_amount,
    currency: String(row.currency).toUpperCase(),
    counterparty: row.counterparty || null,
    stripe_object_id: row.reference ?? null,
    status: row.tx_status,
    decision: row.decision,
    reason_code: row.reason_code,
    violated_rule_id: row.violated_rule_id,
    policy_version: row.policy_version,
    created_at: row.created_at.toISOString(),
    updated_at: (row.updated_at ?? row.created_at).toISOString(),
  };
}
