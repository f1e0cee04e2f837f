// The durable queue of processor card calls (table card_commands). Commands are written in the
// same transaction as the local status they carry out; workers in any gateway process claim due
// ones with FOR UPDATE SKIP LOCKED and a lease (next_attempt_at pushed ahead), so a process that
// dies mid-call leaves its commands to be claimed again when the lease runs out.
import type { Knex } from 'knex';
import type { ProcessorName } from '../../adapters/processor.js';

export type CommandAction = 'freeze' | 'unfreeze' | 'apply_controls';

export interface CommandRow {
  id: number;
  job_id: string | null;
  processor: ProcessorName;
  card_id: string;
  action: CommandAction;
  payload: unknown;
  status: 'pending' | 'confirmed' | 'failed' | 'superseded';
  attempts: number;
  last_error: string | null;
  /** The card's local status when the command was claimed. */
  card_status?: string;
}

/**
 * Queues `action` for the given cards, replacing any pending freeze/unfreeze of the same cards
 * (the newest wish wins). Returns how many commands were queued.
 */
export async function enqueueForCards(trx: Knex.Transaction, action: 'freeze' | 'unfreeze', jobId: string | null, cards: { processor: string; id: string }[]): Promise<number> {
  if (cards.length === 0) return 0;
  const processors = cards.map((c) => c.processor);
  const ids = cards.map((c) => c.id);
  await trx.raw(
    `update card_commands c set status = 'superseded', updated_at = now(), completed_at = now()
       from unnest(?::text[], ?::text[]) as k(processor, id)
      where c.status = 'pending' and c.action in ('freeze', 'unfreeze') and c.processor = k.processor and c.card_id = k.id`,
    [processors, ids],
  );
  const result = await trx.raw(
    `insert into card_commands (job_id, processor, card_id, action) select ?, k.processor, k.id, ? from unnest(?::text[], ?::text[]) as k(processor, id)`,
    [jobId, action, processors, ids],
  );
  return result.rowCount ?? cards.length;
}

export async function enqueueControls(knex: Knex, processor: ProcessorName, cardId: string, controls: unknown): Promise<void> {
  await knex('card_commands').where({ processor, card_id: cardId, action: 'apply_controls', status: 'pending' }).update({ status: 'superseded', updated_at: knex.fn.now(), completed_at: knex.fn.now() });
  await knex('card_commands').insert({ processor, card_id: cardId, action: 'apply_controls', payload: JSON.stringify(controls) });
}

/** Due commands for these processors, leased to the caller for `leaseMs`. */
export async function claimCommands(knex: Knex, processors: ProcessorName[], limit: number, leaseMs: number): Promise<CommandRow[]> {
  if (processors.length === 0 || limit <= 0) return [];
  const result = await knex.raw(
    `with due as (
       select id from card_commands
        where status = 'pending' and next_attempt_at <= now() and processor = any(?::text[])
        order by next_attempt_at, id limit ? for update skip locked),
     claimed as (
       update card_commands c set attempts = c.attempts + 1, next_attempt_at = now() + ? * interval '1 millisecond', updated_at = now()
         from due where c.id = due.id returning c.*)
     select claimed.*, k.status as card_status from claimed left join cards k on k.processor = claimed.processor and k.id = claimed.card_id`,
    [processors, limit, leaseMs],
  );
  return (result.rows as CommandRow[]).map((r) => ({ ...r, id: Number(r.id) }));
}

export async function recordProcessorStatus(knex: Knex, processor: string, cardId: string, processorStatus: string): Promise<void> {
  await knex('cards').where({ processor, id: cardId }).update({ processor_status: processorStatus, processor_checked_at: knex.fn.now(), updated_at: knex.fn.now() });
}

export async function retryCommand(knex: Knex, command: CommandRow, error: { message: string; kind: string }, delayMs: number): Promise<void> {
  await knex('card_commands')
    .where({ id: command.id, status: 'pending' })
    .update({ next_attempt_at: knex.raw(`now() + ? * interval '1 millisecond'`, [delayMs]), last_error: error.message.slice(0, 500), last_error_kind: error.kind, updated_at: knex.fn.now() });
}

export async function finishCommand(knex: Knex, command: CommandRow, status: 'failed' | 'superseded', error?: { message: string; kind: string }): Promise<void> {
  await knex('card_commands')
    .where({ id: command.id, status: 'pending' })
    .update({ status, ...(error ? { last_error: error.message.slice(0, 500), last_error_kind: error.kind } : {}), updated_at: knex.fn.now(), completed_at: knex.fn.now() });
}

/** Gives leased commands back (a clean shutdown), so another process takes them at once. */
export async function releaseCommands(knex: Knex, ids: number[]): Promise<void> {
  if (ids.length > 0) await knex('card_commands').whereIn('id', ids).where({ status: 'pending' }).update({ next_attempt_at: knex.fn.now() });
}

/**
 * Confirmations from many concurrent processor calls, written together: one transaction per
 * batch instead of one per card (a commit is a disk flush). Each caller waits for its batch.
 */
export function confirmationBatcher(knex: Knex, maxWaitMs = 5, maxBatch = 200): (command: CommandRow, processorStatus: string) => Promise<void> {
  let batch: { command: CommandRow; status: string; done: (error?: unknown) => void }[] = [];
  let timer: NodeJS.Timeout | undefined;
  const flush = async () => {
    const items = batch;
    batch = [];
    timer = undefined;
    try {
      await knex.transaction(async (trx) => {
        await trx.raw(`update card_commands set status = 'confirmed', last_error = null, last_error_kind = null, updated_at = now(), completed_at = now() where id = any(?::bigint[]) and status = 'pending'`, [items.map((i) => i.command.id)]);
        await trx.raw(
          `update cards k set processor_status = u.status, processor_checked_at = now(), updated_at = now()
             from unnest(?::text[], ?::text[], ?::text[]) as u(processor, id, status) where k.processor = u.processor and k.id = u.id`,
          [items.map((i) => i.command.processor), items.map((i) => i.command.card_id), items.map((i) => i.status)],
        );
      });
      for (const item of items) item.done();
    } catch (error) {
      for (const item of items) item.done(error);
    }
  };
  return (command, status) =>
    new Promise<void>((resolve, reject) => {
      batch.push({ command, status, done: (error) => (error ? reject(error) : resolve()) });
      if (batch.length >= maxBatch) {
        if (timer) clearTimeout(timer);
        void flush();
      } else if (!timer) {
        timer = setTimeout(() => void flush(), maxWaitMs);
      }
    });
}
