// Scheduled jobs run once across every gateway process sharing the database: a transaction-level
// advisory lock keeps two runs from overlapping, and a row per (job, scheduled minute) keeps a
// second process that arrives after the first has finished from running the same tick again.
// A run that throws rolls its row back, so the next tick tries again.
import type { Knex } from 'knex';

export async function runOnce<T>(knex: Knex, job: string, slot: Date, run: () => Promise<T>): Promise<{ ran: true; result: T } | { ran: false; reason: 'running_elsewhere' | 'already_ran' }> {
  const minute = new Date(Math.floor(slot.getTime() / 60_000) * 60_000);
  return knex.transaction(async (trx) => {
    const locked = await trx.raw('select pg_try_advisory_xact_lock(hashtext(?)) as ok', [`spendgate-job:${job}`]);
    if (!locked.rows[0]?.ok) return { ran: false, reason: 'running_elsewhere' } as const;
    const claimed = await trx('job_runs').insert({ job, slot: minute }).onConflict(['job', 'slot']).ignore().returning('job');
    if (claimed.length === 0) return { ran: false, reason: 'already_ran' } as const;
    const result = await run();
    await trx('job_runs').where({ job, slot: minute }).update({ result: JSON.stringify(result ?? null) });
    return { ran: true, result } as const;
  });
}
