// The statements of a ledger transaction, by name. Each is prepared once per connection and
// planned once (a generic plan: see transaction.ts) and kept while the connection lives, so each
// must reach its rows by looking up the keys it is given, whatever the tables held when it was
// planned (test/ledger/plans.test.ts): a plan made on a nearly empty table would otherwise read a
// whole index, or an agent's whole history, on every batch once the table has grown.
//
// Rows are looked up one key at a time in a LATERAL subquery with OFFSET 0, which holds the key
// conditions and nothing else: the planner cannot move a caller's condition on status inside (it
// would make decisions_reservations look usable) nor scan the table once and filter the join. Rows
// are updated by the ctid their lookup found, and an update repeats the conditions it applies on, so
// it stays a compare-and-set even if a row were changed meanwhile (only the ledger changes a
// decision, under the agent's lock the batch holds). Those are written `is not distinct from`: the
// planner cannot read that as `status is not null`, so decisions_reservations never looks usable.

/** Each key of `keys` (a row source aliased k, with agent_id and idempotency_key) and its decision d, through the unique key. */
const decisionByKey = (keys: string) =>
  `${keys} cross join lateral (select d.ctid as found_ctid, d.* from decisions d where d.agent_id = k.agent_id and d.idempotency_key = k.idempotency_key offset 0) d`;

/** Frozen agents among $agents, by the primary key. */
const frozenAgents = (agents: string) => `select 'agent' as kind, id as key, status from agents where id = any(${agents}::text[]) and status <> 'active'`;

/** Frozen registry cards among the (processor, id) pairs of $processors/$ids, one lookup each. */
const frozenCards = (processors: string, ids: string) => `select 'card' as kind, c.processor || ':' || c.id as key, c.status
       from unnest(${processors}::text[], ${ids}::text[]) as k(processor, id)
       cross join lateral (select c.processor, c.id, c.status from cards c where c.processor = k.processor and c.id = k.id offset 0) c
      where c.status <> 'active'`;

/** The counters of $agents whose windows overlap [$from, $to] (loadStates reads these). */
const countersOverlapping = (agents: string, from: string, to: string) =>
  `select * from usage_counters where agent_id = any(${agents}::text[]) and window_end > ${from} and window_start <= ${to}`;

/**
 * New decisions and the counters they moved ($23–$32: each counter's new totals), in one
 * statement; with `preconditions`, only if every one holds (each is returned by name). `settles`:
 * also settle reservations ($50–$53: id, status, amount, reference), under the same conditions.
 */
function write(preconditions: Record<string, string> = {}, settles = false): string {
  const names = Object.keys(preconditions);
  const holds = `(select ${names.join(' and ')} from unchanged)`;
  const when = names.length > 0 ? `where ${holds}` : '';
  const settled = settles
    ? `settled as (
       update decisions d set status = f.status, counted_amount = f.amount, reference = coalesce(f.reference, d.reference), updated_at = now()
         from (select d.found_ctid, k.status, k.amount, k.reference
                 from unnest($50::text[], $51::text[], $52::bigint[], $53::text[]) as k(id, status, amount, reference)
                 cross join lateral (select d.ctid as found_ctid from decisions d where d.id = k.id offset 0) d) f
        where d.ctid = f.found_ctid and ${names.length > 0 ? holds : 'true'}
       returning 1),`
    : '';
  return `with ${names.length > 0 ? `unchanged as (select ${Object.entries(preconditions).map(([name, sql]) => `${sql} as ${name}`).join(', ')}),` : ''}
     ${settled}
     decided as (
       insert into decisions (id, agent_id, policy_id, policy_version, action_type, amount, currency, counterparty, metadata,
         decision, reason_code, violated_rule_id, violated_rule_description, message, confidence, notify, latency_ms,
         idempotency_key, request_hash, created_at, status, counted_amount, updated_at, source, reference)
       select id, agent_id, policy_id, policy_version, action_type, amount, currency, counterparty, metadata, decision, reason_code,
         violated_rule_id, violated_rule_description, message, confidence, notify, latency_ms, idempotency_key, request_hash,
         created_at, coalesce(status, case when reserved then 'reserved' end), case when reserved then amount end, created_at, source, reference
       from unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::bigint[], $7::text[], $8::text[], $9::jsonb[], $10::text[],
         $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::bool[], $17::int[], $18::text[], $19::text[], $20::timestamptz[], $21::bool[], $22::text[],
         $33::text[], $34::text[])
         as t(id, agent_id, policy_id, policy_version, action_type, amount, currency, counterparty, metadata, decision, reason_code,
           violated_rule_id, violated_rule_description, message, confidence, notify, latency_ms, idempotency_key, request_hash,
           created_at, reserved, source, status, reference)
       ${when}
       returning 1),
     counted as (
       insert into usage_counters (agent_id, "window", window_start, window_end, currency, action_filter, counterparty, reserved, spent, count)
       select * from unnest($23::text[], $24::text[], $25::timestamptz[], $26::timestamptz[], $27::text[], $28::text[], $29::text[], $30::bigint[], $31::bigint[], $32::int[])
         as c(agent_id, "window", window_start, window_end, currency, action_filter, counterparty, reserved, spent, count)
       ${when}
       on conflict (agent_id, "window", window_start, currency, action_filter, counterparty)
       do update set reserved = excluded.reserved, spent = excluded.spent, count = excluded.count
       returning 1)
     select ${names.map((name) => `(select ${name} from unchanged) as ${name}, `).join('')}(select count(*) from decided) as decided, (select count(*) from counted) as counted${settles ? ', (select count(*) from settled) as settled' : ''}`;
}

