// Stripe webhooks: signature, normalization into neutral events, the answer's format.
// Signatures are checked by the official SDK on the exact bytes received (processors.md §1.8);
// the answer follows the direct-response contract of §1.4.
import Stripe from 'stripe';
import { SignatureError } from '../processor.js';
import type { AuthorizationAnswer, AuthorizationRequest, Headers, HttpReply, WebhookAdapter, WebhookEvent } from '../processor.js';
import { normalizeStripeEvent } from './normalize.js';
import { header, parseObject } from './payload.js';

export interface StripeWebhookOptions {
  /** Endpoint signing secrets (`whsec_…`); several during a rotation, any one may match. */
  secrets: string[];
}

const TOLERANCE_SECONDS = 300;

export function createStripeWebhooks(options: StripeWebhookOptions): WebhookAdapter {
  const secrets = options.secrets.filter((s) => s.trim() !== '');
  return {
    name: 'stripe',
    readWebhook(rawBody: Buffer, headers: Headers, now?: Date): WebhookEvent {
      verifySignature(rawBody, header(headers, 'stripe-signature'), secrets, now);
      return normalizeStripeEvent(parseObject(rawBody));
    },
    formatAnswer(request: AuthorizationRequest, answer: AuthorizationAnswer): HttpReply {
      return {
        status: 200,
        headers: { 'Stripe-Version': request.apiVersion ?? Stripe.API_VERSION, 'Content-Type': 'application/json' },
        body: answerBody(request, answer),
      };
    },
  };
}

// Messages are ours, never the SDK's: those carry the header and payload, and none may ever
// carry a secret.
function verifySignature(rawBody: Buffer, signature: string | undefined, secrets: string[], now: Date | undefined): void {
  if (secrets.length === 0) throw new SignatureError('no Stripe webhook secret is configured');
  if (!signature) throw new SignatureError('the Stripe-Signature header is missing');
  const sdk = Stripe.webhooks.signature;
  if (!sdk) throw new SignatureError('the stripe SDK offers no signature check');
  let tooOld = false;
  for (const secret of secrets) {
    try {
      sdk.verifyHeader(rawBody, signature, secret, TOLERANCE_SECONDS, undefined, now?.getTime());
      return;
    } catch (error) {
      // The SDK compares the signature before the age, so this secret matched an old delivery.
      if (error instanceof Error && error.message.includes('tolerance')) tooOld = true;
    }
  }
  throw new SignatureError(tooOld ? 'the Stripe-Signature timestamp is older than 300 s' : 'the Stripe-Signature does not match any configured secret');
}

/** Stripe stores at most 50 metadata keys of 40 characters with values of 500. */
const METADATA_KEYS = 50;
const METADATA_KEY_LENGTH = 40;
const METADATA_VALUE_LENGTH = 500;

interface StripeAnswerBody {
  approved: boolean;
  amount?: number;
  metadata: Record<string, string>;
}

function answerBody(request: AuthorizationRequest, answer: AuthorizationAnswer): StripeAnswerBody {
  const metadata: Record<string, string> = {};
  for (const [key, value] of Object.entries(answer.metadata)) {
    if (Object.keys(metadata).length >= METADATA_KEYS) break;
    if (key.length > METADATA_KEY_LENGTH) continue;
    metadata[key] = String(value).slice(0, METADATA_VALUE_LENGTH);
  }
  const partial = answer.partialAmount;
  if (!answer.approved || partial === undefined || partial >= request.amount.amount) return { approved: answer.approved, metadata };
  // Stripe ignores `amount` on a request it cannot shorten and would hold the whole amount, more
  // than was reserved: refusing is the only answer that keeps the promise.
  if (!request.amountControllable || !Number.isSafeInteger(partial) || partial <= 0) return { approved: false, metadata };
  return { approved: true, amount: partial, metadata };
}
