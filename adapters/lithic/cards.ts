// Lithic card calls: read, list, freeze, unfreeze and spending controls through the official SDK,
// pointed at LITHIC_API_BASE. `PAUSED` is our `frozen`, `CLOSED` our `canceled`. The agent a card
// belongs to is the `agent_id=` tag in its memo (./memo.ts). The SDK's retries are off: the
// gateway's durable queue decides when to try again.
import Lithic from 'lithic';
import { ProcessorError } from '../processor.js';
import type { Card, CardAdapter, CardStatus, SpendingControls, SpendingInterval } from '../processor.js';
import { agentTag, memoTags } from './memo.js';

export interface LithicCardOptions {
  apiKey: string | undefined;
  apiBase: string | undefined;
  /** Per request; a timeout is `indeterminate` (the update may have happened). */
  timeoutMs?: number;
}

type LithicCard = Lithic.NonPCICard;
type Duration = LithicCard['spend_limit_duration'];

const DURATIONS: Record<Duration, SpendingInterval> = { TRANSACTION: 'per_authorization', DAILY: 'daily', MONTHLY: 'monthly', ANNUALLY: 'yearly', FOREVER: 'all_time' };
const PAGE = 100;

export function createLithicCards(options: LithicCardOptions): CardAdapter {
  const lithic = options.apiKey ? new Lithic({ apiKey: options.apiKey, ...(options.apiBase ? { baseURL: options.apiBase } : {}), maxRetries: 0, timeout: options.timeoutMs ?? 10_000 }) : undefined;
  const call = async <T>(what: string, run: (l: Lithic) => Promise<T>): Promise<T> => {
    if (!lithic) throw new ProcessorError('LITHIC_API_KEY is not set: no Lithic card calls possible', 'invalid');
    try {
      return await run(lithic);
    } catch (error) {
      throw toProcessorError(what, error);
    }
  };
  const update = (token: string, body: Lithic.CardUpdateParams) => call(`update card ${token}`, async (l) => toCard(await l.cards.update(token, body)));

  return {
    name: 'lithic',
    getCard: (token) => call(`read card ${token}`, async (l) => toCard(await l.cards.retrieve(token))),
    // Lithic's memo search is a substring match: it narrows the list, the exact tag decides.
    listCards: ({ agentId, cursor, limit }) =>
      call('list cards', async (l) => {
        const page = await l.cards.list({ page_size: Math.min(limit ?? PAGE, PAGE), ...(cursor ? { starting_after: cursor } : {}), ...(agentId ? { memo: agentTag(agentId) } : {}) });
        const cards = page.data.map(toCard).filter((c) => agentId === undefined || c.agentId === agentId);
        const last = page.data[page.data.length - 1];
        return { cards, nextCursor: page.has_more && last ? last.token : null };
      }),
    freezeCard: (token) => update(token, { state: 'PAUSED' }),
    unfreezeCard: (token) => update(token, { state: 'OPEN' }),
    applySpendingControls: (token, controls) => update(token, toLithicLimit(controls)),
  };
}

function toStatus(state: string): CardStatus {
  if (state === 'OPEN') return 'active';
  if (state === 'PAUSED') return 'frozen';
  if (state === 'CLOSED') return 'canceled';
  return 'pending';
}

export function toCard(card: LithicCard): Card {
  const metadata = memoTags(card.memo);
  const interval = DURATIONS[card.spend_limit_duration];
  return {
    processor: 'lithic',
    id: card.token,
    status: toStatus(card.state),
    agentId: metadata.agent_id ?? null,
    last4: card.last_four ?? null,
    currency: card.cardholder_currency ? card.cardholder_currency.toLowerCase() : null,
    metadata,
    spendingControls: {
      limits: card.spend_limit > 0 && interval ? [{ amount: card.spend_limit, interval }] : [],
      allowedCategories: null,
      blockedCategories: null,
      allowedCountries: null,
      blockedCountries: null,
    },
  };
}

/** A Lithic card carries one spend limit; categories and countries are Lithic auth rules instead. */
function toLithicLimit(controls: SpendingControls): Lithic.CardUpdateParams {
  const lists = [controls.allowedCategories, controls.blockedCategories, controls.allowedCountries, controls.blockedCountries];
  if (lists.some((l) => l && l.length > 0)) throw new ProcessorError('Lithic cards take a spend limit only; categories and countries need Lithic auth rules', 'invalid');
  if (controls.limits.length > 1) throw new ProcessorError('Lithic cards take one spend limit, not several', 'invalid');
  const limit = controls.limits[0];
  if (!limit) return { spend_limit: 0 };
  // DAILY can be read but not set through the card update.
  const duration = (['TRANSACTION', 'MONTHLY', 'ANNUALLY', 'FOREVER'] as const).find((d) => DURATIONS[d] === limit.interval);
  if (!duration) throw new ProcessorError(`Lithic has no ${limit.interval} spend limit`, 'invalid');
  return { spend_limit: limit.amount, spend_limit_duration: duration };
}

/** Same classes as for Stripe: 429/409/502/503 retryable, timeouts and 500/504 indeterminate. */
export function toProcessorError(what: string, error: unknown): ProcessorError {
  if (error instanceof ProcessorError) return error;
  if (error instanceof Lithic.APIConnectionTimeoutError) return new ProcessorError(`Lithic ${what}: timed out`, 'indeterminate');
  if (error instanceof Lithic.APIConnectionError) return new ProcessorError(`Lithic ${what}: ${error.message}`, 'retryable');
  if (!(error instanceof Lithic.APIError) || error.status === undefined) return new ProcessorError(`Lithic ${what}: ${(error as Error)?.message ?? String(error)}`, 'indeterminate');
  const status = error.status;
  const message = `Lithic ${what}: HTTP ${status} ${error.message}`;
  if (status === 429 || status === 409 || status === 502 || status === 503) return new ProcessorError(message, 'retryable', status);
  if (status >= 500) return new ProcessorError(message, 'indeterminate', status);
  if (status === 402) return new ProcessorError(message, 'declined', status);
  return new ProcessorError(message, 'invalid', status);
}
