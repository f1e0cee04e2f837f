// Forged webhooks: each is refused and counted in the metric, but only one security event (a row
// and a log line) is stored per processor per minute, carrying how many were suppressed since the
// last: a flood of forged requests must not become a flood of writes.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import type { Knex } from 'knex';
import pino from 'pino';
import { createLithicWebhooks } from '../../adapters/lithic/webhooks.js';
import type { Processor } from '../../adapters/processor.js';
import { createStripeWebhooks } from '../../adapters/stripe/webhooks.js';
import type { Lookups } from '../../src/agents/lookup-cache.js';
import { createMetrics } from '../../src/http/metrics.js';
import type { Metrics } from '../../src/http/metrics.js';
import type { Ledger } from '../../src/ledger/ledger.js';
import { parseFailMode } from '../../src/webhooks/fail-mode.js';
import { createWebhookHandler } from '../../src/webhooks/routes.js';
import { testKnex } from '../helpers/gateway.js';
import { lithicAsaRequest, lithicSecret, signLithic } from '../helpers/lithic-events.js';
import { signStripe, stripeAuthorizationRequest } from '../helpers/processor-events.js';

const STRIPE_SECRET = 'whsec_security_events_0123456789';
const LITHIC_SECRET = lithicSecret();

let knex: Knex;
let server: http.Server;
let url: string;
let metrics: Metrics;
let clock = Date.parse('2026-11-23T09:00:00Z');
const logLines: { security_event?: string; msg: string }[] = [];

before(async () => {
  knex = testKnex(2);
  metrics = createMetrics();
  const logger = pino({ level: 'warn' }, new Writable({
    write(chunk: Buffer, _encoding, done) {
      logLines.push(JSON.parse(chunk.toString()) as { security_event?: string; msg: string });
      done();
    },
  }));
  const processors = {
    stripe: createStripeWebhooks({ secrets: [STRIPE_SECRET] }) as Processor,
    lithic: createLithicWebhooks({ secrets: [LITHIC_SECRET] }) as Processor,
  };
  // Forged requests are refused before any look-up or decision: those parts are never reached.
  const handler = createWebhookHandler({
    knex, logger, metrics, processors, lookups: {} as Lookups, ledger: {} as Ledger,
    deadlineMs: 1500, failMode: parseFailMode('decline'), now: () => new Date(clock),
  });
  server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  await new Promise((resolve) => server.close(resolve));
  await knex.destroy();
});

/** A Stripe event signed with a secret that is not ours; the answer's status and request id. */
async function forgedStripe(): Promise<{ status: number; requestId: string }> {
  const body = JSON.stringify(stripeAuthorizationRequest({ amount: 100 }));
  const res = await fetch(`${url}/webhooks/stripe`, { method: 'POST', headers: { 'content-type': 'application/json', 'stripe-signature': signStripe(body, 'whsec_someone_else') }, body });
  await res.arrayBuffer();
  return { status: res.status, requestId: res.headers.get('request-id') ?? '' };
}

async function forgedLithic(): Promise<{ status: number; requestId: string }> {
  const body = JSON.stringify(lithicAsaRequest({ amount: 100 }));
  const res = await fetch(`${url}/webhooks/lithic`, { method: 'POST', headers: { 'content-type': 'application/json', ...signLithic(body, lithicSecret() /* a new secret: not ours */) }, body });
  await res.arrayBuffer();
  return { status: res.status, requestId: res.headers.get('request-id') ?? '' };
}

/** The stored security events of these requests (other test files share the table). */
async function storedFor(requestIds: string[]) {
  const rows = await knex('security_events').where({ type: 'webhook_signature_invalid' }).whereRaw(`details->>'request_id' = any(?)`, [requestIds]).orderBy('id');
  return rows.map((r: { processor: string; details: { request_id: string; suppressed_since_last: number } | string }) => {
    const details = typeof r.details === 'string' ? (JSON.parse(r.details) as { request_id: string; suppressed_since_last: number }) : r.details;
    return { processor: r.processor, requestId: details.request_id, suppressed: details.suppressed_since_last };
  });
}

async function rejections(processor: string): Promise<number> {
  const metric = await metrics.registry.getSingleMetric('spendgate_webhook_signature_failures_total')?.get();
  return metric?.values.find((v) => v.labels.processor === processor)?.value ?? 0;
}

describe('forged webhooks: the rate-limited security event', () => {
  test('when 20 forged Stripe events arrive within a minute, then all get 400 and the metric counts 20, but one event is stored and logged', async () => {
    const answers = [];
    for (let i = 0; i < 20; i++) answers.push(await forgedStripe());
    assert.deepEqual(new Set(answers.map((a) => a.status)), new Set([400]));
    assert.equal(await rejections('stripe'), 20);
    const stored = await storedFor(answers.map((a) => a.requestId));
    assert.deepEqual(stored, [{ processor: 'stripe', requestId: answers[0]?.requestId, suppressed: 0 }]);
    assert.equal(logLines.filter((l) => l.security_event === 'webhook_signature_invalid').length, 1);
  });

  test('when a forged Lithic event arrives in the same minute, then it is stored: the limit is per processor', async () => {
    const answer = await forgedLithic();
    assert.equal(answer.status, 400);
    assert.equal(await rejections('lithic'), 1);
    assert.deepEqual(await storedFor([answer.requestId]), [{ processor: 'lithic', requestId: answer.requestId, suppressed: 0 }]);
  });

  test('when the minute has passed, then the next forged Stripe event is stored with the count suppressed since the last', async () => {
    clock += 59_000;
    const inside = await forgedStripe();
    assert.deepEqual(await storedFor([inside.requestId]), [], 'still within the minute: suppressed');
    clock += 1_000;
    const next = await forgedStripe();
    assert.equal(next.status, 400);
    assert.deepEqual(await storedFor([next.requestId]), [{ processor: 'stripe', requestId: next.requestId, suppressed: 20 }]);
    assert.equal(await rejections('stripe'), 22);
    assert.equal(logLines.filter((l) => l.security_event === 'webhook_signature_invalid').length, 3);
  });
});
