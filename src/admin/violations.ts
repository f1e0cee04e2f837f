// GET /admin/v1/violations: every block and escalate, newest first, with filters and cursor
// pagination. Read-only by design: no route edits or deletes an entry (and the table refuses to).
import { Router } from 'express';
import { z } from 'zod';
import type { Knex } from 'knex';
import { AppError } from '../errors.js';
import { parse } from '../http/validate.js';
import { cursorPage, readCursor } from './pagination.js';
import { toMajorNumber } from '../money.js';

const querySchema = z.strictObject({
  agent_id: z.string().optional(),
  policy_id: z.string().optional(),
  decision: z.enum(['block', 'escalate']).optional(),
  reason_code: z.string().optional(),
  from: z.iso.datetime({ offset: true }).or(z.iso.date()).optional(),
  to: z.iso.datetime({ offset: true }).or(z.iso.date()).optional(),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().optional(),
});

function decodeCursor(cursor: string): number {
  return Number(readCursor(cursor, (p) => /^seq:[1-9]\d{0,15}$/.test(p)).slice(4));
}

export function violationRoutes(knex: Knex): Router {
  const router = Router();
  router.get('/violations', async (req, res) => {
    const q = parse(querySchema, req.query, 'query');
    const filtered = knex('violations').where((w) => {
      if (q.agent_id) w.where({ agent_id: q.agent_id });
      if (q.policy_id) w.where({ policy_id: q.policy_id });
      if (q.decision) w.where({ decision: q.decision });
      if (q.reason_code) w.where({ reason_code: q.reason_code });
      if (q.from) w.where('created_at', '>=', new Date(q.from));
      if (q.to) w.where('created_at', '<', new Date(q.to));
    });
    const page = filtered.clone().orderBy('seq', 'desc');
    if (q.cursor) page.where('seq', '<', decodeCursor(q.cursor));
    const { data, pagination } = await cursorPage<{ seq: number }>(filtered, page, q.limit, (row) => `seq:${row.seq}`);
    res.json({ data: data.map(present), pagination });
  });
  router.all(['/violations/:id', '/violations'], (req, _res, next) => {
    if (req.method === 'GET') return next();
    throw new AppError('forbidden', 'The violations log is append-only: entries are never edited or deleted');
  });
  return router;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function present(row: any) {
  return {
    violation_id: row.id,
    check_id: row.check_id,
    agent_id: row.agent_id,
    policy_id: row.policy_id,
    policy_version: row.policy_version,
    action_type: row.action_type,
    amount: toMajorNumber(row.amount, row.currency),
    amount_minor: row.amount,
    currency: String(row.currency).toUpperCase(),
    counterparty: row.counterparty,
    decision: row.decision,
    reason_code: row.reason_code,
    message: row.message,
    violated_rule_id: row.violated_rule_id,
    violated_rule_description: row.violated_rule_description,
    confidence: row.confidence,
    latency_ms: row.latency_ms,
    timestamp: row.created_at.toISOString(),
  };
}
