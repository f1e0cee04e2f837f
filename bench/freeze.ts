// Freeze-all at scale: 10,000 registered Stripe cards, one `POST /admin/v1/cards/freeze
// {"all": true}`. Figures: the time until every card is frozen locally (the answer: one
// transaction, committed before it), and the time until the fake Stripe (its own process, a fixed
// latency per call) has confirmed every card through the queue, at a given concurrency.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Knex } from 'knex';
import { loadConfig } from '../src/config.js';
import { freePort } from '../src/db/embedded.js';
import { freezeCards } from '../src/cards/freeze.js';
import { startGateway } from '../src/gateway.js';
import { createLogger } from '../src/http/logging.js';

const here = path.dirname(new URL(import.meta.url).pathname);
const ADMIN = 'bench-freeze-admin-token-000';
const KEY = 'sk_test_benchfreeze';

export interface FreezeFigures {
  cards: number;
  concurrency: number;
  latencyMs: number;
  answerMs: number;
  /** The freeze transaction alone (freezeCards), measured again after the run. */
  transactionMs: number;
  frozenAtAnswer: number;
  confirmedMs: number;
  confirmed: number;
  callsPerSecond: number;
}

/**
 * The fake keeps a bounded number of objects, events included (one per create and per update), and
 * drops the oldest first: sized for `cards` cards and four events each, or a card not yet frozen
 * could be dropped and its freeze answered 404 (one in 10,000 was, in some runs).
 */
async function startFake(latencyMs: number, cards: number) {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, '..', 'test', 'helpers', 'fake-stripe.ts'), '--port', String(port), '--latency-ms', String(latencyMs), '--max-stored', String(cards * 5)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => createInterface({ input: child.stdout }).once('line', () => resolve()));
  return { url: `http://127.0.0.1:${port}`, stop: () => new Promise((r) => { child.once('exit', r); child.kill('SIGTERM'); }) };
}

/** Cards at the fake Stripe (made over HTTP, as Stripe would have them) and in the registry. */
async function makeCards(knex: Knex, stripeUrl: string, agentId: string, count: number): Promise<void> {
  const ids: string[] = [];
  const make = async () => {
    while (ids.length < count) {
      ids.push('');
      const res = await fetch(`${stripeUrl}/v1/issuing/cards`, { method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/x-www-form-urlencoded' }, body: `currency=usd&type=virtual&status=active&metadata[agent_id]=${agentId}` });
      ids[ids.indexOf('')] = ((await res.json()) as { id: string }).id;
    }
  };
  await Promise.all(Array.from({ length: 32 }, make));
  for (let i = 0; i < ids.length; i += 1000) {
    await knex('cards').insert(ids.slice(i, i + 1000).map((id) => ({ processor: 'stripe', id, agent_id: agentId, source: 'registered', status: 'active', processor_status: 'active' })));
  }
}

export async function benchFreeze(databaseUrl: string, knex: Knex, cards: number, runs: { concurrency: number; latencyMs: number }[]): Promise<FreezeFigures[]> {
  const figures: FreezeFigures[] = [];
  for (const { concurrency, latencyMs } of runs) {
    const fake = await startFake(latencyMs, cards);
    const agentId = `bench-freeze-${Date.now()}`;
    await knex('agents').insert({ id: agentId, owner: 'bench@example.com' });
    await makeCards(knex, fake.url, agentId, cards);
    const config = loadConfig({ DATABASE_URL: databaseUrl, PORT: '0', ADMIN_PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'error', SPEND_ADMIN_TOKEN: ADMIN, STRIPE_SECRET_KEY: KEY, STRIPE_API_BASE: fake.url, FREEZE_CONCURRENCY: String(concurrency), RECONCILE_CRON: 'off' });
    const gateway = await startGateway(config, createLogger(config.LOG_LEVEL));
    try {
      const started = performance.now();
      const res = await fetch(`http://127.0.0.1:${gateway.adminPort}/admin/v1/cards/freeze`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify({ agent_id: agentId, wait_ms: 0 }) });
      const answerMs = performance.now() - started;
      const report = (await res.json()) as { job_id: string };
      const [frozen] = await knex('cards').where({ agent_id: agentId, status: 'frozen' }).count({ n: '*' });
      for (;;) {
        const [pending] = await knex('card_commands').where({ job_id: report.job_id, status: 'pending' }).count({ n: '*' });
        if (Number(pending?.n) === 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const confirmedMs = performance.now() - started;
      const [confirmed] = await knex('card_commands').where({ job_id: report.job_id, status: 'confirmed' }).count({ n: '*' });
      // The transaction alone, without HTTP and the 10,000-card answer: unfreeze locally, freeze again.
      await knex('cards').where({ agent_id: agentId }).update({ status: 'active', frozen_at: null, frozen_reason: null });
      const txStarted = performance.now();
      const again = await freezeCards(knex, { agentId });
      const transactionMs = performance.now() - txStarted;
      await knex('card_commands').where({ job_id: again.jobId }).del();
      figures.push({ cards, concurrency, latencyMs, answerMs: Math.round(answerMs), transactionMs: Math.round(transactionMs), frozenAtAnswer: Number(frozen?.n), confirmedMs: Math.round(confirmedMs), confirmed: Number(confirmed?.n), callsPerSecond: Math.round(Number(confirmed?.n) / (confirmedMs / 1000)) });
    } finally {
      await gateway.stop();
      await fake.stop();
    }
  }
  return figures;
}
