// The ledger: the only code that moves budget counters. A decision that may spend money is taken
// while its agent's PostgreSQL advisory lock is held, so concurrent requests in one or many
// gateway processes can never together pass a limit. Requests are coalesced: while a transaction
// runs, new ones queue, then go through together in one transaction and one durable commit
// (group commit) — several agents per batch, one batch per agent at a time. A settlement whose
// caller does not wait for it (the mirror's, once the agent has Stripe's answer) waits a few
// milliseconds for the agent's next check and goes in that check's write.
import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Knex } from 'knex';
import { isDatabaseUnavailable } from '../errors.js';
import { newId } from '../ids.js';
import { decide } from '../policy/decide.js';
import type { Decision } from '../policy/decide.js';
import { blockedBy } from './guards.js';
import type { Guards } from './guards.js';
import type { Action, CompiledPolicy } from '../policy/model.js';
import { duplicateLookbackSeconds, usageKey, usageSpecs } from '../policy/usage.js';
import type { ReservationFacts, UsageSpec } from '../policy/usage.js';
import { applyAuthorization, loadAuthorizations, settledAction } from './authorizations.js';
import type { AuthorizationSettlement, AuthorizationSettlementInput, LoadedAuthorization } from './authorizations.js';
import { CounterCache } from './cache.js';
import type { KnownCounters } from './cache.js';
import { countersFromJson, loadGuards, loadReservations, loadStates, recordBatch, recordIfUnchanged } from './store.js';
import type { KnownSettlement, Unchanged } from './store.js';
import { inTransaction, prepared, sendBeforeCommit } from './transaction.js';
import type { CheckRow, PreviousCheck, ReservationUpdate, StoredReservation } from './store.js';
import { AgentState, contribution } from './state.js';
import { countedBefore, raisesCounts } from './durability.js';
import { PARTIAL_REASONS, largestAllowed } from './partial.js';
import type { Counter, ReservationStatus } from './state.js';

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
  /** The processor object this reservation is for (an authorization id), stored with it. */
  reference?: string;
  /** A card authorization: a card frozen in the registry is declined inside the transaction. */
  card?: { processor: string; id: string };
  /** performance.now() after which the request must not start: its answer has already left. */
  deadline?: number;
  /** An escalation opens an approval request in the same transaction. */
  openApproval?: Record<string, unknown>;
  /** If an amount limit blocks, approve the largest smaller amount the policy allows. */
  allowPartial?: boolean;
}

export interface CheckResult {
  checkId: string;
  decision: Decision;
  createdAt: Date;
  latencyMs: number;
  replayed: boolean;
  reserved: boolean;
  /** Where the reservation stands now (a replay may find it settled or released). */
  status: ReservationStatus | null;
  /** Set when less than asked was approved (allowPartial). */
  partialAmount?: number;
  /** A reservation this call made (not a replay's): settle() given it needs no read. */
  reservation?: KnownReservation;
}

/** A reservation as its check left it: still `reserved`, counting `amount`. */
export interface KnownReservation {
  id: string;
  amount: number;
  /** What it counts for (the counters it falls in): lets its settlement ride with the agent's next check. */
  facts?: ReservationFacts;
}

/** The request's answer deadline passed before it could start: nothing was recorded. */
export class DeadlineExceeded extends Error {
  constructor() {
    super('the answer deadline passed before the decision could start');
  }
}

export class IdempotencyConflict extends Error {
  constructor(readonly key: string) {
    super(`Keys for idempotent requests can only be used with the same parameters they were first used with (key "${key}")`);
  }
}

interface CheckJob {
  kind: 'check';
  agentId: string;
  input: CheckInput;
  startedAt: number;
  resolve(result: CheckResult): void;
  reject(error: unknown): void;
}

