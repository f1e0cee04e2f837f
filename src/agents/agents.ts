// Agents: who may spend, under which policy, in which time zone.
import type { Knex } from 'knex';
import { publishInvalidation } from '../db/invalidation.js';
import { AppError } from '../errors.js';

export interface AgentRecord {
  id: string;
  owner: string;
  timezone: string;
  policy_id: string | null;
  status: 'active' | 'frozen';
  created_at: Date;
  updated_at: Date;
}

export async function getAgent(knex: Knex, id: string): Promise<AgentRecord | undefined> {
  return knex('agents').where({ id }).first();
}

export async function requireAgent(knex: Knex, id: string): Promise<AgentRecord> {
  const agent = await getAgent(knex, id);
  if (!agent) throw new AppError('not_found', `No agent "${id}"`);
  return agent;
}

export async function listAgents(knex: Knex): Promise<AgentRecord[]> {
  return knex('agents').orderBy('id');
}

async function requirePolicy(knex: Knex, policyId: string): Promise<void> {
  if (!(await knex('policies').where({ id: policyId }).first())) throw new AppError('invalid_request', `No policy "${policyId}"`, [{ field: 'policy_id', message: 'unknown policy' }]);
}

export async function createAgent(knex: Knex, input: { id: string; owner: string; timezone?: string; policy_id?: string }): Promise<AgentRecord> {
  if (input.policy_id) await requirePolicy(knex, input.policy_id);
  const [row] = await knex('agents')
    .insert({ id: input.id, owner: input.owner, timezone: input.timezone ?? 'UTC', policy_id: input.policy_id ?? null })
    .onConflict('id')
    .ignore()
    .returning('*');
  if (!row) throw new AppError('conflict', `Agent "${input.id}" already exists`);
  return row;
}

export async function updateAgent(knex: Knex, id: string, patch: { owner?: string; timezone?: string; policy_id?: string | null }): Promise<AgentRecord> {
  if (patch.policy_id) await requirePolicy(knex, patch.policy_id);
  const [row] = await knex('agents').where({ id }).update({ ...patch, updated_at: knex.fn.now() }).returning('*');
  if (!row) throw new AppError('not_found', `No agent "${id}"`);
  await publishInvalidation(knex, `agent:${id}`);
  return row;
}

/** Applying a SPEND.md creates its agent or updates owner, time zone and bound policy. */
export async function upsertAgent(knex: Knex, input: { id: string; owner: string; timezone?: string; policy_id: string }): Promise<AgentRecord> {
  const [row] = await knex('agents')
    .insert({ id: input.id, owner: input.owner, timezone: input.timezone ?? 'UTC', policy_id: input.policy_id })
    .onConflict('id')
    // The file is the agent's source of truth: no timezone in it means UTC again.
    .merge({ owner: input.owner, policy_id: input.policy_id, timezone: input.timezone ?? 'UTC', updated_at: knex.fn.now() })
    .returning('*');
  await publishInvalidation(knex, `agent:${input.id}`);
  return row;
}
