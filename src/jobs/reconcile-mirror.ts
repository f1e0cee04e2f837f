// Reconciliation of the mirror's calls whose outcome the gateway never learned (SPEC §5): `unknown`
// ones (Stripe timed out, answered 5xx, or the connection broke after the request left) and
// `reserved` ones left behind (answered 503 past the deadline and never retried, a gateway stopped
// mid-call, a settlement given up). Stripe records on every event the idempotency key of the
// request that caused it (`request.idempotency_key`), and the gateway sends each call upstream
// under a key of its own: the job reads the account's events around the call and looks for that
// key. Found: the call ran; it is committed with the object's id and the amount Stripe reports,
// or released if what it produced is a failed payment (Stripe answered it 402). Not found in the
// whole window: it never ran at Stripe, and is released. A later retry with the same key is then
// decided afresh (see checkedCall), so the budget this frees cannot be spent twice.
import { registerMirrorCard } from '../cards/mirror-card.js';
import { reportedAmount } from '../mirror/checked-call.js';
import type { MoneyEndpoint } from '../mirror/classify.js';
import { upstreamIdempotencyKey } from '../mirror/forward.js';
import type { StripeEventPage } from '../mirror/stripe-lookup.js';
import { PREDICATE } from '../../migrations/20261123000000_mirror_unsettled_index.js';
import type { JobDeps } from './index.js';

export const name = 'reconcile-mirror';

/**
 * A call is reconciled once untouched this long: past Stripe's own handling of a request, the
 * gateway's upstream timeout (at most 120 s) and its settlement retries (5 min).
 */
export const SETTLED_AFTER_MS = 15 * 60_000;
/** Slack either side of the window, for the two clocks. */
const CLOCK_SLACK_S = 5 * 60;
/** Stripe lists the events of the last 30 days; older calls cannot be reconciled this way. */
const EVENTS_KEPT_MS = 30 * 86_400_000;
/** Calls per run, oldest first, and pages of 100 events read per call. */
const MAX_CALLS = 50;
const MAX_PAGES = 20;

/** What each endpoint's call produces at Stripe: its event of that object decides. */
const OBJECT_OF: Record<MoneyEndpoint, string> = {
  payment_intent_create: 'payment_intent',
  payment_intent_confirm: 'payment_intent',
  payment_intent_capture: 'payment_intent',
  charge_create: 'charge',
  charge_capture: 'charge',
  refund_create: 'refund',
  charge_refund: 'refund',
  transfer_create: 'transfer',
  payout_create: 'payout',
  topup_create: 'topup',
  invoice_pay: 'invoice',
  issuing_card_create: 'issuing.card',
};

/** Events of a request Stripe answered with a card error: nothing moved. */
const FAILED = new Set(['payment_intent.payment_failed', 'charge.failed', 'invoice.payment_failed']);

interface Tally {
  checked: number;
  committed: number;
  released: number;
  /** Left as they are: too many events in the window, or no Stripe key of the call's mode (or none recorded). */
  undetermined: number;
  /** Older than Stripe keeps events: they stay counted until their windows end. */
  too_old: number;
  errors: number;
}

interface UnsettledRow {
  id: string;
  agent_id: string;
  idempotency_key: string;
  status: 'reserved' | 'unknown';
  currency: string;
  metadata: { endpoint?: MoneyEndpoint; mode?: 'test' | 'live'; upstream_key?: string; stripe_account?: string };
  created_at: Date;
  updated_at: Date | null;
}

type Outcome = { status: 'committed'; reference: string; amount?: number; eventId: string; object: Record<string, unknown> } | { status: 'released'; eventId?: string } | { status: 'undetermined'; why: string };

