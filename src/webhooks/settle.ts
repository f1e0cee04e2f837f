// Settlement events: what the processor says became of an authorization (held, declined, reversed,
// expired, closed) and its captures and refunds. Each goes to the ledger under the agent's lock;
// the ledger recomputes the authorization's reservations, so redeliveries and late or out-of-order
// events leave the budget equal to the real spend.
import type { Knex } from 'knex';
import type { Logger } from 'pino';
import type { SettlementUpdate } from '../../adapters/processor.js';
import type { Lookups } from '../agents/lookup-cache.js';
import { AppError } from '../errors.js';
import type { AuthorizationSettlement } from '../ledger/authorizations.js';
import type { Ledger } from '../ledger/ledger.js';
import { settlementOwner } from './owner.js';

export interface SettleDeps {
  knex: Knex;
  lookups: Lookups;
  ledger: Ledger;
  logger: Logger;
}

export interface SettlementOutcome {
  reference: string;
  agentId: string | null;
  result: AuthorizationSettlement | null;
}

export async function settleUpdates(deps: SettleDeps, updates: SettlementUpdate[]): Promise<SettlementOutcome[]> {
  const outcomes: SettlementOutcome[] = [];
  for (const update of updates) outcomes.push(await settleOne(deps, update));
  return outcomes;
}

async function settleOne(deps: SettleDeps, update: SettlementUpdate): Promise<SettlementOutcome> {
  const reference = update.kind === 'authorization' ? update.authorizationId : (update.authorizationId ?? update.transactionId);
  const agentId = await settlementOwner(deps.knex, deps.lookups, update);
  if (!agentId) {
    deps.logger.info({ processor: update.processor, card_id: update.cardId, reference }, 'settlement event for a card of no known agent: ignored');
    return { reference, agentId: null, result: null };
  }
  const bound = await deps.lookups.agentPolicy(agentId).catch((error: unknown) => {
    if (error instanceof AppError && (error.code === 'not_found' || error.code === 'invalid_request')) return undefined;
    throw error;
  });
  if (!bound) {
    deps.logger.warn({ agent_id: agentId, reference }, 'settlement event for an agent without a policy: ignored');
    return { reference, agentId, result: null };
  }
  const result = await deps.ledger.settleAuthorization({ agentId, update, policy: bound.policy, timezone: bound.timezone });
  if (result.recorded) deps.logger.warn({ agent_id: agentId, reference, spent: result.spent, held: result.held }, 'processor approved money without a reservation here; counted now');
  return { reference, agentId, result };
}
