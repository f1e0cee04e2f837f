// POST /webhooks/stripe and /webhooks/lithic: the exact bytes are verified by the processor's
// adapter before anything else; a real-time authorization request is answered synchronously in the
// processor's format; settlement events are applied, then acknowledged (a failure answers 5xx so
// the processor delivers again); other events are acknowledged and ignored.
import express from 'express';
import type { Request, Response, Router } from 'express';
import type { Logger } from 'pino';
import { PayloadError, SignatureError } from '../../adapters/processor.js';
import type { Processor, ProcessorName } from '../../adapters/processor.js';
import { AppError } from '../errors.js';
import { answerAuthorization } from './authorize.js';
import type { AuthorizeDeps } from './authorize.js';
import { settleUpdates } from './settle.js';

export interface WebhookDeps extends AuthorizeDeps {
  processors: Partial<Record<ProcessorName, Processor>>;
}

/** A flood of bad signatures is one log line per processor per minute, not one per request. */
const SECURITY_LOG_EVERY_MS = 60_000;

export function webhookRoutes(deps: WebhookDeps): Router {
  const router = express.Router();
  const lastLogged = new Map<string, { at: number; suppressed: number }>();
  const securityEvent = (log: Logger, processor: string, reason: string) => {
    const now = Date.now();
    const last = lastLogged.get(processor);
    if (last && now - last.at < SECURITY_LOG_EVERY_MS) {
      last.suppressed++;
      return;
    }
    log.warn({ security_event: 'webhook_signature_invalid', processor, reason, suppressed_since_last: last?.suppressed ?? 0 }, `rejected a ${processor} webhook: ${reason}`);
    lastLogged.set(processor, { at: now, suppressed: 0 });
  };

  router.post('/webhooks/:processor', express.raw({ type: () => true, limit: '1mb' }), async (req: Request, res: Response) => {
    const receivedAt = performance.now();
    const name = req.params.processor as ProcessorName;
    const adapter = name === 'stripe' || name === 'lithic' ? deps.processors[name] : undefined;
    if (!adapter) throw new AppError('not_found', `No ${String(req.params.processor)} webhook endpoint is configured here (set its webhook secret)`);
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    let event;
    try {
      event = adapter.readWebhook(body, req.headers);
    } catch (error) {
      if (error instanceof SignatureError) {
        deps.metrics.webhookRejections.inc({ processor: name });
        securityEvent(req.log ?? deps.logger, name, error.message);
        throw new AppError('invalid_request', 'Webhook signature verification failed');
      }
      if (error instanceof PayloadError) throw new AppError('invalid_request', `Unreadable ${name} webhook: ${error.message}`);
      throw error;
    }
    if (event.kind === 'authorization_request') {
      const answer = await answerAuthorization(deps, event.request, receivedAt);
      const reply = adapter.formatAnswer(event.request, answer);
      res.status(reply.status).set(reply.headers).send(JSON.stringify(reply.body));
      return;
    }
    if (event.kind === 'settlement') {
      const outcomes = await settleUpdates(deps, event.updates);
      res.status(200).json({ received: true, settled: outcomes.filter((o) => o.result).length });
      return;
    }
    res.status(200).json({ received: true, ignored: event.type });
  });
  return router;
}
