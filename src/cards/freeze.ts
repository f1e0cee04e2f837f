// Freezing and unfreezing: the local status flips first, for every card concerned, in ONE
// committed transaction together with the queued processor calls — from that commit every
// process declines the cards' authorizations. The processor is driven afterwards (./worker.ts).
// Nothing here ever unfreezes on its own: unfreezing is always an operator's explicit request.
import type { Knex } from 'knex';
import { publishInvalidation } from '../db/invalidation.js';
import { AppError } from '../errors.js';
import { newId } from '../ids.js';
import { enqueueForCards } from './queue.js';
import type { CardRow } from './registry.js';

export type CardScope = { all: true } | { agentId: string } | { card: { processor: string; id: string } };

export interface Requested {
  reason?: string;
  requestedBy?: string;
}

export interface StartedJob {
  jobId: string;
  action: 'freeze' | 'unfreeze';
  total: number;
  at: Date;
}

function scopeJson(scope: CardScope): Record<string, unknown> {
  if ('all' in scope) return { all: true };
  if ('agentId' in scope) return { agent_id: scope.agentId };
  return { processor: scope.card.processor, card_id: scope.card.id };
}

function whereScope(query: Knex.QueryBuilder, scope: CardScope): Knex.QueryBuilder {
  if ('agentId' in scope) return query.where({ agent_id: scope.agentId });
  if ('card' in scope) return query.where({ processor: scope.card.processor, id: scope.card.id });
  return query;
}

async function createJob(trx: Knex.Transaction, action: 'freeze' | 'unfreeze', scope: CardScope, requested: Requested) {
  const [job] = await trx('card_jobs').insert({ id: newId('cjob'), action, scope: JSON.stringify(scopeJson(scope)), reason: requested.reason ?? null, requested_by: requested.requestedBy ?? null }).returning(['id', 'created_at']);
  return job as { id: string; created_at: Date };
}

async function requireScope(trx: Knex.Transaction, scope: CardScope): Promise<void> {
  if ('agentId' in scope && !(await trx('agents').where({ id: scope.agentId }).first('id'))) throw new AppError('not_found', `No agent "${scope.agentId}"`);
  if ('card' in scope) {
    const card = (await trx('cards').where({ processor: scope.card.processor, id: scope.card.id }).forUpdate().first()) as CardRow | undefined;
    if (!card) throw new AppError('not_found', `No card "${scope.card.id}"`);
    if (card.status === 'canceled') throw new AppError('conflict', `Card ${card.id} is canceled: it can never authorize again, so there is nothing to freeze or unfreeze`);
  }
}

/** Every non-canceled card in scope becomes frozen now; its processor freeze is queued. */
export async function freezeCards(knex: Knex, scope: CardScope, requested: Requested = {}): Promise<StartedJob> {
  return knex.transaction((trx) => freezeInTransaction(trx, scope, requested));
}

async function freezeInTransaction(trx: Knex.Transaction, scope: CardScope, requested: Requested): Promise<StartedJob> {
  await requireScope(trx, scope);
  const job = await createJob(trx, 'freeze', scope, requested);
  // Already-frozen cards keep their first frozen_at and are driven again: a fresh confirmation.
  const cards = (await whereScope(trx('cards'), scope)
    .whereNot({ status: 'canceled' })
    .update({ status: 'frozen', frozen_at: trx.raw('coalesce(frozen_at, now())'), frozen_reason: trx.raw('coalesce(frozen_reason, ?)', [requested.reason ?? 'frozen by operator']), updated_at: trx.fn.now() })
    .returning(['processor', 'id'])) as { processor: string; id: string }[];
  const total = await enqueueForCards(trx, 'freeze', job.id, cards);
  await trx('card_jobs').where({ id: job.id }).update({ total });
  return { jobId: job.id, action: 'freeze', total, at: job.created_at };
}

/** Frozen cards in scope become active now; their processor unfreeze is queued. */
export async function unfreezeCards(knex: Knex, scope: { agentId: string } | { card: { processor: string; id: string } }, requested: Requested = {}): Promise<StartedJob> {
  return knex.transaction(async (trx) => {
    await requireScope(trx, scope);
    const agentId = 'agentId' in scope ? scope.agentId : ((await trx('cards').where({ processor: scope.card.processor, id: scope.card.id }).first('agent_id')) as { agent_id: string }).agent_id;
    const agent = await trx('agents').where({ id: agentId }).forShare().first('status');
    if (agent?.status === 'frozen') throw new AppError('conflict', `Agent "${agentId}" is frozen: unfreeze the agent first (POST /admin/v1/agents/${agentId}/unfreeze)`);
    const job = await createJob(trx, 'unfreeze', scope, requested);
    const cards = (await whereScope(trx('cards'), scope)
      .where({ status: 'frozen' })
      .update({ status: 'active', frozen_at: null, frozen_reason: null, updated_at: trx.fn.now() })
      .returning(['processor', 'id'])) as { processor: string; id: string }[];
    const total = await enqueueForCards(trx, 'unfreeze', job.id, cards);
    await trx('card_jobs').where({ id: job.id }).update({ total });
    return { jobId: job.id, action: 'unfreeze', total, at: job.created_at };
  });
}

/**
 * The kill switch: the agent is frozen (its keys stop working in every process: the
 * invalidation is published inside the transaction, so it is heard when it commits) and all its
 * cards freeze, in one transaction.
 */
export async function freezeAgent(knex: Knex, agentId: string, requested: Requested = {}): Promise<StartedJob> {
  return knex.transaction(async (trx) => {
    const [agent] = await trx('agents')
      .where({ id: agentId })
      .update({ status: 'frozen', frozen_at: trx.raw('coalesce(frozen_at, now())'), frozen_reason: requested.reason ?? 'frozen by operator', updated_at: trx.fn.now() })
      .returning('id');
    if (!agent) throw new AppError('not_found', `No agent "${agentId}"`);
    await publishInvalidation(trx, `agent:${agentId}`);
    return freezeInTransaction(trx, { agentId }, { ...requested, reason: requested.reason ?? 'agent frozen' });
  });
}

/** The agent's keys work again. Its cards stay frozen until each is unfrozen explicitly. */
export async function unfreezeAgent(knex: Knex, agentId: string): Promise<{ frozenCards: number }> {
  return knex.transaction(async (trx) => {
    const [agent] = await trx('agents').where({ id: agentId }).update({ status: 'active', frozen_at: null, frozen_reason: null, updated_at: trx.fn.now() }).returning('id');
    if (!agent) throw new AppError('not_found', `No agent "${agentId}"`);
    await publishInvalidation(trx, `agent:${agentId}`);
    const [row] = await trx('cards').where({ agent_id: agentId, status: 'frozen' }).count({ n: '*' });
    return { frozenCards: Number(row?.n ?? 0) };
  });
}
