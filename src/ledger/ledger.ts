// The ledger: the only code that moves budget counters. A decision that may spend money is taken
// while its agent's PostgreSQL advisory lock is held, so concurrent requests in one or many
// gateway processes can never together pass a limit. Requests are coalesced: while a transaction
// runs, new ones queue, then go through together in one transaction and one durable commit
// (group commit) — several agents per batch, one batch per agent at a time.
import { performance } from 'node:perf_hooks';
import type { Knex } from 'knex';
import { isDatabaseUnavailable } from '../errors.js';
import { newId } from '../ids.js';
import { decide } from '../policy/decide.js';
import type { Decision } from '../policy/decide.js';
import type { Action, CompiledPolicy } from '../policy/model.js';
import { duplicateLookbackSeconds, usageSpecs } from '../policy/usage.js';
import type { ReservationFacts, UsageSpec } from '../policy/usage.js';
import { lockAgents, loadStates, recordBatch } from './store.js';
import type { CheckRow } from './store.js';
import { AgentState, contribution } from './state.js';
import type { ReservationStatus } from './state.js';

export interface CheckInput {
  agentId: string;
  timezone: string;
  policy: CompiledPolicy;
  action: Action;
  /** The same key always gets the same decision and counts once. */
  idempotencyKey: string;
  /** Fingerprint of the request: the same key with other parameters is refused. */
  requestHash: string;
  metadata: Record<string, unknown>;
  now: Date;
  /** Decide without recording or reserving anything. */
  simulate: boolean;
  /** performance.now() when the request arrived; recorded latency counts from here. */
  startedAt?: number;
  /** Where the decision came from: 'check' (default), 'stripe' (the mirror), … */
  source?: string;
}

export interface CheckResult {
  checkId: string;
  decision: Decision;
  createdAt: Date;
  latencyMs: number;
  replayed: boolean;
  reserved: boolean;
}

export class IdempotencyConflict extends Error {
  constructor(readonly key: string) {
    super(`Keys for idempotent requests can only be used with the same parameters they were first used with (key "${key}")`);
  }
}

interface Job {
  input: CheckInput;
  startedAt: number;
  resolve(result: CheckResult): void;
  reject(error: unknown): void;
}

export interface Ledger {
  check(input: CheckInput): Promise<CheckResult>;
  settle(agentId: string, idempotencyKey: string, status: Exclude<ReservationStatus, 'reserved'>, options?: { amount?: number; reference?: string }): Promise<ReservationStatus>;
}

export interface LedgerOptions {
  /** Most checks in one transaction. */
  maxBatch?: number;
  /** Transactions in flight at once (each holds one pooled connection). */
  maxConcurrentBatches?: number;
}