interface SettleJob {
  kind: 'settle';
  agentId: string;
  idempotencyKey: string;
  status: Exclude<ReservationStatus, 'reserved'>;
  amount?: number;
  reference?: string;
  known?: KnownReservation;
  /** SettleOptions.revise. */
  revise?: boolean;
  /** performance.now() until which it waits for a check of its agent to ride with (SettleOptions.defer). */
  deferUntil?: number;
  resolve(status: ReservationStatus): void;
  reject(error: unknown): void;
}

interface AuthorizationJob {
  kind: 'authorization';
  agentId: string;
  input: AuthorizationSettlementInput;
  resolve(result: AuthorizationSettlement): void;
  reject(error: unknown): void;
}

type Job = CheckJob | SettleJob | AuthorizationJob;

export interface Ledger {
  check(input: CheckInput): Promise<CheckResult>;
  /**
   * Commit, release or mark unknown the reservation under this key. Given the reservation as
   * the check returned it, the settlement is one round trip (one statement behind BEGIN) while it
   * is still as the check left it, and takes the general path otherwise.
   */
  settle(agentId: string, idempotencyKey: string, status: Exclude<ReservationStatus, 'reserved'>, options?: SettleOptions): Promise<ReservationStatus>;
  /** What a processor says about a card authorization: its reservations follow the truth. */
  settleAuthorization(input: AuthorizationSettlementInput): Promise<AuthorizationSettlement>;
  /**
   * Start every deferred settlement (of one agent, or all) now, and wait until every settlement
   * asked for so far is done: before reading what they write, and before shutting down.
   */
  flush(agentId?: string): Promise<void>;
}

export interface SettleOptions {
  amount?: number;
  reference?: string;
  reservation?: KnownReservation;
  /**
   * The caller does not wait for it (its answer has left): it may wait up to `settleDeferMs` for
   * the agent's next check, and go in that check's transaction instead of one of its own.
   */
  defer?: boolean;
  /**
   * What moved is now known better than when it was committed: a payment authorized for a later
   * capture was captured for less (`committed` at the captured amount) or canceled (`released`).
   * Applies to a committed reservation too (a released one stays released); given twice, the
   * second changes nothing.
   */
  revise?: boolean;
}

export interface LedgerOptions {
  /** Most checks in one transaction. */
  maxBatch?: number;
  /**
   * Transactions in flight at once (each holds one pooled connection). Default: one per core, at
   * least 2. Only one starts right away: the others start behind it once it has been in flight
   * `overlapAfterMs`, or when more checks wait than one batch takes (see pump()).
   */
  maxConcurrentBatches?: number;
  /** How long a batch runs alone before the next may start beside it (default 10 ms). */
  overlapAfterMs?: number;
  /** How long a deferred settlement waits for its agent's next check (default 10 ms). */
  settleDeferMs?: number;
}

