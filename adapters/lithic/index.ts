// The Lithic processor: webhooks and card calls behind adapters/processor.ts.
import type { Processor } from '../processor.js';
import { createLithicCards } from './cards.js';
import type { LithicCardOptions } from './cards.js';
import { createLithicWebhooks } from './webhooks.js';
import type { LithicWebhookOptions } from './webhooks.js';

export function createLithicProcessor(options: LithicCardOptions & LithicWebhookOptions): Processor {
  return { ...createLithicCards(options), ...createLithicWebhooks(options), name: 'lithic' };
}