export function createLedger(knex: Knex, options: LedgerOptions = {}): Ledger {
  const maxBatch = options.maxBatch ?? 256;
  const maxConcurrent = options.maxConcurrentBatches ?? 4;
  let pending: Job[] = [];
  const busy = new Set<string>();
  let inFlight = 0;

  function check(input: CheckInput): Promise<CheckResult> {
    return new Promise((resolve, reject) => {
      pending.push({ input, startedAt: input.startedAt ?? performance.now(), resolve, reject });
      pump();
    });
  }

  function pump(): void {
    while (inFlight < maxConcurrent && pending.length > 0) {
      const batch = takeBatch();
      if (batch.length === 0) return;
      inFlight++;
      runBatch(batch)
        .catch(async (error: unknown) => {
          if (batch.length === 1 || isDatabaseUnavailable(error)) {
            for (const job of batch) job.reject(error);
            return;
          }
          // One request the database refuses must not fail the others: retry them one by one.
          for (const job of batch) await runBatch([job]).catch((e: unknown) => job.reject(e));
        })
        .finally(() => {
          inFlight--;
          for (const job of batch) busy.delete(job.input.agentId);
          pump();
        });
    }
  }

  /** Oldest first, skipping agents whose batch is still in flight; all of a taken agent's jobs go. */
  function takeBatch(): Job[] {
    const batch: Job[] = [];
    const rest: Job[] = [];
    const taken = new Set<string>();
    for (const job of pending) {
      const agent = job.input.agentId;
      if (batch.length < maxBatch && (taken.has(agent) || !busy.has(agent))) {
        taken.add(agent);
        busy.add(agent);
        batch.push(job);
      } else {
        rest.push(job);
      }
    }
    pending = rest;
    return batch;
  }

  async function runBatch(batch: Job[]): Promise<void> {
    const outcomes = await knex.transaction(async (trx) => {
      const agents = [...new Set(batch.map((j) => j.input.agentId))];
      await lockAgents(trx, agents);
      const specs: { agentId: string; spec: UsageSpec }[] = [];
      const lookbacks = new Map<string, Date>();
      for (const { input } of batch) {
        for (const spec of usageSpecs(input.policy, input.action, input.now, input.timezone)) specs.push({ agentId: input.agentId, spec });
        const lookback = duplicateLookbackSeconds(input.policy);
        if (lookback > 0) {
          const since = new Date(input.now.getTime() - lookback * 1000);
          const known = lookbacks.get(input.agentId);
          if (!known || since < known) lookbacks.set(input.agentId, since);
        }
      }
      const times = batch.map((j) => j.input.now.getTime());
      const keys = batch.filter((j) => !j.input.simulate).map((j) => [j.input.agentId, j.input.idempotencyKey] as [string, string]);
      const { states, previous } = await loadStates(trx, agents, specs, [new Date(Math.min(...times)), new Date(Math.max(...times))], keys, lookbacks);
      const rows: CheckRow[] = [];
      const decided = new Map<string, CheckRow>();
      const results = batch.map((job): CheckResult | Error => {
        const { input } = job;
        const state = states.get(input.agentId) ?? new AgentState(input.agentId);
        const idemKey = `${input.agentId}\u0000${input.idempotencyKey}`;
        const before = input.simulate ? undefined : (previous.get(idemKey) ?? decided.get(idemKey));
        if (before) {
          if (before.requestHash !== input.requestHash) return new IdempotencyConflict(input.idempotencyKey);
          return { checkId: before.checkId, decision: before.decision, createdAt: before.createdAt, latencyMs: before.latencyMs, replayed: true, reserved: before.decision.decision === 'allow' };
        }
        const decision = decide(input.policy, input.action, { now: input.now, timezone: input.timezone, usage: state.usage(), recent: state.recent });
        const latencyMs = Math.max(0, Math.round(performance.now() - job.startedAt));
        const result: CheckResult = { checkId: newId('chk'), decision, createdAt: input.now, latencyMs, replayed: false, reserved: false };
        if (input.simulate) return result;
        const row: CheckRow = { ...result, agentId: input.agentId, action: input.action, metadata: input.metadata, idempotencyKey: input.idempotencyKey, requestHash: input.requestHash, reserved: decision.decision === 'allow', source: input.source ?? 'check' };
        rows.push(row);
        decided.set(idemKey, row);
        if (decision.decision === 'allow') {
          const facts: ReservationFacts = { actionType: input.action.actionType, amount: input.action.amount, currency: input.action.currency, counterparty: input.action.counterparty ?? '', occurredAt: input.now };
          state.apply(facts, contribution('reserved', facts.amount));
          state.recent.unshift(facts);
          result.reserved = true;
        }
        return result;
      });
      await recordBatch(trx, rows, [...states.values()].flatMap((s) => s.dirtyCounters()));
      return results;
    });
    batch.forEach((job, i) => {
      const outcome = outcomes[i];
      if (outcome instanceof Error || outcome === undefined) job.reject(outcome ?? new Error('no outcome'));
      else job.resolve(outcome);
    });
  }

  async function settle(agentId: string, idempotencyKey: string, status: Exclude<ReservationStatus, 'reserved'>, opts: { amount?: number; reference?: string } = {}): Promise<ReservationStatus> {
    return knex.transaction(async (trx) => {
      await lockAgents(trx, [agentId]);
      const row = await trx('decisions').where({ agent_id: agentId, idempotency_key: idempotencyKey }).whereNotNull('status').first();
      if (!row) throw new Error(`no reservation for agent ${agentId} with key ${idempotencyKey}`);
      const current = row.status as ReservationStatus;
      // Committed is final. Released is final too, except that money Stripe reports as moved after
      // all (a replay after the first answer was a refusal) is counted: the truth beats the limit.
      if (current === 'committed' || (current === 'released' && status !== 'committed')) return current;
      const amount = opts.amount ?? (row.counted_amount as number);
      const facts: ReservationFacts = { actionType: row.action_type, amount, currency: row.currency, counterparty: row.counterparty, occurredAt: row.created_at };
      const { states } = await loadStates(trx, [agentId], [], [row.created_at, row.created_at], [], new Map());
      const state = states.get(agentId) ?? new AgentState(agentId);
      const before = contribution(current, row.counted_amount as number);
      const after = contribution(status, amount);
      state.apply(facts, { reserved: after.reserved - before.reserved, spent: after.spent - before.spent, count: after.count - before.count });
      await trx('decisions').where({ id: row.id }).update({ status, counted_amount: amount, reference: opts.reference ?? row.reference, updated_at: new Date() });
      await recordBatch(trx, [], state.dirtyCounters());
      return status;
    });
  }

  return { check, settle };
}
