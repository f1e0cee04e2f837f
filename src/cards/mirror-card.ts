// A card an agent made through the Stripe mirror joins the registry before the agent sees
// Stripe's answer, so an operator can freeze it the moment it exists.
import type { Knex } from 'knex';
import type { Logger } from 'pino';
import { registerCard } from './registry.js';

const STATUS: Record<string, 'active' | 'frozen' | 'canceled'> = { active: 'active', inactive: 'frozen', canceled: 'canceled' };

/** Never throws: the card exists at Stripe either way; a failure is logged for the reconciliation. */
export async function registerMirrorCard(knex: Knex, agentId: string, status: number, body: Buffer, log: Logger): Promise<void> {
  if (status < 200 || status >= 300) return;
  try {
    const card = JSON.parse(body.toString('utf8')) as { id?: unknown; object?: unknown; status?: unknown; last4?: unknown; currency?: unknown };
    if (typeof card.id !== 'string' || card.object !== 'issuing.card') return;
    await registerCard(knex, {
      processor: 'stripe',
      id: card.id,
      agentId,
      source: 'mirror',
      last4: typeof card.last4 === 'string' ? card.last4 : null,
      currency: typeof card.currency === 'string' ? card.currency : null,
      processorStatus: typeof card.status === 'string' ? (STATUS[card.status] ?? 'pending') : null,
    });
  } catch (error) {
    log.error({ err: error, agent_id: agentId }, 'registering a card made through the mirror failed; the reconciliation job will discover it');
  }
}
