// Stripe webhooks: signature, normalization into neutral events, the answer's format.
import { SignatureError } from '../processor.js';
import type { WebhookAdapter } from '../processor.js';

export interface StripeWebhookOptions {
  secrets: string[];
}

export function createStripeWebhooks(_options: StripeWebhookOptions): WebhookAdapter {
  return {
    name: 'stripe',
    readWebhook: () => {
      throw new SignatureError('stripe webhooks are not built yet');
    },
    formatAnswer: () => {
      throw new Error('stripe webhooks are not built yet');
    },
  };
}
