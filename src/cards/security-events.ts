// Security events: something happened to an agent's money outside the gateway's control (a
// frozen card reactivated at the processor, spending controls loosened). Each is logged at warn
// as a structured event and stored in `security_events` for GET /admin/v1/security-events.
import type { Knex } from 'knex';
import type { Logger } from 'pino';

export interface SecurityEvent {
  type: 'card_reactivated_outside_gateway' | 'card_controls_loosened' | 'webhook_signature_invalid';
  processor?: string;
  cardId?: string;
  agentId?: string | null;
  message: string;
  details?: Record<string, unknown>;
}

export async function recordSecurityEvent(knex: Knex, logger: Logger, event: SecurityEvent): Promise<void> {
  logger.warn({ event: 'security', security_event: event.type, processor: event.processor, card_id: event.cardId, agent_id: event.agentId, details: event.details }, event.message);
  await knex('security_events').insert({
    type: event.type,
    processor: event.processor ?? null,
    card_id: event.cardId ?? null,
    agent_id: event.agentId ?? null,
    message: event.message,
    details: JSON.stringify(event.details ?? {}),
  });
}
