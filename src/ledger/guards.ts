// Stops that come before any policy: a frozen agent (the kill switch) spends nothing, and a card
// frozen or canceled in the registry authorizes nothing. They are read inside the reservation's
// transaction, so a freeze committed before it is seen by every gateway process.
import type { Decision } from '../policy/decide.js';
import type { CheckInput } from './ledger.js';

export interface Guards {
  /** Agents whose status is not 'active', with that status. */
  agents: Map<string, string>;
  /** `${processor}:${id}` of registry cards not 'active', with their status. */
  cards: Map<string, string>;
}

export function cardKey(card: { processor: string; id: string }): string {
  return `${card.processor}:${card.id}`;
}

export function blockedBy(guards: Guards, input: CheckInput): Decision | undefined {
  const base = { violatedRuleId: null, violatedRuleDescription: null, policyId: input.policy.policyId, policyVersion: input.policy.version, confidence: 'high' as const, notify: false };
  const agentStatus = guards.agents.get(input.agentId);
  if (agentStatus) {
    return { ...base, decision: 'block', reasonCode: 'agent_frozen', message: `Agent "${input.agentId}" is ${agentStatus}: it may not spend until an operator unfreezes it` };
  }
  const cardStatus = input.card ? guards.cards.get(cardKey(input.card)) : undefined;
  if (input.card && cardStatus) {
    return { ...base, decision: 'block', reasonCode: cardStatus === 'canceled' ? 'card_canceled' : 'card_frozen', message: `Card ${input.card.id} is ${cardStatus}` };
  }
  return undefined;
}
