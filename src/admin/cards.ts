// /admin/v1/cards: the card registry — list (filters, cursor pagination), one card, and
// registering a card the gateway did not see being made. Freezing lives in ./freeze.ts.
import { Router } from 'express';
import { z } from 'zod';
import type { Knex } from 'knex';
import { ProcessorError } from '../../adapters/processor.js';
import type { Card, Processor, ProcessorName } from '../../adapters/processor.js';
import { presentCard, registerCard, requireCard } from '../cards/registry.js';
import type { CardRow } from '../cards/registry.js';
import { AppError } from '../errors.js';
import { parse } from '../http/validate.js';
import { cursorPage, readCursor } from './pagination.js';

export const processorName = z.enum(['stripe', 'lithic']);
export const cardId = z.string().regex(/^[A-Za-z0-9_-]{1,128}$/, 'a processor card id (letters, digits, _ and -)');
export const agentIdField = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'an agent id');

const listSchema = z.strictObject({
  agent_id: agentIdField.optional(),
  status: z.enum(['active', 'frozen', 'canceled']).optional(),
  processor: processorName.optional(),
  limit: z.coerce.number().int().min(1).max(100).default(50),
  cursor: z.string().optional(),
});
const registerSchema = z.strictObject({ card_id: cardId, agent_id: agentIdField, processor: processorName });
export const processorQuery = z.strictObject({ processor: processorName.optional() });

export function cardRoutes(knex: Knex, processors: Partial<Record<ProcessorName, Processor>>): Router {
  const router = Router();
  router.get('/cards', async (req, res) => {
    const q = parse(listSchema, req.query, 'query');
    const filtered = knex('cards').where((w) => {
      if (q.agent_id) w.where({ agent_id: q.agent_id });
      if (q.status) w.where({ status: q.status });
      if (q.processor) w.where({ processor: q.processor });
    });
    const page = filtered.clone().orderBy([{ column: 'processor' }, { column: 'id' }]);
    if (q.cursor) {
      const [processor, ...rest] = readCursor(q.cursor, (p) => /^(stripe|lithic):[A-Za-z0-9_-]{1,128}$/.test(p)).split(':');
      page.whereRaw('(processor, id) > (?, ?)', [processor ?? '', rest.join(':')]);
    }
    const { data, pagination } = await cursorPage<CardRow>(filtered, page, q.limit, (row) => `${row.processor}:${row.id}`);
    res.json({ data: data.map(presentCard), pagination });
  });
  router.get('/cards/:id', async (req, res) => {
    const { processor } = parse(processorQuery, req.query, 'query');
    res.json(presentCard(await requireCard(knex, parse(cardId, req.params.id, 'card id'), processor)));
  });
  router.post('/cards', async (req, res) => {
    const body = parse(registerSchema, req.body, 'card');
    if (!(await knex('agents').where({ id: body.agent_id }).first('id'))) throw new AppError('not_found', `No agent "${body.agent_id}"`);
    const seen = await readAtProcessor(processors[body.processor], body.card_id, req.log);
    if (seen?.agentId && seen.agentId !== body.agent_id) {
      throw new AppError('conflict', `The processor's card ${body.card_id} names agent "${seen.agentId}" in its metadata, not "${body.agent_id}"`);
    }
    const { card, created } = await registerCard(knex, {
      processor: body.processor,
      id: body.card_id,
      agentId: body.agent_id,
      source: 'registered',
      ...(seen ? { last4: seen.last4, currency: seen.currency, metadata: seen.metadata, processorStatus: seen.status } : {}),
    });
    req.log.info({ processor: card.processor, card_id: card.id, agent_id: card.agent_id, created }, 'card registered');
    res.status(created ? 201 : 200).json(presentCard(card));
  });
  return router;
}

/**
 * The card as the processor has it, when this gateway can ask. A card the processor does not
 * know is refused; a processor that cannot answer now does not block registration.
 */
async function readAtProcessor(processor: Processor | undefined, id: string, log: { warn(o: object, m: string): void }): Promise<Card | undefined> {
  if (!processor) return undefined;
  try {
    return await processor.getCard(id);
  } catch (error) {
    if (error instanceof ProcessorError && error.kind === 'invalid' && error.status === 404) throw new AppError('not_found', `${processor.name} has no card "${id}"`);
    log.warn({ card_id: id, processor: processor.name, error: (error as Error).message }, 'could not read the card at the processor; registered without its status');
    return undefined;
  }
}