/** The preconditions of a write decided from known counters (STATEMENTS.writeIfUnchanged). */
const UNCHANGED = {
  counters_ok: `(
         select count(*) from unnest($35::text[], $36::text[], $37::timestamptz[], $38::timestamptz[], $39::text[], $40::text[], $41::text[], $42::bigint[], $43::bigint[], $44::int[])
                as e(agent_id, "window", window_start, window_end, currency, action_filter, counterparty, reserved, spent, count)
          cross join lateral (select 1 from usage_counters c
                               where (c.agent_id, c."window", c.window_start, c.currency, c.action_filter, c.counterparty)
                                   = (e.agent_id, e."window", e.window_start, e.currency, e.action_filter, e.counterparty)
                                 and (c.window_end, c.reserved, c.spent, c.count) = (e.window_end, e.reserved, e.spent, e.count) offset 0) c
       ) = cardinality($35::text[])
       and (select count(*) from (${countersOverlapping('$45', '$46', '$47')}) o) = cardinality($35::text[])`,
  keys_ok: `not exists (select 1 from ${decisionByKey('unnest($2::text[], $18::text[]) as k(agent_id, idempotency_key)')})`,
  guards_ok: `not exists (${frozenAgents('$45')}) and not exists (${frozenCards('$48', '$49')})`,
};

