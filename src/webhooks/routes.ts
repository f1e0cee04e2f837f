// POST /webhooks/stripe and /webhooks/lithic, a plain node handler (no express, helmet or
// per-request logger: a card authorization has milliseconds). The exact bytes are verified by the
// processor's adapter before anything else; a real-time authorization request is answered
// synchronously in the processor's format; settlement events are applied, then acknowledged (a
// failure answers 5xx so the processor delivers again); other events are acknowledged, ignored.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { PayloadError, SignatureError } from '../../adapters/processor.js';
import type { Processor, ProcessorName } from '../../adapters/processor.js';
import { recordSecurityEvent } from '../cards/security-events.js';
import { isDatabaseUnavailable } from '../errors.js';
import { answerAuthorization } from './authorize.js';
import type { AuthorizeDeps } from './authorize.js';
import { settleUpdates } from './settle.js';

export interface WebhookDeps extends AuthorizeDeps {
  processors: Partial<Record<ProcessorName, Processor>>;
}

const MAX_BODY_BYTES = 1024 * 1024;
const SECURITY_LOG_EVERY_MS = 60_000;

export function isWebhookPath(url: string): boolean {
  return url.startsWith('/webhooks/');
}

type Json = Record<string, unknown>;

function reply(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function refuse(res: ServerResponse, status: number, type: string, code: string, message: string): void {
  reply(res, status, { error: { type, code, message, request_id: res.getHeader('request-id') } });
}

function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on('end', () => resolve(size > MAX_BODY_BYTES ? undefined : Buffer.concat(chunks, size)));
    req.on('error', reject);
  });
}

export function createWebhookHandler(deps: WebhookDeps) {
  const lastLogged = new Map<string, { at: number; suppressed: number }>();
  // One stored event (and log line) per processor per minute, with how many were suppressed: a
  // flood of forged requests must not become a flood of writes.
  const securityEvent = async (processor: string, reason: string, requestId: string): Promise<void> => {
    deps.metrics.webhookRejections.inc({ processor });
    const now = (deps.now?.() ?? new Date()).getTime();
    const last = lastLogged.get(processor);
    if (last && now - last.at < SECURITY_LOG_EVERY_MS) {
      last.suppressed++;
      return;
    }
    lastLogged.set(processor, { at: now, suppressed: 0 });
    await recordSecurityEvent(deps.knex, deps.logger, {
      type: 'webhook_signature_invalid', processor, message: `rejected a ${processor} webhook: ${reason}`,
      details: { reason, request_id: requestId, suppressed_since_last: last?.suppressed ?? 0 },
    }).catch((error: unknown) => deps.logger.warn({ err: error }, 'could not store a security event'));
  };

  async function handle(req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
    const receivedAt = performance.now();
    const name = (req.url ?? '').slice('/webhooks/'.length).split('?')[0] ?? '';
    const adapter = name === 'stripe' || name === 'lithic' ? deps.processors[name] : undefined;
    if (!adapter) return refuse(res, 404, 'invalid_request_error', 'not_found', `No ${name} webhook endpoint is configured here (set its webhook secret)`);
    if (req.method !== 'POST') return refuse(res, 405, 'invalid_request_error', 'method_not_allowed', 'Webhooks are POST requests');
    const body = await readBody(req);
    if (!body) return refuse(res, 413, 'invalid_request_error', 'payload_too_large', 'The request body is too large');
    let event;
    try {
      event = adapter.readWebhook(body, req.headers);
    } catch (error) {
      if (error instanceof SignatureError) {
        await securityEvent(name, error.message, requestId);
        return refuse(res, 400, 'invalid_request_error', 'invalid_request', 'Webhook signature verification failed');
      }
      if (error instanceof PayloadError) return refuse(res, 400, 'invalid_request_error', 'invalid_request', `Unreadable ${name} webhook: ${error.message}`);
      throw error;
    }
    if (event.kind === 'authorization_request') {
      const answer = await answerAuthorization(deps, event.request, receivedAt);
      const formatted = adapter.formatAnswer(event.request, answer);
      return reply(res, formatted.status, formatted.body, formatted.headers);
    }
    if (event.kind === 'settlement') {
      const outcomes = await settleUpdates(deps, event.updates);
      return reply(res, 200, { received: true, settled: outcomes.filter((o) => o.result).length } satisfies Json);
    }
    return reply(res, 200, { received: true, ignored: event.type } satisfies Json);
  }

  return (req: IncomingMessage, res: ServerResponse): void => {
    const requestId = `req_${randomUUID().replace(/-/g, '')}`;
    res.setHeader('request-id', requestId);
    handle(req, res, requestId).catch((error: unknown) => {
      const unavailable = isDatabaseUnavailable(error);
      deps.logger.error({ err: error, req_id: requestId, url: req.url }, unavailable ? 'webhook: database unavailable' : 'webhook failed');
      refuse(res, unavailable ? 503 : 500, 'api_error', unavailable ? 'unavailable' : 'internal', unavailable ? 'spendgate cannot reach its database right now; deliver again later' : 'An internal error occurred');
    });
  };
}
