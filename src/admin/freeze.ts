// Freeze and unfreeze: one card, every card (`{"all": true}`), an agent's cards, and the kill
// switch (POST /agents/{id}/freeze). The local flip commits first; the answer then waits a
// bounded time for the processor's confirmations and lists each card's outcome — 200 when every
// card is settled, 202 while some are still pending (GET /cards/jobs/{job_id} follows them).
import { Router } from 'express';
import type { Request, Response } from 'express';
import { z } from 'zod';
import type { Knex } from 'knex';
import type { CardAdapter, ProcessorName } from '../../adapters/processor.js';
import { discoverAgentCards } from '../cards/discover.js';
import { freezeAgent, freezeCards, unfreezeAgent, unfreezeCards } from '../cards/freeze.js';
import type { StartedJob } from '../cards/freeze.js';
import { jobReport, waitForJob } from '../cards/job-report.js';
import { requireCard } from '../cards/registry.js';
import { parse } from '../http/validate.js';
import { agentIdField, cardId, processorQuery } from './cards.js';
import { extendDeadline } from '../http/deadline.js';

const reason = z.string().trim().min(1).max(500);
const waitMs = z.number().int().min(0).max(30_000);
const oneSchema = z.strictObject({ reason: reason.optional(), wait_ms: waitMs.optional() });
const manySchema = z
  .strictObject({ all: z.literal(true).optional(), agent_id: agentIdField.optional(), reason: reason.optional(), wait_ms: waitMs.optional() })
  .refine((b) => (b.all === true) !== (b.agent_id !== undefined), 'give either {"all": true} or {"agent_id": …}');
const unfreezeManySchema = z.strictObject({ agent_id: agentIdField, reason: reason.optional(), wait_ms: waitMs.optional() });
const jobQuery = z.strictObject({ cards: z.enum(['true', 'false']).default('true') });
const jobId = z.string().regex(/^cjob_[0-9A-Za-z]{24}$/, 'a job id (cjob_…)');

export interface FreezeDeps {
  knex: Knex;
  processors: Partial<Record<ProcessorName, CardAdapter>>;
  /** Wake this process's queue worker after queuing commands. */
  kick: () => void;
  /** How long a freeze request waits for processor confirmations by default. */
  waitMs: number;
  /** Drop this process's cached keys and policy of an agent (other processes hear the NOTIFY). */
  forgetAgent: (agentId: string) => void;
}

export function freezeRoutes(deps: FreezeDeps): Router {
  const { knex } = deps;
  const router = Router();
  const configured = Object.keys(deps.processors) as ProcessorName[];
  const who = (req: Request) => req.principal?.keyId ?? 'unknown';

  async function answer(res: Response, job: StartedJob, wait: number | undefined, extra: Record<string, unknown> = {}) {
    deps.kick();
    extendDeadline(res, wait ?? deps.waitMs); // the wait asked for is not the database being slow
    const done = await waitForJob(knex, job.jobId, wait ?? deps.waitMs);
    const report = await jobReport(knex, job.jobId, configured);
    res.status(done && report.done ? 200 : 202).json({ ...extra, ...report });
  }

  router.post('/cards/freeze', async (req, res) => {
    const body = parse(manySchema, req.body, 'freeze');
    const job = await freezeCards(knex, body.agent_id ? { agentId: body.agent_id } : { all: true }, { reason: body.reason, requestedBy: who(req) });
    req.log.warn({ job_id: job.jobId, scope: body.agent_id ?? 'all', cards: job.total }, 'cards frozen locally');
    await answer(res, job, body.wait_ms);
  });
  router.post('/cards/unfreeze', async (req, res) => {
    const body = parse(unfreezeManySchema, req.body, 'unfreeze');
    const job = await unfreezeCards(knex, { agentId: body.agent_id }, { reason: body.reason, requestedBy: who(req) });
    req.log.warn({ job_id: job.jobId, agent_id: body.agent_id, cards: job.total }, 'cards unfrozen locally');
    await answer(res, job, body.wait_ms);
  });
  router.get(['/cards/jobs/:job_id', '/cards/freeze/:job_id'], async (req, res) => {
    const { cards } = parse(jobQuery, req.query, 'query');
    res.json(await jobReport(knex, parse(jobId, req.params.job_id, 'job id'), configured, cards === 'true'));
  });
  for (const action of ['freeze', 'unfreeze'] as const) {
    router.post(`/cards/:id/${action}`, async (req, res) => {
      const body = parse(oneSchema, req.body, action);
      const { processor } = parse(processorQuery, req.query, 'query');
      const card = await requireCard(knex, parse(cardId, req.params.id, 'card id'), processor);
      const scope = { card: { processor: card.processor, id: card.id } };
      const job = action === 'freeze' ? await freezeCards(knex, scope, { reason: body.reason, requestedBy: who(req) }) : await unfreezeCards(knex, scope, { reason: body.reason, requestedBy: who(req) });
      req.log.warn({ job_id: job.jobId, processor: card.processor, card_id: card.id }, `card ${action === 'freeze' ? 'frozen' : 'unfrozen'} locally`);
      await answer(res, job, body.wait_ms);
    });
  }

  router.post('/agents/:id/freeze', async (req, res) => {
    const body = parse(oneSchema, req.body, 'agent freeze');
    const agentId = parse(agentIdField, req.params.id, 'agent id');
    const job = await freezeAgent(knex, agentId, { reason: body.reason, requestedBy: who(req) });
    deps.forgetAgent(agentId);
    req.log.warn({ job_id: job.jobId, agent_id: agentId, cards: job.total }, 'agent frozen: its keys are refused and its cards frozen locally');
    // Cards at the processor that name this agent but were never registered join the job.
    for (const adapter of Object.values(deps.processors)) {
      void discoverAgentCards(knex, adapter, agentId, job.jobId)
        .then((n) => (n > 0 ? deps.kick() : undefined))
        .catch((error: unknown) => req.log.warn({ agent_id: agentId, processor: adapter.name, error: (error as Error).message }, 'discovering the agent\'s cards at the processor failed; the reconciliation job will find them'));
    }
    const agent = await knex('agents').where({ id: agentId }).first('id', 'status', 'frozen_at', 'frozen_reason');
    await answer(res, job, body.wait_ms, { agent: presentAgentState(agent) });
  });
  router.post('/agents/:id/unfreeze', async (req, res) => {
    parse(z.strictObject({}), req.body, 'agent unfreeze');
    const agentId = parse(agentIdField, req.params.id, 'agent id');
    const { frozenCards } = await unfreezeAgent(knex, agentId);
    deps.forgetAgent(agentId);
    req.log.warn({ agent_id: agentId, frozen_cards: frozenCards }, 'agent unfrozen: its keys work again; its cards stay frozen');
    const agent = await knex('agents').where({ id: agentId }).first('id', 'status', 'frozen_at', 'frozen_reason');
    res.json({ agent: presentAgentState(agent), frozen_cards: frozenCards, message: frozenCards > 0 ? `${frozenCards} card(s) stay frozen: unfreeze them explicitly (POST /admin/v1/cards/unfreeze {"agent_id": "${agentId}"})` : 'no frozen cards' });
  });
  return router;
}

function presentAgentState(agent: { id: string; status: string; frozen_at: Date | null; frozen_reason: string | null }) {
  return { id: agent.id, status: agent.status, frozen_at: agent.frozen_at?.toISOString() ?? null, frozen_reason: agent.frozen_reason };
}
