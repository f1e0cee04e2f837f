// Whose card is this? The registry first (a card registered to an agent, or made through the
// mirror), then the card's own metadata.agent_id, then its cardholder's.
import type { Knex } from 'knex';
import type { CardSnapshot, ProcessorName } from '../../adapters/processor.js';

export async function cardOwner(knex: Knex, processor: ProcessorName, card: CardSnapshot): Promise<string | undefined> {
  const registered = await knex('cards').where({ processor, id: card.id }).first('agent_id');
  if (registered) return registered.agent_id as string;
  const named = card.metadata.agent_id ?? card.cardholderMetadata.agent_id;
  return named && named.trim() !== '' ? named : undefined;
}
