// Lithic webhooks: signature, normalization into neutral events, the answer's format.
import { SignatureError } from '../processor.js';
import type { WebhookAdapter } from '../processor.js';

export interface LithicWebhookOptions {
  secrets: string[];
}

export function createLithicWebhooks(_options: LithicWebhookOptions): WebhookAdapter {
  return {
    name: 'lithic',
    readWebhook: () => {
      throw new SignatureError('lithic webhooks are not built yet');
    },
    formatAnswer: () => {
      throw new Error('lithic webhooks are not built yet');
    },
  };
}
