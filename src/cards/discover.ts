// Discovery: cards at the processor that name a known agent in their metadata (Stripe
// `metadata.agent_id`, Lithic memo tag) but are not in the registry yet. Used by the kill switch
// (so an agent's unregistered cards freeze too) and by the reconciliation job.
import type { Knex } from 'knex';
import type { Card, CardAdapter } from '../../adapters/processor.js';
import { registerCard } from './registry.js';

/** Every card the processor lists (optionally only `agentId`'s), page by page, up to `maxPages`. */
export async function* processorCards(adapter: CardAdapter, agentId: string | undefined, maxPages: number): AsyncGenerator<Card> {
  let cursor: string | undefined;
  for (let page = 0; page < maxPages; page++) {
    const result = await adapter.listCards({ ...(agentId ? { agentId } : {}), ...(cursor ? { cursor } : {}), limit: 100 });
    yield* result.cards;
    if (!result.nextCursor) return;
    cursor = result.nextCursor;
  }
}

/** Registers `card` if it names an agent the gateway knows and is not registered yet. */
export async function adoptCard(knex: Knex, card: Card, jobId?: string): Promise<boolean> {
  if (!card.agentId) return false;
  if (await knex('cards').where({ processor: card.processor, id: card.id }).first('id')) return false;
  if (!(await knex('agents').where({ id: card.agentId }).first('id'))) return false;
  const { created } = await registerCard(knex, { processor: card.processor, id: card.id, agentId: card.agentId, source: 'discovered', last4: card.last4, currency: card.currency, metadata: card.metadata, processorStatus: card.status, ...(jobId ? { freezeJobId: jobId } : {}) });
  return created;
}

export async function discoverAgentCards(knex: Knex, adapter: CardAdapter, agentId: string, jobId?: string, maxPages = 100): Promise<number> {
  let adopted = 0;
  for await (const card of processorCards(adapter, agentId, maxPages)) if (await adoptCard(knex, card, jobId)) adopted++;
  return adopted;
}
