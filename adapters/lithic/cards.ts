// Lithic card calls: read, list, freeze, unfreeze and spending controls through the official SDK.
import { ProcessorError } from '../processor.js';
import type { CardAdapter } from '../processor.js';

export interface LithicCardOptions {
  apiKey: string | undefined;
  apiBase: string | undefined;
}

export function createLithicCards(_options: LithicCardOptions): CardAdapter {
  const missing = (): never => {
    throw new ProcessorError('lithic card calls are not built yet', 'invalid');
  };
  return { name: 'lithic', getCard: missing, listCards: missing, freezeCard: missing, unfreezeCard: missing, applySpendingControls: missing };
}
