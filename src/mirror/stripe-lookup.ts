// Upstream reads for the mirror through the official stripe SDK, pointed at STRIPE_API_BASE with
// the real key of the agent's mode. A Stripe error (a missing object, say) is passed to the agent
// as Stripe sent it.
import Stripe from 'stripe';
import type { StripeLookup } from './actions.js';

/** Stripe answered with an error: the mirror relays status and body unchanged. */
export class UpstreamError extends Error {
  constructor(readonly status: number, readonly body: unknown, readonly requestId: string | undefined) {
    super(`Stripe answered ${status}`);
  }
}

export function stripeClient(secretKey: string, apiBase: string): Stripe {
  const url = new URL(apiBase);
  const protocol = url.protocol === 'http:' ? 'http' : 'https';
  return new Stripe(secretKey, {
    host: url.hostname,
    port: url.port ? Number(url.port) : protocol === 'http' ? 80 : 443,
    protocol,
    maxNetworkRetries: 1,
    timeout: 10_000,
    telemetry: false,
    appInfo: { name: 'spendgate' },
  });
}

async function relayErrors<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof Stripe.errors.StripeError && error.statusCode && error.statusCode < 500) {
      throw new UpstreamError(error.statusCode, { error: error.raw }, error.requestId);
    }
    throw error;
  }
}

/**
 * Reads through `stripe`, of the connected account `account` when the agent's call names one
 * (`Stripe-Account`): the object the call acts on lives there, not in the platform account.
 */
export function stripeLookup(stripe: Stripe, account?: string): StripeLookup {
  const options = account ? { stripeAccount: account } : undefined;
  return {
    paymentIntent: (id) => relayErrors(async () => (await stripe.paymentIntents.retrieve(id, undefined, options)) as unknown as Awaited<ReturnType<StripeLookup['paymentIntent']>>),
    charge: (id) => relayErrors(async () => (await stripe.charges.retrieve(id, undefined, options)) as unknown as Awaited<ReturnType<StripeLookup['charge']>>),
    invoice: (id) => relayErrors(async () => (await stripe.invoices.retrieve(id, undefined, options)) as unknown as Awaited<ReturnType<StripeLookup['invoice']>>),
  };
}

/** One page of the account's events, newest first (GET /v1/events). */
export interface StripeEventPage {
  data: { id: string; type: string; created: number; request?: { id: string | null; idempotency_key: string | null } | null; data: { object: Record<string, unknown> } }[];
  has_more: boolean;
}

/** Lists events created within [gte, lte] (unix seconds), of a connected account when given. */
export type ListEvents = (query: { gte: number; lte: number; startingAfter?: string }, account?: string) => Promise<StripeEventPage>;

export function stripeEvents(stripe: Stripe): ListEvents {
  return async ({ gte, lte, startingAfter }, account) =>
    (await stripe.events.list({ created: { gte, lte }, limit: 100, ...(startingAfter ? { starting_after: startingAfter } : {}) }, account ? { stripeAccount: account } : undefined)) as unknown as StripeEventPage;
}
