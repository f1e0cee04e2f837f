// The queue worker: claims due card commands for the processors this process can call, runs at
// most `concurrency` processor calls at once, and records each answer. Retryable and
// indeterminate failures are retried with exponential backoff (freeze and unfreeze are
// idempotent, so repeating one that may have happened is safe); a refusal is checked against the
// card's real state before it counts as failed. Every process runs one; they share the queue.
import type { Knex } from 'knex';
import type { Logger } from 'pino';
import { ProcessorError } from '../../adapters/processor.js';
import type { Card, CardAdapter, ProcessorName, SpendingControls } from '../../adapters/processor.js';
import { claimCommands, confirmationBatcher, finishCommand, recordProcessorStatus, releaseCommands, retryCommand } from './queue.js';
import type { CommandRow } from './queue.js';

export interface CardWorkerOptions {
  concurrency: number;
  retryBaseMs: number;
  retryMaxMs: number;
  /** How often to look for due commands when nobody kicks the worker. */
  pollMs: number;
  /** How long a claimed command is ours before another process may take it. */
  leaseMs: number;
}

export interface CardWorker {
  /** Look for work now (after queuing commands in this process). */
  kick(): void;
  stop(): Promise<void>;
}

const WANTED: Record<'freeze' | 'unfreeze', string[]> = { freeze: ['frozen', 'canceled'], unfreeze: ['active'] };

export function backoffMs(attempts: number, baseMs: number, maxMs: number): number {
  const exact = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempts - 1));
  return Math.round(exact * (0.8 + Math.random() * 0.4));
}

export function startCardWorker(knex: Knex, processors: Partial<Record<ProcessorName, CardAdapter>>, logger: Logger, options: CardWorkerOptions): CardWorker {
  const names = Object.keys(processors) as ProcessorName[];
  const inFlight = new Map<number, Promise<void>>();
  let stopped = false;
  let pumping: Promise<void> | undefined;
  let again = false;
  const confirm = confirmationBatcher(knex);

  // A retry this process scheduled is picked up when due, not at the next poll.
  const retryLater = async (command: CommandRow, error: { message: string; kind: string }, delay: number) => {
    await retryCommand(knex, command, error, delay);
    if (!stopped) setTimeout(() => void pump(), delay + 5).unref();
  };

  async function execute(command: CommandRow): Promise<void> {
    const adapter = processors[command.processor];
    if (!adapter) return;
    const log = logger.child({ command_id: command.id, job_id: command.job_id, processor: command.processor, card_id: command.card_id, action: command.action, attempt: command.attempts });
    // The card's local status is the wish; a command that no longer matches it is stale.
    if (command.action !== 'apply_controls' && !(command.card_status === (command.action === 'freeze' ? 'frozen' : 'active'))) {
      return finishCommand(knex, command, 'superseded');
    }
    try {
      const card = await call(adapter, command);
      if (command.action === 'apply_controls' || WANTED[command.action].includes(card.status)) return await confirm(command, card.status);
      await recordProcessorStatus(knex, command.processor, command.card_id, card.status);
      await retryLater(command, { message: `the processor answered with status ${card.status}`, kind: 'indeterminate' }, backoffMs(command.attempts, options.retryBaseMs, options.retryMaxMs));
    } catch (error) {
      const failure = error instanceof ProcessorError ? error : new ProcessorError((error as Error)?.message ?? String(error), 'indeterminate');
      if (failure.kind === 'retryable' || failure.kind === 'indeterminate') {
        const delay = backoffMs(command.attempts, options.retryBaseMs, options.retryMaxMs);
        log.warn({ err_kind: failure.kind, status: failure.status, retry_in_ms: delay, error: failure.message }, 'processor card call failed; will retry');
        return retryLater(command, failure, delay);
      }
      // Refused: perhaps because the card already is as wanted (a canceled card cannot be paused).
      const now = command.action === 'apply_controls' ? undefined : await adapter.getCard(command.card_id).catch(() => undefined);
      if (now && command.action !== 'apply_controls' && WANTED[command.action].includes(now.status)) return confirm(command, now.status);
      log.error({ err_kind: failure.kind, status: failure.status, error: failure.message }, 'processor refused the card call');
      await finishCommand(knex, command, 'failed', failure);
    }
  }

  function pump(): Promise<void> {
    if (pumping) {
      again = true;
      return pumping;
    }
    // Cleared in a callback, never inside claimAndRun: it may finish before this assignment.
    const run = claimAndRun().finally(() => {
      if (pumping === run) pumping = undefined;
      if (again && !stopped) {
        again = false;
        void pump();
      }
    });
    pumping = run;
    return run;
  }

  async function claimAndRun(): Promise<void> {
    try {
      while (!stopped) {
        const free = options.concurrency - inFlight.size;
        if (free <= 0) break;
        const batch = await claimCommands(knex, names, free, options.leaseMs);
        if (stopped) {
          await releaseCommands(knex, batch.map((c) => c.id));
          break;
        }
        for (const command of batch) {
          const task = execute(command)
            .catch((error: unknown) => logger.error({ err: error, command_id: command.id }, 'card command failed in the gateway; it is retried when its lease ends'))
            .finally(() => {
              inFlight.delete(command.id);
              // Refill in batches, not one claim per finished call.
              if (!stopped && (inFlight.size <= options.concurrency / 2)) void pump();
            });
          inFlight.set(command.id, task);
        }
        if (batch.length < free) break;
      }
    } catch (error) {
      logger.warn({ err: error }, 'claiming card commands failed; retrying on the next poll');
    }
  }

  const timer = names.length > 0 ? setInterval(() => void pump(), options.pollMs) : undefined;
  timer?.unref();
  if (names.length > 0) void pump();

  return {
    kick: () => {
      if (names.length > 0 && !stopped) void pump();
    },
    async stop() {
      stopped = true;
      if (timer) clearInterval(timer);
      await pumping;
      // Calls already sent finish (briefly); whatever is still out is handed back to the queue.
      const settled = Promise.all(inFlight.values());
      await Promise.race([settled, new Promise((r) => setTimeout(r, 2000).unref())]);
      await releaseCommands(knex, [...inFlight.keys()]).catch(() => undefined);
    },
  };
}

function call(adapter: CardAdapter, command: CommandRow): Promise<Card> {
  if (command.action === 'freeze') return adapter.freezeCard(command.card_id);
  if (command.action === 'unfreeze') return adapter.unfreezeCard(command.card_id);
  return adapter.applySpendingControls(command.card_id, command.payload as SpendingControls);
}
