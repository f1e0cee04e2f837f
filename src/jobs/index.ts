// The scheduled jobs: a table of {name, schedule, run}, each `run(deps, now)` in its own file,
// started with node-cron in every gateway process and run once per tick across all of them
// (./run-once.ts). A schedule of "off" disables a job.
import cron from 'node-cron';
import type { ScheduledTask } from 'node-cron';
import type { Knex } from 'knex';
import type { Logger } from 'pino';
import type { CardAdapter, ProcessorName } from '../../adapters/processor.js';
import type { Ledger } from '../ledger/ledger.js';
import type { ListEvents } from '../mirror/stripe-lookup.js';
import * as reconcileCards from './reconcile-cards.js';
import * as reconcileMirror from './reconcile-mirror.js';
import { runOnce } from './run-once.js';

export interface JobDeps {
  knex: Knex;
  logger: Logger;
  processors: Partial<Record<ProcessorName, CardAdapter>>;
  /** Wake this process's card-queue worker after queuing commands. */
  kick: () => void;
  /** For reconciling the mirror's calls: their settlements, and the events of each mode's Stripe account (undefined without its key). */
  ledger?: Ledger;
  stripeEvents?: (mode: 'test' | 'live') => ListEvents | undefined;
}

export interface Job {
  name: string;
  run(deps: JobDeps, now: Date): Promise<unknown>;
}

export const JOBS: Job[] = [
  { name: reconcileCards.name, run: reconcileCards.run },
  { name: reconcileMirror.name, run: reconcileMirror.run },
];

/** One tick of `job`, unless another process runs or ran it for this minute. */
export async function tick(deps: JobDeps, job: Job, now: Date) {
  const outcome = await runOnce(deps.knex, job.name, now, () => job.run(deps, now));
  if (outcome.ran) deps.logger.info({ job: job.name, result: outcome.result }, 'scheduled job ran');
  else deps.logger.debug({ job: job.name, reason: outcome.reason }, 'scheduled job skipped here');
  return outcome;
}

export function startJobs(deps: JobDeps, schedules: Record<string, string>): { stop(): Promise<void> } {
  const tasks: ScheduledTask[] = [];
  const running = new Set<Promise<unknown>>();
  for (const job of JOBS) {
    const schedule = schedules[job.name];
    if (!schedule || schedule === 'off') continue;
    const task = cron.schedule(
      schedule,
      (context) => {
        const run = tick(deps, job, context.date)
          .catch((error: unknown) => deps.logger.error({ err: error, job: job.name }, 'scheduled job failed; the next tick tries again'))
          .finally(() => running.delete(run));
        running.add(run);
        return run;
      },
      { name: `spendgate-${job.name}`, noOverlap: true },
    );
    tasks.push(task);
  }
  return {
    async stop() {
      for (const task of tasks) await task.destroy();
      await Promise.all(running);
    },
  };
}
