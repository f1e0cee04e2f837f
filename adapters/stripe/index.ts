// The Stripe processor: webhooks and card calls behind adapters/processor.ts.
import type { Processor } from '../processor.js';
import { createStripeCards } from './cards.js';
import type { StripeCardOptions } from './cards.js';
import { createStripeWebhooks } from './webhooks.js';
import type { StripeWebhookOptions } from './webhooks.js';

export function createStripeProcessor(options: StripeCardOptions & StripeWebhookOptions): Processor {
  return { ...createStripeCards(options), ...createStripeWebhooks(options), name: 'stripe' };
}
