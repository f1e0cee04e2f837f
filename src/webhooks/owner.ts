// Whose card is this? The registry first (a card registered to an agent, or made through the
// mirror), then the card's own metadata.agent_id, then its cardholder's.
import type { Knex } from 'knex';
import type { Lookups } from '../agents/lookup-cache.js';
import type { CardSnapshot, ProcessorName, SettlementUpdate } from '../../adapters/processor.js';

export async function cardOwner(lookups: Lookups, processor: ProcessorName, card: CardSnapshot): Promise<string | undefined> {
  const registered = await lookups.registeredCard(processor, card.id);
  if (registered) return registered;
  const named = card.metadata.agent_id ?? card.cardholderMetadata.agent_id;
  return named && named.trim() !== '' ? named : undefined;
}

/**
 * A settlement event's agent: as for a request, else the agent of the authorization it is about
 * (a Stripe transaction carries only the card's id, not its metadata).
 */
export async function settlementOwner(knex: Knex, lookups: Lookups, update: SettlementUpdate): Promise<string | undefined> {
  const owner = await cardOwner(lookups, update.processor, update.card);
  if (owner || !update.authorizationId) return owner;
  const known = await knex('card_authorizations').where({ processor: update.processor, id: update.authorizationId }).first('agent_id');
  if (known) return known.agent_id as string;
  const reserved = await knex('decisions').where({ reference: update.authorizationId, source: update.processor }).first('agent_id');
  return reserved?.agent_id as string | undefined;
}
