// The card registry: every card the gateway knows, the agent it belongs to, its local status
// (which decides authorizations: active, frozen, canceled) and what the processor last confirmed.
// Cards arrive through the mirror, by registration, or by discovery at the processor.
import type { Knex } from 'knex';
import type { CardStatus, ProcessorName } from '../../adapters/processor.js';
import { publishInvalidation } from '../db/invalidation.js';
import { AppError } from '../errors.js';
import { enqueueForCards } from './queue.js';

export type CardSource = 'mirror' | 'registered' | 'discovered';
export type LocalStatus = 'active' | 'frozen' | 'canceled';

export interface CardRow {
  processor: ProcessorName;
  id: string;
  agent_id: string;
  status: LocalStatus;
  processor_status: CardStatus | null;
  processor_checked_at: Date | null;
  source: CardSource;
  last4: string | null;
  currency: string | null;
  metadata: Record<string, string>;
  frozen_at: Date | null;
  frozen_reason: string | null;
  created_at: Date;
  updated_at: Date;
}

export interface NewCard {
  processor: ProcessorName;
  id: string;
  agentId: string;
  source: CardSource;
  last4?: string | null;
  currency?: string | null;
  metadata?: Record<string, string>;
  /** What the processor said when the card was read or made, if it was. */
  processorStatus?: CardStatus | null;
  /** The freeze job a card of a frozen agent joins (the kill switch's discovery). */
  freezeJobId?: string;
}

/**
 * Adds a card (or returns the one already known, refreshed). A card of a frozen agent is
 * registered frozen and its freeze queued, in the same transaction. A card known under another
 * agent is a conflict: ownership never moves silently.
 */
export async function registerCard(knex: Knex, card: NewCard): Promise<{ card: CardRow; created: boolean }> {
  return knex.transaction(async (trx) => {
    const agent = await trx('agents').where({ id: card.agentId }).forShare().first('id', 'status');
    if (!agent) throw new AppError('not_found', `No agent "${card.agentId}"`);
    const frozen = agent.status === 'frozen';
    const checked = card.processorStatus ? { processor_status: card.processorStatus, processor_checked_at: trx.fn.now() } : {};
    const [inserted] = await trx('cards')
      .insert({
        processor: card.processor,
        id: card.id,
        agent_id: card.agentId,
        source: card.source,
        status: card.processorStatus === 'canceled' ? 'canceled' : frozen ? 'frozen' : 'active',
        last4: card.last4 ?? null,
        currency: card.currency ?? null,
        metadata: JSON.stringify(card.metadata ?? {}),
        ...(frozen ? { frozen_at: trx.fn.now(), frozen_reason: 'agent frozen' } : {}),
        ...checked,
      })
      .onConflict(['processor', 'id'])
      .ignore()
      .returning('*');
    if (inserted) {
      // Processes that cached "not registered" for this card forget it when this commits.
      await publishInvalidation(trx, `card:${card.processor}:${card.id}`);
      if (inserted.status === 'frozen') await enqueueForCards(trx, 'freeze', card.freezeJobId ?? null, [{ processor: card.processor, id: card.id }]);
      return { card: inserted as CardRow, created: true };
    }
    const existing = (await trx('cards').where({ processor: card.processor, id: card.id }).forUpdate().first()) as CardRow;
    if (existing.agent_id !== card.agentId) throw new AppError('conflict', `Card ${card.id} is registered to agent "${existing.agent_id}", not "${card.agentId}"`);
    const [refreshed] = await trx('cards')
      .where({ processor: card.processor, id: card.id })
      .update({ last4: card.last4 ?? existing.last4, currency: card.currency ?? existing.currency, ...checked, updated_at: trx.fn.now() })
      .returning('*');
    return { card: refreshed as CardRow, created: false };
  });
}

/** One card by id; `processor` disambiguates when two processors use the same id. */
export async function requireCard(knex: Knex, id: string, processor?: ProcessorName): Promise<CardRow> {
  const rows = (await knex('cards').where({ id, ...(processor ? { processor } : {}) }).limit(2)) as CardRow[];
  if (rows.length === 0) throw new AppError('not_found', `No card "${id}"${processor ? ` at ${processor}` : ''}`);
  if (rows.length > 1) throw new AppError('conflict', `Card id "${id}" exists at more than one processor: add ?processor=stripe|lithic`);
  return rows[0] as CardRow;
}

export function presentCard(row: CardRow) {
  return {
    id: row.id,
    processor: row.processor,
    agent_id: row.agent_id,
    status: row.status,
    processor_status: row.processor_status,
    processor_checked_at: row.processor_checked_at?.toISOString() ?? null,
    // The processor agrees with the local status (the gateway's own decisions never wait for this).
    confirmed: row.processor_status !== null && (row.processor_status === row.status || (row.status === 'frozen' && row.processor_status === 'canceled')),
    source: row.source,
    last4: row.last4,
    currency: row.currency,
    frozen_at: row.frozen_at?.toISOString() ?? null,
    frozen_reason: row.frozen_reason,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}
