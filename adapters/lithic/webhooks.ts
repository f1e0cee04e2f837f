// Lithic webhooks: signature, normalization into neutral events, the answer's format.
// ASA requests and event webhooks are both signed with Standard Webhooks headers, checked by the
// official SDK (processors.md §3.5); the answer follows the ASA contract of §3.3.
import Lithic from 'lithic';
import { SignatureError } from '../processor.js';
import type { AuthorizationAnswer, AuthorizationRequest, Headers, HttpReply, WebhookAdapter, WebhookEvent } from '../processor.js';
import { normalizeLithicEvent } from './normalize.js';
import { header, parseObject } from './payload.js';

export interface LithicWebhookOptions {
  /** ASA and event-subscription secrets (`whsec_…`, base64 key); any one may match. */
  secrets: string[];
  /** Lithic payloads do not say sandbox or production; default true (production). */
  livemode?: boolean;
}

const SIGNATURE_HEADERS = ['webhook-id', 'webhook-timestamp', 'webhook-signature'] as const;

export function createLithicWebhooks(options: LithicWebhookOptions): WebhookAdapter {
  const secrets = options.secrets.filter((s) => s.trim() !== '');
  // Only the SDK's webhook check is used: the client never calls the API, so it needs no real key.
  const lithic = new Lithic({ apiKey: 'unused-webhook-verification-only', webhookSecret: null, baseURL: null, maxRetries: 0 });
  const livemode = options.livemode ?? true;
  return {
    name: 'lithic',
    // The SDK checks the timestamp (±300 s) against the system clock; `now` cannot reach it.
    readWebhook(rawBody: Buffer, headers: Headers): WebhookEvent {
      if (secrets.length === 0) throw new SignatureError('no Lithic webhook secret is configured');
      const signed: Record<string, string> = {};
      for (const name of SIGNATURE_HEADERS) {
        const value = header(headers, name);
        if (!value) throw new SignatureError(`the ${name} header is missing`);
        signed[name] = value;
      }
      const body = rawBody.toString('utf8');
      if (!secrets.some((secret) => verifies(lithic, body, signed, secret))) {
        throw new SignatureError('the webhook signature does not match any configured secret, or its timestamp is more than 300 s away');
      }
      return normalizeLithicEvent(parseObject(rawBody), { messageId: signed['webhook-id'] ?? '', livemode });
    },
    formatAnswer(request: AuthorizationRequest, answer: AuthorizationAnswer): HttpReply {
      return { status: 200, headers: { 'Content-Type': 'application/json' }, body: answerBody(request, answer) };
    },
  };
}

function verifies(lithic: Lithic, body: string, headers: Record<string, string>, secret: string): boolean {
  try {
    lithic.webhooks.verifySignature(body, headers, secret);
    return true;
  } catch (error) {
    // standardwebhooks parses the body only once a signature matched: a signed body that is not
    // JSON is the payload's fault, reported as such by the caller's own parse.
    if (error instanceof SyntaxError) return true;
    // Wrong key, stale timestamp or a secret that is not base64: all the same to the sender.
    return false;
  }
}

/**
 * Neutral reason → ASA decline result. Lithic has no literal DECLINED; an unknown string declines
 * as CUSTOM_ASA_RESULT. INSUFFICIENT_FUNDS is the fallback: a soft decline the merchant may retry
 * (an escalation approved later, a deadline missed), unlike SUSPECTED_FRAUD, which can trigger
 * fraud handling downstream.
 */
const declineResults: Record<string, string> = {
  card_frozen: 'CARD_PAUSED',
  agent_frozen: 'CARD_PAUSED',
  card_canceled: 'CARD_PAUSED',
  max_amount: 'VELOCITY_EXCEEDED',
  velocity_limit: 'VELOCITY_EXCEEDED',
  rate_limit: 'VELOCITY_EXCEEDED',
  counterparty_limit: 'VELOCITY_EXCEEDED',
  duplicate_window: 'VELOCITY_EXCEEDED',
  merchant_allowlist: 'UNAUTHORIZED_MERCHANT',
  merchant_blocklist: 'UNAUTHORIZED_MERCHANT',
  category_allowlist: 'UNAUTHORIZED_MERCHANT',
  category_blocklist: 'UNAUTHORIZED_MERCHANT',
  country_restriction: 'UNAUTHORIZED_MERCHANT',
  currency_allowlist: 'UNAUTHORIZED_MERCHANT',
};
const FALLBACK_DECLINE = 'INSUFFICIENT_FUNDS';

export function lithicDeclineResult(reason: string): string {
  return declineResults[reason] ?? FALLBACK_DECLINE;
}

interface AsaAnswerBody {
  result: string;
  token: string;
  approved_amount?: number;
}

function answerBody(request: AuthorizationRequest, answer: AuthorizationAnswer): AsaAnswerBody {
  const token = request.authorizationId;
  const decline = { result: lithicDeclineResult(answer.reason), token };
  if (!answer.approved) return decline;
  const partial = answer.partialAmount;
  if (partial === undefined || partial >= request.amount.amount) return { result: 'APPROVED', token };
  // A terminal that cannot take a partial approval would take the whole amount, more than was
  // reserved: refusing is the only answer that keeps the promise.
  if (!request.amountControllable || !Number.isSafeInteger(partial) || partial <= 0) return decline;
  return { result: 'APPROVED', token, approved_amount: partial };
}
