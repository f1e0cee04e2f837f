// Reconciliation of cards with their processors: reads every card each processor lists and
// compares it with the registry. A card frozen here but active there — reactivated outside the
// gateway — is frozen again through the queue and raises a security event; a card canceled there
// is canceled here; a card naming a known agent is adopted; a mirror card whose spending controls
// were loosened gets the policy's controls back (also a security event). Never unfreezes anything.
import type { Card, SpendingControls } from '../../adapters/processor.js';
import { adoptCard, processorCards } from '../cards/discover.js';
import { enqueueControls, enqueueForCards, recordProcessorStatus } from '../cards/queue.js';
import type { CardRow } from '../cards/registry.js';
import { recordSecurityEvent } from '../cards/security-events.js';
import { cardSpendingControls } from '../mirror/card-controls.js';
import { agentPolicy } from '../policy/store.js';
import type { JobDeps } from './index.js';
import { loosenedControls } from './controls-diff.js';

export const name = 'reconcile-cards';

/** A run reads at most this many pages (100 cards each) per processor; the next run starts over. */
const MAX_PAGES = 500;

interface Tally {
  checked: number;
  refrozen: number;
  adopted: number;
  canceled: number;
  controls_restored: number;
  errors: number;
}

export async function run(deps: JobDeps, _now: Date): Promise<Tally> {
  const tally: Tally = { checked: 0, refrozen: 0, adopted: 0, canceled: 0, controls_restored: 0, errors: 0 };
  for (const adapter of Object.values(deps.processors)) {
    try {
      for await (const card of processorCards(adapter, undefined, MAX_PAGES)) {
        tally.checked++;
        await reconcileCard(deps, card, tally).catch((error: unknown) => {
          tally.errors++;
          deps.logger.warn({ processor: card.processor, card_id: card.id, err: error }, 'reconciling a card failed');
        });
      }
    } catch (error) {
      tally.errors++;
      deps.logger.warn({ processor: adapter.name, error: (error as Error).message }, 'listing cards at the processor failed; the next run tries again');
    }
  }
  if (tally.refrozen + tally.adopted + tally.controls_restored > 0) deps.kick();
  return tally;
}

async function reconcileCard(deps: JobDeps, card: Card, tally: Tally): Promise<void> {
  const { knex } = deps;
  const row = (await knex('cards').where({ processor: card.processor, id: card.id }).first()) as CardRow | undefined;
  if (!row) {
    if (await adoptCard(knex, card)) tally.adopted++;
    return;
  }
  await recordProcessorStatus(knex, card.processor, card.id, card.status);
  if (card.status === 'canceled' && row.status !== 'canceled') {
    await knex('cards').where({ processor: card.processor, id: card.id }).update({ status: 'canceled', updated_at: knex.fn.now() });
    tally.canceled++;
    return;
  }
  if (row.status === 'frozen' && card.status === 'active') await refreeze(deps, row, tally);
  if (row.source === 'mirror' && row.status !== 'canceled' && card.spendingControls && card.currency) await restoreControls(deps, row, card.currency, card.spendingControls, tally);
}

async function refreeze(deps: JobDeps, row: CardRow, tally: Tally): Promise<void> {
  const { knex } = deps;
  const inFlight = await knex('card_commands').where({ processor: row.processor, card_id: row.id, action: 'freeze', status: 'pending' }).first('id');
  if (inFlight) return; // our own freeze is still on its way
  // Confirmed frozen before, active now: someone reactivated it at the processor.
  if (row.processor_status === 'frozen') {
    await recordSecurityEvent(knex, deps.logger, {
      type: 'card_reactivated_outside_gateway',
      processor: row.processor,
      cardId: row.id,
      agentId: row.agent_id,
      message: `Card ${row.id} (agent ${row.agent_id}) is frozen in spendgate but was reactivated at ${row.processor}; freezing it again`,
      details: { frozen_at: row.frozen_at?.toISOString() ?? null, frozen_reason: row.frozen_reason },
    });
  } else {
    deps.logger.warn({ processor: row.processor, card_id: row.id }, 'frozen card not yet frozen at the processor and no freeze queued; queuing one');
  }
  await knex.transaction((trx) => enqueueForCards(trx, 'freeze', null, [{ processor: row.processor, id: row.id }]));
  tally.refrozen++;
}

async function restoreControls(deps: JobDeps, row: CardRow, currency: string, actual: SpendingControls, tally: Tally): Promise<void> {
  const { knex } = deps;
  const bound = await agentPolicy(knex, row.agent_id).catch(() => undefined);
  if (!bound) return;
  const expected = cardSpendingControls(bound.policy, currency.toLowerCase());
  const loosened = loosenedControls(expected, actual);
  if (loosened.length === 0) return;
  if (await knex('card_commands').where({ processor: row.processor, card_id: row.id, action: 'apply_controls', status: 'pending' }).first('id')) return;
  await recordSecurityEvent(knex, deps.logger, {
    type: 'card_controls_loosened',
    processor: row.processor,
    cardId: row.id,
    agentId: row.agent_id,
    message: `Card ${row.id} (agent ${row.agent_id}) has looser spending controls at ${row.processor} than its policy (${loosened.join(', ')}); restoring them`,
    details: { loosened, expected, actual },
  });
  await enqueueControls(knex, row.processor, row.id, expected);
  tally.controls_restored++;
}