export function createLedger(knex: Knex, options: LedgerOptions = {}): Ledger {
  const maxBatch = options.maxBatch ?? 256;
  const maxConcurrent = options.maxConcurrentBatches ?? Math.max(2, availableParallelism());
  const overlapAfterMs = options.overlapAfterMs ?? 10;
  const settleDeferMs = options.settleDeferMs ?? 10;
  let pending: Job[] = [];
  /** Settlements not yet done, by agent (flush() waits for them). */
  const unsettled = new Set<{ agentId: string; done: Promise<unknown> }>();
  /** Deferred settlements that may go alone, queued checks whose answer has left: pump() then. */
  const wake = wakeUp(() => pump());
  const busy = new Set<string>();
  const counterCache = new CounterCache();
  /** The batches in flight, oldest first, with when each started (performance.now()). */
  const inFlight = new Set<{ started: number }>();
  let overlapTimer: NodeJS.Timeout | undefined;

  function check(input: CheckInput): Promise<CheckResult> {
    return new Promise((resolve, reject) => {
      pending.push({ kind: 'check', agentId: input.agentId, input, startedAt: input.startedAt ?? performance.now(), resolve, reject });
      pump();
    });
  }

  /**
   * Start batches. A batch starts at once when none is in flight; otherwise the checks wait for the
   * one in flight and go together in the next. Each transaction costs PostgreSQL and this process
   * about as much as a dozen decisions, so under load fewer, larger batches decide more per second:
   * measured on 2 cores over 64 agents, one batch in flight made batches twice as large, with a
   * quarter to a third less PostgreSQL CPU per decision, than two at once. A
   * second batch still starts beside a slow one (a lock held by another process, a slow disk) once
   * that has run `overlapAfterMs`, and whenever more checks wait than one batch takes.
   */
  function pump(): void {
    dropLate();
    startBatches();
    armDeferTimer();
    armLateTimer();
  }

  /**
   * Reject queued checks whose answer has left, whether or not a batch can start: while every
   * batch hangs on a frozen database they would otherwise wait in memory until it thaws.
   */
  function dropLate(): void {
    const now = performance.now();
    // The queue is in arrival order: when its oldest check is not late, (nearly) none is.
    if ((oldestDeadline() ?? Infinity) < now) pending = pending.filter((job) => !rejectedLate(job, now));
  }

  /** The answer deadline of the oldest queued job, if it is a check that has one. */
  function oldestDeadline(): number | undefined {
    const oldest = pending[0];
    return oldest?.kind === 'check' ? oldest.input.deadline : undefined;
  }

  function startBatches(): void {
    while (inFlight.size < maxConcurrent && pending.length > 0) {
      if (inFlight.size > 0 && pending.length < maxBatch) {
        const [oldest] = inFlight;
        const waited = performance.now() - (oldest?.started ?? 0);
        if (waited < overlapAfterMs) {
          overlapTimer ??= setTimeout(() => {
            overlapTimer = undefined;
            pump();
          }, overlapAfterMs - waited).unref();
          return;
        }
      }
      const batch = takeBatch();
      if (batch.length === 0) return;
      for (const part of settlementsApart(batch)) launch(part);
    }
  }

  function launch(batch: Job[]): void {
    const running = { started: performance.now() };
    inFlight.add(running);
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
        inFlight.delete(running);
        for (const job of batch) busy.delete(job.agentId);
        pump();
      });
  }

  /**
   * Agents with nothing in the batch but settlements of reservations this process made go in a
   * transaction of their own beside it (one statement, no read): with a check of another agent
   * they would take the batch off the known-counters path. An agent's jobs are never split.
   */
  function settlementsApart(batch: Job[]): Job[][] {
    if (!batch.some((j) => j.kind === 'check')) return [batch];
    const others = new Set(batch.filter((j) => j.kind !== 'settle' || !j.known).map((j) => j.agentId));
    const apart = batch.filter((j): j is SettleJob => !others.has(j.agentId));
    if (apart.length === 0 || new Set(apart.map((j) => j.known?.id)).size !== apart.length) return [batch];
    return [apart, batch.filter((j) => others.has(j.agentId))];
  }

  /**
   * Oldest first, skipping agents whose batch is still in flight and agents with nothing but
   * deferred settlements still waiting; all of a taken agent's jobs go.
   */
  function takeBatch(): Job[] {
    const batch: Job[] = [];
    const rest: Job[] = [];
    const taken = new Set<string>();
    const now = performance.now();
    const ready = new Set(pending.filter((job) => !waiting(job, now)).map((job) => job.agentId));
    for (const job of pending) {
      if (rejectedLate(job, now)) continue;
      const agent = job.agentId;
      if (batch.length < maxBatch && ready.has(agent) && (taken.has(agent) || !busy.has(agent))) {
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

  /** A deferred settlement still waiting for a check of its agent. */
  function waiting(job: Job, now: number): boolean {
    return job.kind === 'settle' && job.deferUntil !== undefined && now < job.deferUntil;
  }

  /** Wake up when the oldest queued check's answer leaves, to drop it if it is still queued then. */
  function armLateTimer(): void {
    const due = oldestDeadline();
    if (due !== undefined) wake.at(due + 1);
  }

  /** Wake up when the first waiting settlement may go alone. */
  function armDeferTimer(): void {
    const now = performance.now();
    let due = Infinity;
    for (const job of pending) if (waiting(job, now)) due = Math.min(due, (job as SettleJob).deferUntil as number);
    if (due !== Infinity) wake.at(due); // stop() flushes; a crash leaves them counted as reserved
  }

  /**
   * One transaction for a batch: lock its agents, load what they need, then take checks and
   * settlements in queue order against in-memory counters, and write everything at once.
   */
  async function runBatch(batch: Job[]): Promise<void> {
    if (batch.every((j) => j.kind === 'settle' && j.known) && new Set(batch.map((j) => (j as SettleJob).known?.id)).size === batch.length) {
      return settleKnown(batch as SettleJob[]);
    }
    if (await decideFromKnownCounters(batch)) return;
    // That attempt took a round trip: a request whose answer has left meanwhile must not start.
    batch = unlessLate(batch);
    if (batch.length === 0) return;
    const checks = batch.filter((j): j is CheckJob => j.kind === 'check');
    const settles = batch.filter((j): j is SettleJob => j.kind === 'settle');
    const syncs = batch.filter((j): j is AuthorizationJob => j.kind === 'authorization');
    const agents = [...new Set(batch.map((j) => j.agentId))];
    // What the batch read and left, to decide the agents' next batches from (see CounterCache).
    let seen: { states: Map<string, AgentState>; range: [Date, Date] | undefined } | undefined;
    counterCache.drop(agents);
    const outcomes = await inTransaction(knex, agents, async (trx) => {
      // Sent now, awaited after loadStates: the reads of a batch of checks share one round trip.
      const guarding = checks.length > 0 ? loadGuards(trx, agents, checks.flatMap((j) => (j.input.card ? [j.input.card] : []))) : Promise.resolve(NO_GUARDS);
      guarding.catch(() => undefined); // reported by the await below
      const { reservations, counters: settledCounters } = await loadReservations(trx, settles.map((j) => [j.agentId, j.idempotencyKey]));
      const counted = countedBefore(reservations);
      const specs: { agentId: string; spec: UsageSpec }[] = [];
      const authorizations = new Map<AuthorizationJob, LoadedAuthorization>();
      for (const job of syncs) authorizations.set(job, await loadAuthorizations(trx, job.agentId, job.input));
      // Counters the settled money falls in must exist (e.g. a spend recorded before any request).
      for (const [job, loaded] of authorizations) {
        for (const at of loaded.times) for (const spec of usageSpecs(job.input.policy, settledAction(job.input), new Date(at), job.input.timezone)) specs.push({ agentId: job.agentId, spec });
      }
      const lookbacks = new Map<string, Date>();
      for (const { input } of checks) {
        for (const spec of usageSpecs(input.policy, input.action, input.now, input.timezone)) specs.push({ agentId: input.agentId, spec });
        const lookback = duplicateLookbackSeconds(input.policy);
        if (lookback > 0) {
          const since = new Date(input.now.getTime() - lookback * 1000);
          const known = lookbacks.get(input.agentId);
          if (!known || since < known) lookbacks.set(input.agentId, since);
        }
      }
      // The settlements' counters came with their reservations.
      const times = [...checks.map((j) => j.input.now.getTime()), ...[...authorizations.values()].flatMap((a) => a.times)];
      const range: [Date, Date] | undefined = times.length > 0 ? [new Date(Math.min(...times)), new Date(Math.max(...times))] : undefined;
      const keys = checks.filter((j) => !j.input.simulate).map((j) => [j.agentId, j.input.idempotencyKey] as [string, string]);
      const { states, previous } = await loadStates(trx, agents, specs, range, keys, lookbacks, settledCounters);
      seen = { states, range };
      const guards = await guarding;
      const rows: CheckRow[] = [];
      const updates: ReservationUpdate[] = [];
      const decided = new Map<string, CheckRow>();
      const stateOf = (agentId: string) => states.get(agentId) ?? new AgentState(agentId);
      const results = batch.map((job): CheckResult | ReservationStatus | AuthorizationSettlement | Error => {
        if (job.kind === 'settle') return settleInBatch(job, reservations, stateOf(job.agentId), updates);
        if (job.kind === 'authorization') return applyAuthorization(job.input, authorizations.get(job) as LoadedAuthorization, stateOf(job.agentId), updates, rows);
        return decideInBatch(job, stateOf(job.agentId), previous, decided, rows, guards, reservations);
      });
      trx.durable = checks.length > 0 || syncs.length > 0 || raisesCounts(updates, counted);
      await recordBatch(trx, rows, [...states.values()].flatMap((st) => st.dirtyCounters()), updates);
      return results;
    });
    // Committed: every counter of these agents overlapping the batch's times was read (and is
    // now as the batch left it). A batch of settlements alone read no such span.
    const range = seen?.range;
    if (seen && range) {
      const [from, to] = [range[0].getTime(), range[1].getTime()];
      for (const [agentId, state] of seen.states) counterCache.set(agentId, from, to, [...state.counters.values()].filter((c) => overlaps(c, from, to)));
    }
    batch.forEach((job, i) => {
      const outcome = outcomes[i];
      if (outcome instanceof Error || outcome === undefined) job.reject(outcome ?? new Error('no outcome'));
      else if (job.kind === 'check') job.resolve(outcome as CheckResult);
      else if (job.kind === 'settle') job.resolve(outcome as ReservationStatus);
      else job.resolve(outcome as AuthorizationSettlement);
    });
  }

  /**
   * Settlements of reservations as their checks left them: one statement, sent with BEGIN and
   * COMMIT in one round trip. One that no longer applies (settled meanwhile, by a retry in
   * another process) goes through the general path again.
   */
  async function settleKnown(batch: SettleJob[]): Promise<void> {
    const known = batch.map((j) => j.known as KnownReservation);
    const updates = batch.map((j, i) => ({ id: known[i]!.id, status: j.status, amount: j.amount ?? known[i]!.amount, reference: j.reference ?? null }));
    const before = new Map(known.map((k) => [k.id, contribution('reserved', k.amount)]));
    const agents = [...new Set(batch.map((j) => j.agentId))];
    const applied = await inTransaction(knex, agents, async (trx) => {
      trx.durable = raisesCounts(updates, before);
      const sent = prepared(trx, 'settleKnown', [
        updates.map((u) => u.id), updates.map((u) => u.status), updates.map((u) => u.amount), updates.map((u) => u.reference),
        known.map((k) => k.amount), batch.map((j) => j.agentId), batch.map((j) => j.idempotencyKey),
      ]);
      sendBeforeCommit(trx, sent);
      return { sent }; // not awaited here: COMMIT goes out with it
    }).catch((error: unknown) => {
      counterCache.drop(agents); // whether it committed is unknown
      throw error;
    });
    const { rows: [settled] } = await applied.sent;
    const ids = new Set<string>(settled?.ids ?? []);
    counterCache.update(countersFromJson(settled?.counters ?? []));
    counterCache.drop(batch.filter((_, i) => !ids.has(known[i]!.id)).map((j) => j.agentId));
    const missed: SettleJob[] = [];
    // Those that no longer apply go the general way, at once (a deferred one has waited enough).
    batch.forEach((job, i) => {
      if (ids.has(known[i]!.id)) return job.resolve(job.status);
      const { known: _known, deferUntil: _waited, ...rest } = job;
      missed.push(rest);
    });
    pending.unshift(...missed);
  }

  /** The batch without checks whose answer deadline passed (rejected): a failed attempt took time. */
  function unlessLate(batch: Job[]): Job[] {
    const now = performance.now();
    return batch.filter((job) => !rejectedLate(job, now));
  }

  /**
   * A batch of checks decided from the counters this process last saw (CounterCache), with no
   * read: BEGIN and the locks, one write, COMMIT, in one round trip. The write applies only if the
   * database agrees that nothing changed (those counters and no other in the batch's times, no
   * decision under its keys, no frozen agent or card). Only batches of new reservations qualify: a
   * block or escalation, a duplicate window, a simulation or a counter not seen yet goes the
   * general way, as does the batch if the write finds a change. False: nothing was written.
   *
   * Settlements of reservations these agents made here (deferred ones, waiting for such a check)
   * go in the same write, if each is still reserved at the amount known: the checks are decided,
   * and the counters written, as the settlements leave them.
   */
  async function decideFromKnownCounters(batch: Job[]): Promise<boolean> {
    const checks = batch.filter((j): j is CheckJob => j.kind === 'check' && !j.input.simulate && duplicateLookbackSeconds(j.input.policy) === 0);
    const settles = batch.filter((j): j is SettleJob => j.kind === 'settle' && j.known?.facts !== undefined);
    if (checks.length === 0 || checks.length + settles.length !== batch.length) return false;
    if (new Set(settles.map((j) => j.known?.id)).size !== settles.length) return false;
    // The span of time whose counters are read: every counter a check or a settlement falls in.
    const times = [...checks.map((j) => j.input.now.getTime()), ...settles.map((j) => (j.known?.facts as ReservationFacts).occurredAt.getTime())];
    const [from, to] = [Math.min(...times), Math.max(...times)];
    const states = new Map<string, AgentState>();
    const expected: Counter[] = [];
    const known = new Map<string, KnownCounters>();
    for (const agentId of new Set(checks.map((j) => j.agentId))) {
      const seen = counterCache.get(agentId);
      if (!seen) return false;
      known.set(agentId, seen);
      const state = new AgentState(agentId);
      for (const counter of seen.counters.values()) {
        if (!overlaps(counter, from, to)) continue;
        state.addCounter(counter, false);
        expected.push(counter);
      }
      states.set(agentId, state);
    }
    for (const { agentId, input } of checks) {
      const state = states.get(agentId) as AgentState;
      if (usageSpecs(input.policy, input.action, input.now, input.timezone).some((spec) => !state.counters.has(usageKey(spec)))) return false;
    }
    const settled: KnownSettlement[] = [];
    for (const job of settles) {
      const state = states.get(job.agentId);
      const seen = known.get(job.agentId);
      const { id, amount: was, facts } = job.known as Required<KnownReservation>;
      // Its agent has no check here (settlementsApart keeps those out), or the counters known do
      // not cover its time (a window may have turned since): read.
      if (!state || !seen || facts.occurredAt.getTime() < seen.from || facts.occurredAt.getTime() > seen.to) return false;
      const amount = job.amount ?? was;
      const [before, after] = [contribution('reserved', was), contribution(job.status, amount)];
      state.apply(facts, { reserved: after.reserved - before.reserved, spent: after.spent - before.spent, count: after.count - before.count });
      settled.push({ id, status: job.status, amount, reference: job.reference ?? null, was });
    }
    const rows: CheckRow[] = [];
    const decided = new Map<string, CheckRow>();
    const results = checks.map((job) => decideInBatch(job, states.get(job.agentId) as AgentState, NO_PREVIOUS, decided, rows, NO_GUARDS));
    if (results.some((r) => r instanceof Error) || rows.some((r) => !r.reserved)) return false;
    const agents = [...states.keys()];
    const cards = checks.flatMap((j) => (j.input.card ? [j.input.card] : []));
    let found: Unchanged;
    try {
      const sent = await inTransaction(knex, agents, async (trx) => {
        const unchanged = recordIfUnchanged(trx, rows, [...states.values()].flatMap((st) => st.dirtyCounters()), expected, agents, [new Date(from), new Date(to)], cards, settled);
        unchanged.catch(() => undefined); // reported by inTransaction
        return { unchanged }; // not awaited here: COMMIT goes out with it
      });
      found = await sent.unchanged;
    } catch (error) {
      counterCache.drop(agents);
      throw error;
    }
    // A settlement already made elsewhere (a retry in another process): the general path sorts it out.
    if (!found.settles) return false;
    if (!found.counters) {
      // Another process moves these counters too (or one of these agents'): read first for a while.
      counterCache.markContended(agents);
      return false;
    }
    // A key seen before (a retry) or a frozen agent or card: the general path answers it.
    if (!found.keys || !found.guards) return false;
    for (const [agentId, state] of states) counterCache.set(agentId, from, to, state.counters.values());
    settles.forEach((job) => job.resolve(job.status));
    checks.forEach((job, i) => job.resolve(results[i] as CheckResult));
    return true;
  }

  /** `settled`: reservations this batch settles, as settled so far (a replay after its settlement sees it). */
  function decideInBatch(job: CheckJob, state: AgentState, previous: Map<string, PreviousCheck>, decided: Map<string, CheckRow>, rows: CheckRow[], guards: Guards, settled?: Map<string, StoredReservation>): CheckResult | Error {
    const { input } = job;
    const idemKey = `${input.agentId}\u0000${input.idempotencyKey}`;
    const before = input.simulate ? undefined : (previous.get(idemKey) ?? decided.get(idemKey));
    if (before) {
      if (before.requestHash !== input.requestHash) return new IdempotencyConflict(input.idempotencyKey);
      const status = settled?.get(idemKey)?.status ?? before.status ?? (before.decision.decision === 'allow' ? 'reserved' : null);
      return { checkId: before.checkId, decision: before.decision, createdAt: before.createdAt, latencyMs: before.latencyMs, replayed: true, reserved: before.decision.decision === 'allow', status, ...(before.partialAmount !== undefined ? { partialAmount: before.partialAmount } : {}) };
    }
    const context = { now: input.now, timezone: input.timezone, usage: state.usage(), recent: state.recent };
    let decision = blockedBy(guards, input) ?? decide(input.policy, input.action, context);
    let amount = input.action.amount;
    if (decision.decision === 'block' && input.allowPartial && PARTIAL_REASONS.has(decision.reasonCode ?? '')) {
      const partial = largestAllowed(input, context);
      if (partial) ({ decision, amount } = partial);
    }
    const latencyMs = Math.max(0, Math.round(performance.now() - job.startedAt));
    const reserved = decision.decision === 'allow';
    const result: CheckResult = { checkId: newId('chk'), decision, createdAt: input.now, latencyMs, replayed: false, reserved: false, status: null, ...(amount !== input.action.amount ? { partialAmount: amount } : {}) };
    if (input.simulate) return result;
    const action = { ...input.action, amount };
    const { status: _unset, ...fields } = result;
    const row: CheckRow = {
      ...fields, agentId: input.agentId, action, metadata: input.metadata, idempotencyKey: input.idempotencyKey, requestHash: input.requestHash, reserved,
      source: input.source ?? 'check', reference: input.reference ?? null, requestedAmount: input.action.amount,
      ...(decision.decision === 'escalate' && input.openApproval ? { approval: input.openApproval } : {}),
    };
    rows.push(row);
    decided.set(idemKey, row);
    if (reserved) {
      const facts: ReservationFacts = { actionType: action.actionType, amount, currency: action.currency, counterparty: action.counterparty ?? '', occurredAt: input.now };
      state.apply(facts, contribution('reserved', facts.amount));
      state.recent.unshift(facts);
      result.reserved = true;
      result.status = 'reserved';
      result.reservation = { id: result.checkId, amount, facts };
    }
    return result;
  }

  /**
   * Committed is final. Released is final too, except that money Stripe reports as moved after
   * all (a replay after the first answer was a refusal) is counted: the truth beats the limit.
   */
  function settleInBatch(job: SettleJob, reservations: Map<string, StoredReservation>, state: AgentState, updates: ReservationUpdate[]): ReservationStatus | Error {
    const row = reservations.get(`${job.agentId}\u0000${job.idempotencyKey}`);
    if (!row) return new Error(`no reservation for agent ${job.agentId} with key ${job.idempotencyKey}`);
    const current = row.status;
    const amount = job.amount ?? row.countedAmount;
    if (job.revise && job.status === 'unknown') return new Error('a revise says what moved: committed or released, never unknown');
    if (current === 'released' && (job.revise || job.status !== 'committed')) return current;
    if (current === 'committed' && (!job.revise || (job.status === 'committed' && amount === row.countedAmount))) return current;
    const facts: ReservationFacts = { actionType: row.actionType, amount, currency: row.currency, counterparty: row.counterparty, occurredAt: row.createdAt };
    const before = contribution(current, row.countedAmount);
    const after = contribution(job.status, amount);
    state.apply(facts, { reserved: after.reserved - before.reserved, spent: after.spent - before.spent, count: after.count - before.count });
    // Later settlements of the same reservation in this batch see this one.
    row.status = job.status;
    row.countedAmount = amount;
    const earlier = updates.findIndex((u) => u.id === row.id);
    if (earlier >= 0) updates.splice(earlier, 1);
    updates.push({ id: row.id, status: job.status, amount, reference: job.reference ?? null });
    return job.status;
  }

  function settle(agentId: string, idempotencyKey: string, status: Exclude<ReservationStatus, 'reserved'>, opts: SettleOptions = {}): Promise<ReservationStatus> {
    const { reservation, defer, ...rest } = opts;
    // Only a settlement the known-counters path can take waits for a check: it rides with one.
    const deferUntil = defer && reservation?.facts ? performance.now() + settleDeferMs : undefined;
    const settled = new Promise<ReservationStatus>((resolve, reject) => {
      pending.push({ kind: 'settle', agentId, idempotencyKey, status, ...rest, known: reservation, ...(deferUntil !== undefined ? { deferUntil } : {}), resolve, reject });
      pump();
    });
    const entry = { agentId, done: settled.catch(() => undefined).finally(() => unsettled.delete(entry)) };
    unsettled.add(entry);
    return settled;
  }

  async function flush(agentId?: string): Promise<void> {
    const mine = (id: string) => agentId === undefined || id === agentId;
    for (const job of pending) if (job.kind === 'settle' && mine(job.agentId)) delete job.deferUntil;
    pump();
    await Promise.all([...unsettled].filter((u) => mine(u.agentId)).map((u) => u.done));
  }

  function settleAuthorization(input: AuthorizationSettlementInput): Promise<AuthorizationSettlement> {
    return new Promise((resolve, reject) => {
      pending.push({ kind: 'authorization', agentId: input.agentId, input, resolve, reject });
      pump();
    });
  }

  return { check, settle, settleAuthorization, flush };
}

/** One timer that calls `wake` at the earliest time it was asked for (performance.now() ms). */
function wakeUp(wake: () => void): { at(due: number): void } {
  let armed: { timer: NodeJS.Timeout; due: number } | undefined;
  return {
    at(due) {
      if (armed && armed.due <= due) return;
      if (armed) clearTimeout(armed.timer);
      const timer = setTimeout(() => {
        armed = undefined;
        wake();
      }, Math.max(1, Math.ceil(due - performance.now()))).unref();
      armed = { timer, due };
    },
  };
}

/** A check whose answer deadline passed is rejected, never started: true when this one was. */
function rejectedLate(job: Job, now: number): boolean {
  if (job.kind !== 'check' || job.input.deadline === undefined || now <= job.input.deadline) return false;
  job.reject(new DeadlineExceeded());
  return true;
}

const NO_GUARDS: Guards = { agents: new Map(), cards: new Map() };
const NO_PREVIOUS = new Map<string, PreviousCheck>();

/** Does a counter's window overlap [from, to] (epoch ms)? The span loadStates reads counters for. */
function overlaps(counter: Pick<Counter, 'start' | 'end'>, from: number, to: number): boolean {
  return counter.end.getTime() > from && counter.start.getTime() <= to;
}