export const STATEMENTS = {
  previous: `select d.* from ${decisionByKey('unnest($1::text[], $2::text[]) as k(agent_id, idempotency_key)')}`,
  counters: countersOverlapping('$1', '$2', '$3'),
  guards: `${frozenAgents('$1')} union all ${frozenCards('$2', '$3')}`,
  reservations: `select d.id, d.agent_id, d.idempotency_key, d.status, d.counted_amount, d.action_type, d.currency, d.counterparty, d.created_at
       from ${decisionByKey('unnest($1::text[], $2::text[]) as k(agent_id, idempotency_key)')}
      where d.status is not null`,
  /** The counters the reservations of $1/$2 fall in: read with them, so a settlement costs no extra round trip. */
  settledCounters: `select c.* from usage_counters c
       join (select d.agent_id, min(d.created_at) as first, max(d.created_at) as last
               from ${decisionByKey('unnest($1::text[], $2::text[]) as k(agent_id, idempotency_key)')}
              where d.status is not null group by d.agent_id) r using (agent_id)
      where c.window_end > r.first and c.window_start <= r.last`,
  /**
   * Settle reservations this process made and knows ($5: the amount each still counts as
   * reserved), in one statement with no read before it: each applies only if it is still
   * reserved at that amount under the agent and key settled (whose lock the batch holds), and moves every counter it falls in by the difference — the same
   * counters and sums as counts() and contribution() (src/ledger/state.ts) in the general path.
   * Returns, in one row, the ids that applied (the others take the general path) and the
   * counters' new totals.
   */
  settleKnown: `with found as (
       select d.found_ctid, k.status, k.amount, k.reference, k.was
         from ${decisionByKey('unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::text[], $7::text[]) as k(id, status, amount, reference, was, agent_id, idempotency_key)')}
        where d.id = k.id and d.status = 'reserved' and d.counted_amount = k.was),
     settled as (
       update decisions d set status = f.status, counted_amount = f.amount, reference = coalesce(f.reference, d.reference), updated_at = now()
         from found f where d.ctid = f.found_ctid and d.status is not distinct from 'reserved' and d.counted_amount is not distinct from f.was
       returning d.id, d.agent_id, d.created_at, d.currency, d.action_type, d.counterparty, f.status, f.amount, f.was),
     moved as (
       select c.agent_id, c."window", c.window_start, c.currency, c.action_filter, c.counterparty,
              sum(case when s.status in ('reserved', 'unknown') then s.amount else 0 end - s.was) as reserved,
              sum(case when s.status = 'committed' then s.amount else 0 end) as spent,
              sum(case when s.status = 'released' then -1 else 0 end) as count
         from settled s join usage_counters c on c.agent_id = s.agent_id and c.window_start <= s.created_at and c.window_end > s.created_at
        where (c.currency = '' or c.currency = s.currency)
          and (c.action_filter = '' or s.action_type = any(string_to_array(c.action_filter, ',')))
          and (c.counterparty = '' or c.counterparty = '=' || s.counterparty)
        group by 1, 2, 3, 4, 5, 6),
     counted as (
       update usage_counters c set reserved = c.reserved + m.reserved, spent = c.spent + m.spent, count = c.count + m.count
         from moved m
        where (c.agent_id, c."window", c.window_start, c.currency, c.action_filter, c.counterparty) = (m.agent_id, m."window", m.window_start, m.currency, m.action_filter, m.counterparty)
       returning c.agent_id, c."window", c.window_start, c.window_end, c.currency, c.action_filter, c.counterparty, c.reserved, c.spent, c.count)
     select array(select id from settled) as ids, (select coalesce(json_agg(counted), '[]') from counted) as counters`,
  settle: `with found as (
       select d.found_ctid, k.status, k.amount, k.reference
         from unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) as k(id, status, amount, reference)
         cross join lateral (select d.ctid as found_ctid from decisions d where d.id = k.id offset 0) d)
     update decisions d set status = f.status, counted_amount = f.amount, reference = coalesce(f.reference, d.reference), updated_at = now()
       from found f where d.ctid = f.found_ctid`,
  write: write(),
  /**
   * The write of a batch decided from counters this process knew ($35–$44: each with its window
   * and totals), applied only if nothing changed meanwhile: those counters exist as known and no
   * other counter of agents $45 overlaps the batch's times $46–$47 (counters_ok); no decision
   * exists under the batch's keys (keys_ok); no agent of the batch or card $48/$49 is frozen
   * (guards_ok). Otherwise it writes nothing, and the batch takes the general path.
   */
  writeIfUnchanged: write(UNCHANGED),
  /**
   * writeIfUnchanged that also settles reservations this process made ($50–$53: id, status,
   * amount, reference; $54: the amount each counts as reserved), if each is still reserved at that
   * amount (settles_ok). The counters' totals given ($23–$32) already include the settlements.
   */
  writeSettlingIfUnchanged: write({
    ...UNCHANGED,
    settles_ok: `(
         select count(*) from unnest($50::text[], $54::bigint[]) as k(id, was)
          cross join lateral (select d.status, d.counted_amount from decisions d where d.id = k.id offset 0) d
          where d.status is not distinct from 'reserved' and d.counted_amount is not distinct from k.was
       ) = cardinality($50::text[])`,
  }, true),
} as const;

export type StatementName = keyof typeof STATEMENTS;