export async function run(deps: JobDeps, now: Date): Promise<Tally> {
  const tally: Tally = { checked: 0, committed: 0, released: 0, undetermined: 0, too_old: 0, errors: 0 };
  const { knex, logger, ledger, stripeEvents } = deps;
  if (!ledger || !stripeEvents) return tally;
  const settledBefore = new Date(now.getTime() - SETTLED_AFTER_MS);
  const oldest = new Date(now.getTime() - EVENTS_KEPT_MS + CLOCK_SLACK_S * 1000 + SETTLED_AFTER_MS);
  const unsettled = () => knex('decisions').whereRaw(PREDICATE).where('created_at', '<', settledBefore).whereRaw('coalesce(updated_at, created_at) < ?', [settledBefore]);
  // Only calls of a mode with a key take the run's slots: the others would fill them every run.
  const modes = (['test', 'live'] as const).filter((mode) => stripeEvents(mode));
  const rows = (await unsettled().where('created_at', '>=', oldest).whereRaw(`metadata->>'mode' = any(?)`, [modes]).orderBy('created_at').limit(MAX_CALLS)
    .select('id', 'agent_id', 'idempotency_key', 'status', 'currency', 'metadata', 'created_at', 'updated_at')) as UnsettledRow[];
  const [left] = (await unsettled().select(
    knex.raw('count(*) filter (where created_at < ?) as too_old', [oldest]),
    knex.raw(`count(*) filter (where created_at >= ? and coalesce(metadata->>'mode', '') <> all(?)) as keyless`, [oldest, modes]),
  )) as { too_old: number | string; keyless: number | string }[];
  tally.too_old = Number(left?.too_old ?? 0);
  tally.undetermined = Number(left?.keyless ?? 0);
  if (tally.too_old > 0) logger.warn({ calls: tally.too_old }, 'mirror calls of unknown outcome older than Stripe keeps events stay counted until their windows end');
  if (tally.undetermined > 0) logger.warn({ calls: tally.undetermined, modes_with_a_key: modes }, 'mirror calls of unknown outcome without a Stripe key of their mode stay counted');
  for (const row of rows) {
    tally.checked++;
    try {
      const outcome = await outcomeOf(stripeEvents, row);
      if (outcome.status === 'undetermined') {
        tally.undetermined++;
        logger.warn({ decision_id: row.id, agent_id: row.agent_id, why: outcome.why }, 'mirror call left as it is; the next run tries again');
        continue;
      }
      const options = outcome.status === 'committed' ? { reference: outcome.reference, ...(outcome.amount !== undefined ? { amount: outcome.amount } : {}) } : {};
      const settled = await ledger.settle(row.agent_id, row.idempotency_key, outcome.status, options);
      tally[outcome.status]++;
      logger.info({ decision_id: row.id, agent_id: row.agent_id, was: row.status, now: settled, event_id: outcome.eventId ?? null, reference: outcome.status === 'committed' ? outcome.reference : null }, 'mirror call reconciled against Stripe');
      if (outcome.status === 'committed' && row.metadata.endpoint === 'issuing_card_create') {
        await registerMirrorCard(knex, row.agent_id, 200, Buffer.from(JSON.stringify(outcome.object)), logger);
      }
    } catch (error) {
      tally.errors++;
      logger.warn({ decision_id: row.id, agent_id: row.agent_id, err: error }, 'reconciling a mirror call failed; the next run tries again');
    }
  }
  return tally;
}

async function outcomeOf(events: NonNullable<JobDeps['stripeEvents']>, row: UnsettledRow): Promise<Outcome> {
  const { metadata } = row;
  const list = metadata.mode && events(metadata.mode);
  if (!metadata.endpoint || !list) return { status: 'undetermined', why: 'no Stripe key of the call\'s mode' }; // the query keeps these out
  const key = metadata.upstream_key ?? upstreamIdempotencyKey(row.agent_id, row.idempotency_key);
  const from = Math.floor(row.created_at.getTime() / 1000) - CLOCK_SLACK_S;
  const to = Math.ceil(((row.updated_at ?? row.created_at).getTime() + SETTLED_AFTER_MS) / 1000) + CLOCK_SLACK_S;
  const found: StripeEventPage['data'] = [];
  let page: StripeEventPage | undefined;
  for (let pages = 0; pages < MAX_PAGES && (page === undefined || page.has_more); pages++) {
    const last = page?.data.at(-1)?.id;
    page = await list({ gte: from, lte: to, ...(last ? { startingAfter: last } : {}) }, metadata.stripe_account);
    found.push(...page.data.filter((event) => event.request?.idempotency_key === key));
  }
  if (page?.has_more) return { status: 'undetermined', why: `more than ${MAX_PAGES * 100} events in the call's window` };
  // Newest first: the state the call left its object in.
  const decisive = found.find((event) => event.data.object.object === OBJECT_OF[metadata.endpoint as MoneyEndpoint]) ?? found[0];
  if (!decisive) return { status: 'released' };
  if (FAILED.has(decisive.type)) return { status: 'released', eventId: decisive.id };
  const object = decisive.data.object;
  const amount = reportedAmount(object, row.currency);
  return { status: 'committed', reference: String(object.id), eventId: decisive.id, object, ...(amount !== undefined ? { amount } : {}) };
}
