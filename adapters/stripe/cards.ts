// Stripe card calls: read, list, freeze, unfreeze and spending controls through the official SDK,
// pointed at STRIPE_API_BASE. Stripe's `inactive` is our `frozen`. The SDK's own retries are off:
// the gateway's durable queue decides when to try again, so one failure is reported as it is.
import Stripe from 'stripe';
import { ProcessorError } from '../processor.js';
import type { Card, CardAdapter, CardStatus, SpendingControls, SpendingInterval } from '../processor.js';

export interface StripeCardOptions {
  apiKey: string | undefined;
  apiBase: string | undefined;
  /** Per request; a timeout is `indeterminate` (the update may have happened). */
  timeoutMs?: number;
}

const INTERVALS: SpendingInterval[] = ['per_authorization', 'daily', 'weekly', 'monthly', 'yearly', 'all_time'];
const PAGE = 100;

export function createStripeCards(options: StripeCardOptions): CardAdapter {
  const stripe = options.apiKey ? client(options.apiKey, options.apiBase ?? 'https://api.stripe.com', options.timeoutMs ?? 10_000) : undefined;
  const call = async <T>(what: string, run: (s: Stripe) => Promise<T>): Promise<T> => {
    if (!stripe) throw new ProcessorError('STRIPE_SECRET_KEY is not set: no Stripe card calls possible', 'invalid');
    try {
      return await run(stripe);
    } catch (error) {
      throw toProcessorError(what, error);
    }
  };
  const update = (cardId: string, params: Stripe.Issuing.CardUpdateParams) => call(`update card ${cardId}`, async (s) => toCard(await s.issuing.cards.update(cardId, params)));

  return {
    name: 'stripe',
    getCard: (cardId) => call(`read card ${cardId}`, async (s) => toCard(await s.issuing.cards.retrieve(cardId))),
    // Stripe's list has no metadata filter: a page is read and filtered here, and the cursor is the
    // page's last card, so a page may come back empty with more to follow.
    listCards: ({ agentId, cursor, limit }) =>
      call('list cards', async (s) => {
        const page = await s.issuing.cards.list({ limit: Math.min(limit ?? PAGE, PAGE), ...(cursor ? { starting_after: cursor } : {}) });
        const cards = page.data.map(toCard).filter((c) => agentId === undefined || c.agentId === agentId);
        const last = page.data[page.data.length - 1];
        return { cards, nextCursor: page.has_more && last ? last.id : null };
      }),
    freezeCard: (cardId) => update(cardId, { status: 'inactive' }),
    unfreezeCard: (cardId) => update(cardId, { status: 'active' }),
    applySpendingControls: (cardId, controls) => update(cardId, { spending_controls: toStripeControls(controls) }),
  };
}

function client(apiKey: string, apiBase: string, timeout: number): Stripe {
  const url = new URL(apiBase);
  const protocol = url.protocol === 'http:' ? 'http' : 'https';
  return new Stripe(apiKey, {
    host: url.hostname,
    port: url.port ? Number(url.port) : protocol === 'http' ? 80 : 443,
    protocol,
    maxNetworkRetries: 0,
    timeout,
    telemetry: false,
    appInfo: { name: 'spendgate' },
  });
}

function toStatus(status: string): CardStatus {
  if (status === 'active') return 'active';
  if (status === 'inactive') return 'frozen';
  if (status === 'canceled') return 'canceled';
  return 'pending';
}

function strings(value: unknown): Record<string, string> {
  if (!value || typeof value !== 'object') return {};
  return Object.fromEntries(Object.entries(value).filter((e): e is [string, string] => typeof e[1] === 'string'));
}

export function toCard(card: Stripe.Issuing.Card): Card {
  const metadata = strings(card.metadata);
  const holder = typeof card.cardholder === 'object' && card.cardholder ? strings(card.cardholder.metadata) : {};
  return {
    processor: 'stripe',
    id: card.id,
    status: toStatus(card.status),
    agentId: metadata.agent_id ?? holder.agent_id ?? null,
    last4: card.last4 ?? null,
    currency: card.currency ?? null,
    metadata,
    spendingControls: card.spending_controls ? fromStripeControls(card.spending_controls) : null,
  };
}

function fromStripeControls(c: Stripe.Issuing.Card.SpendingControls): SpendingControls {
  return {
    limits: (c.spending_limits ?? [])
      .filter((l) => !l.categories || l.categories.length === 0)
      .filter((l) => INTERVALS.includes(l.interval as SpendingInterval))
      .map((l) => ({ amount: l.amount, interval: l.interval as SpendingInterval })),
    allowedCategories: c.allowed_categories ?? null,
    blockedCategories: c.blocked_categories ?? null,
    allowedCountries: c.allowed_merchant_countries ?? null,
    blockedCountries: c.blocked_merchant_countries ?? null,
  };
}

/** Stripe replaces each field it is sent: an unset list is sent empty, which clears it. */
function toStripeControls(c: SpendingControls): Stripe.Issuing.CardUpdateParams.SpendingControls {
  const list = <T>(v: T[] | null) => (v && v.length > 0 ? v : ('' as unknown as T[]));
  return {
    spending_limits: c.limits.map((l) => ({ amount: l.amount, interval: l.interval })),
    allowed_categories: list(c.allowedCategories) as Stripe.Issuing.CardUpdateParams.SpendingControls.AllowedCategory[],
    blocked_categories: list(c.blockedCategories) as Stripe.Issuing.CardUpdateParams.SpendingControls.BlockedCategory[],
    allowed_merchant_countries: list(c.allowedCountries),
    blocked_merchant_countries: list(c.blockedCountries),
  };
}

/**
 * 429, 409 and 502/503 were not carried out: retryable. A timeout, a 500 or a 504 may have
 * been: indeterminate. 402 is Stripe refusing: declined. Other 4xx: our request was wrong.
 */
export function toProcessorError(what: string, error: unknown): ProcessorError {
  if (!(error instanceof Stripe.errors.StripeError)) return new ProcessorError(`Stripe ${what}: ${(error as Error)?.message ?? String(error)}`, 'indeterminate');
  const status = error.statusCode;
  const message = `Stripe ${what}: ${status ? `HTTP ${status} ` : ''}${error.message}`;
  if (error instanceof Stripe.errors.StripeConnectionError) {
    const code = (error.detail as { code?: string } | undefined)?.code;
    return new ProcessorError(message, code === 'ETIMEDOUT' || /timeout/i.test(error.message) ? 'indeterminate' : 'retryable');
  }
  if (status === undefined) return new ProcessorError(message, 'indeterminate');
  if (status === 429 || status === 409 || status === 502 || status === 503) return new ProcessorError(message, 'retryable', status);
  if (status >= 500) return new ProcessorError(message, 'indeterminate', status);
  if (status === 402) return new ProcessorError(message, 'declined', status);
  return new ProcessorError(message, 'invalid', status);
}
