// Stripe card calls: read, list, freeze, unfreeze and spending controls through the official SDK.
import { ProcessorError } from '../processor.js';
import type { CardAdapter } from '../processor.js';

export interface StripeCardOptions {
  apiKey: string | undefined;
  apiBase: string | undefined;
}

export function createStripeCards(_options: StripeCardOptions): CardAdapter {
  const missing = (): never => {
    throw new ProcessorError('stripe card calls are not built yet', 'invalid');
  };
  return { name: 'stripe', getCard: missing, listCards: missing, freezeCard: missing, unfreezeCard: missing, applySpendingControls: missing };
}
