// Where a freeze/unfreeze job stands: each card's outcome (confirmed by the processor, still
// pending and why, failed, or superseded by a newer request), and a bounded wait for the
// processor's confirmations so a request for a few cards answers with them, and one for many
// answers in time and keeps working in the background.
import type { Knex } from 'knex';
import type { ProcessorName } from '../../adapters/processor.js';
import { AppError } from '../errors.js';

export type Outcome = 'confirmed' | 'pending' | 'failed' | 'superseded';

export interface CardOutcome {
  processor: string;
  card_id: string;
  agent_id: string | null;
  status: string | null;
  outcome: Outcome;
  processor_status: string | null;
  processor_checked_at: string | null;
  attempts: number;
  reason: string | null;
}

export interface JobReport {
  job_id: string;
  action: 'freeze' | 'unfreeze';
  scope: Record<string, unknown>;
  created_at: string;
  done: boolean;
  counts: Record<Outcome, number> & { total: number };
  cards: CardOutcome[];
}

export async function pendingCount(knex: Knex, jobId: string): Promise<number> {
  const [row] = await knex('card_commands').where({ job_id: jobId, status: 'pending' }).count({ n: '*' });
  return Number(row?.n ?? 0);
}

/** Waits until nothing of the job is pending or `ms` have passed; true when done. */
export async function waitForJob(knex: Knex, jobId: string, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  let pause = 10;
  for (;;) {
    if ((await pendingCount(knex, jobId)) === 0) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, Math.min(pause, Math.max(1, deadline - Date.now()))));
    pause = Math.min(pause * 2, 100);
  }
}

/** `configured`: processors this gateway can call, to explain a command nobody here can send. */
export async function jobReport(knex: Knex, jobId: string, configured: ProcessorName[], withCards = true): Promise<JobReport> {
  const job = await knex('card_jobs').where({ id: jobId }).first();
  if (!job) throw new AppError('not_found', `No freeze job "${jobId}"`);
  const counted = await knex('card_commands').where({ job_id: jobId }).select('status').count({ n: '*' }).groupBy('status');
  const counts = { total: 0, confirmed: 0, pending: 0, failed: 0, superseded: 0 };
  for (const row of counted as { status: Outcome; n: string }[]) {
    counts[row.status] = Number(row.n);
    counts.total += Number(row.n);
  }
  const rows = withCards
    ? await knex('card_commands as c')
        .leftJoin('cards as k', function join() {
          this.on('k.processor', 'c.processor').andOn('k.id', 'c.card_id');
        })
        .where('c.job_id', jobId)
        .orderBy('c.id')
        .select('c.processor', 'c.card_id', 'c.status as outcome', 'c.attempts', 'c.last_error', 'k.agent_id', 'k.status', 'k.processor_status', 'k.processor_checked_at')
    : [];
  return {
    job_id: job.id,
    action: job.action,
    scope: job.scope,
    created_at: job.created_at.toISOString(),
    done: counts.pending === 0,
    counts,
    cards: rows.map((r) => ({
      processor: r.processor,
      card_id: r.card_id,
      agent_id: r.agent_id ?? null,
      status: r.status ?? null,
      outcome: r.outcome,
      processor_status: r.processor_status ?? null,
      processor_checked_at: r.processor_checked_at ? r.processor_checked_at.toISOString() : null,
      attempts: r.attempts,
      reason: reason(r.outcome, r.last_error, r.attempts, configured.includes(r.processor)),
    })),
  };
}

function reason(outcome: Outcome, lastError: string | null, attempts: number, configured: boolean): string | null {
  if (outcome === 'confirmed') return null;
  if (outcome === 'superseded') return 'a newer freeze or unfreeze of this card replaced this one';
  if (outcome === 'failed') return lastError ?? 'the processor refused';
  if (!configured && attempts === 0) return 'this gateway has no credentials for this processor; another gateway process with them will send it';
  if (lastError) return `retrying after: ${lastError}`;
  return attempts === 0 ? 'queued' : 'sent, waiting for the processor';
}
