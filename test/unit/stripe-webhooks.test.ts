import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import Stripe from 'stripe';
import { createStripeWebhooks } from '../../adapters/stripe/webhooks.js';
import { PayloadError, SignatureError } from '../../adapters/processor.js';
import type { AuthorizationRequest, AuthorizationUpdate, TransactionUpdate, WebhookEvent } from '../../adapters/processor.js';
import { signStripe, stripeAuthorizationEvent, stripeAuthorizationRequest, stripeTransactionEvent } from '../helpers/processor-events.js';
import type { StripeEventBody } from '../helpers/processor-events.js';

const SECRET = 'whsec_current_0123456789';
const OLD_SECRET = 'whsec_previous_9876543210';
const adapter = createStripeWebhooks({ secrets: [SECRET, OLD_SECRET] });

function deliver(event: StripeEventBody | string, secret = SECRET, timestamp?: number): WebhookEvent {
  const body = typeof event === 'string' ? event : JSON.stringify(event);
  return adapter.readWebhook(Buffer.from(body), { 'stripe-signature': signStripe(body, secret, timestamp) });
}

function request(event: StripeEventBody): AuthorizationRequest {
  const read = deliver(event);
  assert.equal(read.kind, 'authorization_request');
  return read.request;
}

function updates(event: StripeEventBody): (AuthorizationUpdate | TransactionUpdate)[] {
  const read = deliver(event);
  assert.equal(read.kind, 'settlement');
  assert.equal(read.eventId, event.id);
  return read.updates;
}

describe('stripe webhooks: signature', () => {
  const event = stripeAuthorizationRequest();
  const body = JSON.stringify(event);

  test('when the signature is made with the current secret, then the event is read', () => {
    assert.equal(deliver(event).kind, 'authorization_request');
  });

  test('when the signature is made with the previous (rotated) secret, then the event is read', () => {
    assert.equal(deliver(event, OLD_SECRET).kind, 'authorization_request');
  });

  test('when the header carries several v1 signatures and one matches, then the event is read', () => {
    const t = Math.floor(Date.now() / 1000);
    const good = signStripe(body, SECRET, t).split(',v1=')[1];
    const header = `t=${t},v1=${'0'.repeat(64)},v1=${good}`;
    assert.equal(adapter.readWebhook(Buffer.from(body), { 'stripe-signature': header }).kind, 'authorization_request');
  });

  test('when the signature is made with another secret, then it is a SignatureError that never names a secret', () => {
    assert.throws(
      () => deliver(event, 'whsec_someone_else'),
      (e: unknown) => e instanceof SignatureError && !e.message.includes(SECRET) && !e.message.includes(OLD_SECRET) && !e.message.includes('whsec_'),
    );
  });

  test('when one byte of the body changes after signing, then it is a SignatureError', () => {
    const header = signStripe(body, SECRET);
    const tampered = body.replace('"amount":700', '"amount":70');
    assert.notEqual(tampered, body);
    assert.throws(() => adapter.readWebhook(Buffer.from(tampered), { 'stripe-signature': header }), SignatureError);
  });

  test('when the body is re-serialized (pretty-printed) after signing, then it is a SignatureError', () => {
    const header = signStripe(body, SECRET);
    assert.throws(() => adapter.readWebhook(Buffer.from(JSON.stringify(event, null, 2)), { 'stripe-signature': header }), SignatureError);
  });

  test('when the signature is 301 s old, then it is a SignatureError saying so', () => {
    const old = Math.floor(Date.now() / 1000) - 301;
    assert.throws(() => deliver(event, SECRET, old), (e: unknown) => e instanceof SignatureError && /older than 300/.test(e.message));
  });

  test('when the signature is 290 s old, then the event is read', () => {
    assert.equal(deliver(event, SECRET, Math.floor(Date.now() / 1000) - 290).kind, 'authorization_request');
  });

  test('when `now` is given, then the age is measured from it', () => {
    const t = 1_700_000_000;
    const header = signStripe(body, SECRET, t);
    assert.equal(adapter.readWebhook(Buffer.from(body), { 'stripe-signature': header }, new Date((t + 299) * 1000)).kind, 'authorization_request');
    assert.throws(() => adapter.readWebhook(Buffer.from(body), { 'stripe-signature': header }, new Date((t + 301) * 1000)), SignatureError);
  });

  test('when the Stripe-Signature header is missing, then it is a SignatureError', () => {
    assert.throws(() => adapter.readWebhook(Buffer.from(body), {}), /Stripe-Signature header is missing/);
  });

  for (const garbled of ['garbage', 't=abc,v1=zz', `t=${Math.floor(Date.now() / 1000)}`, 'v1=deadbeef']) {
    test(`when the header is "${garbled}", then it is a SignatureError`, () => {
      assert.throws(() => adapter.readWebhook(Buffer.from(body), { 'stripe-signature': garbled }), SignatureError);
    });
  }

  test('when the header name has other capitals, then it is still found', () => {
    assert.equal(adapter.readWebhook(Buffer.from(body), { 'Stripe-Signature': signStripe(body, SECRET) }).kind, 'authorization_request');
  });

  test('when no secret is configured, then every delivery is a SignatureError', () => {
    const unconfigured = createStripeWebhooks({ secrets: [] });
    assert.throws(() => unconfigured.readWebhook(Buffer.from(body), { 'stripe-signature': signStripe(body, SECRET) }), /no Stripe webhook secret/);
    const blank = createStripeWebhooks({ secrets: [''] });
    assert.throws(() => blank.readWebhook(Buffer.from(body), { 'stripe-signature': signStripe(body, '') }), SignatureError);
  });

  test('when processors.md §1.8 test vector is signed, then the header matches it byte for byte and verifies at its time', () => {
    const vectorBody = '{"id":"evt_test_webhook","object":"event"}';
    const expected = 't=1700000000,v1=d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990';
    assert.equal(signStripe(vectorBody, 'whsec_test_secret', 1_700_000_000), expected);
    assert.equal(createHmac('sha256', 'whsec_test_secret').update(`1700000000.${vectorBody}`).digest('hex'), expected.split('v1=')[1]);
    const vectorAdapter = createStripeWebhooks({ secrets: ['whsec_test_secret'] });
    // Signed, but the object has no type: readable signature, unreadable payload.
    assert.throws(() => vectorAdapter.readWebhook(Buffer.from(vectorBody), { 'stripe-signature': expected }, new Date(1_700_000_100_000)), PayloadError);
    assert.throws(() => vectorAdapter.readWebhook(Buffer.from(vectorBody), { 'stripe-signature': expected }, new Date(1_700_000_400_000)), SignatureError);
  });

  test('when the signed body is not JSON, then it is a PayloadError', () => {
    assert.throws(() => deliver('{"id": "evt_1", '), PayloadError);
    assert.throws(() => deliver('[1,2]'), PayloadError);
  });
});

describe('stripe webhooks: issuing_authorization.request', () => {
  test('when a request arrives, then every field is normalized', () => {
    const event = stripeAuthorizationRequest({
      eventId: 'evt_req_1',
      authorizationId: 'iauth_1',
      cardId: 'ic_1',
      agentId: 'agt_7',
      cardholderId: 'ich_1',
      cardholderMetadata: { agent_id: 'agt_holder', team: 'ops' },
      amount: 4200,
      currency: 'USD',
      merchantAmount: 3900,
      merchantCurrency: 'EUR',
      merchant: { name: 'ACME CLOUD', networkId: 'net_99', category: 'computer_software_stores', mcc: '0763', country: 'de', city: 'BERLIN', url: 'https://acme.test' },
      controllable: true,
      apiVersion: '2025-03-31.basil',
      livemode: true,
      created: 1_767_225_600,
      authorizationMethod: 'online',
      wallet: 'apple_pay',
    });
    const r = request(event);
    assert.deepEqual(r, {
      processor: 'stripe',
      eventId: 'evt_req_1',
      authorizationId: 'iauth_1',
      requestKey: 'iauth_1:0:4200',
      amount: { amount: 4200, currency: 'usd' },
      merchantAmount: { amount: 3900, currency: 'eur' },
      amountControllable: true,
      merchant: { name: 'ACME CLOUD', networkId: 'net_99', category: 'computer_software_stores', mcc: '0763', country: 'DE', city: 'BERLIN', url: 'https://acme.test' },
      card: { id: 'ic_1', metadata: { agent_id: 'agt_7' }, cardholderId: 'ich_1', cardholderMetadata: { agent_id: 'agt_holder', team: 'ops' }, status: 'active' },
      wallet: 'apple_pay',
      method: 'online',
      livemode: true,
      apiVersion: '2025-03-31.basil',
      createdAt: new Date(1_767_225_600_000),
    });
  });

  test('when the card is inactive or canceled, then the snapshot says frozen or canceled', () => {
    assert.equal(request(stripeAuthorizationRequest({ cardStatus: 'inactive' })).card.status, 'frozen');
    assert.equal(request(stripeAuthorizationRequest({ cardStatus: 'canceled' })).card.status, 'canceled');
  });

  test('when the request is not amount-controllable, then amountControllable is false', () => {
    assert.equal(request(stripeAuthorizationRequest({ controllable: false })).amountControllable, false);
  });

  test('when the event has no api_version, then apiVersion is null', () => {
    assert.equal(request(stripeAuthorizationRequest({ apiVersion: null })).apiVersion, null);
  });

  test('when the same request is delivered twice, then both carry the same requestKey', () => {
    const event = stripeAuthorizationRequest({ authorizationId: 'iauth_same', amount: 500 });
    assert.equal(request(event).requestKey, request(structuredClone(event)).requestKey);
  });

  test('when an incremental request arrives on the same authorization, then its requestKey differs', () => {
    const first = request(stripeAuthorizationRequest({ authorizationId: 'iauth_inc', amount: 500, requestHistoryLength: 0 }));
    const sameAmount = request(stripeAuthorizationRequest({ authorizationId: 'iauth_inc', amount: 500, requestHistoryLength: 1 }));
    const moreMoney = request(stripeAuthorizationRequest({ authorizationId: 'iauth_inc', amount: 800, requestHistoryLength: 1 }));
    assert.equal(first.authorizationId, sameAmount.authorizationId);
    assert.equal(new Set([first.requestKey, sameAmount.requestKey, moreMoney.requestKey]).size, 3);
  });

  test('when the card has no metadata, then the card metadata is empty and the cardholder still named', () => {
    const r = request(stripeAuthorizationRequest({ agentId: null, cardholderId: 'ich_x' }));
    assert.deepEqual(r.card.metadata, {});
    assert.equal(r.card.cardholderId, 'ich_x');
  });

  test('when pending_request is null on a request, then it is a PayloadError', () => {
    const event = stripeAuthorizationRequest();
    event.data.object.pending_request = null;
    assert.throws(() => deliver(event), PayloadError);
  });

  test('when the pending amount is not an integer, then it is a PayloadError', () => {
    const event = stripeAuthorizationRequest();
    (event.data.object.pending_request as Record<string, unknown>).amount = '700';
    assert.throws(() => deliver(event), /pending_request.amount/);
  });
});

describe('stripe webhooks: authorization created/updated', () => {
  test('when an approved authorization is created, then one pending AuthorizationUpdate holds its amount', () => {
    const event = stripeAuthorizationEvent('issuing_authorization.created', {
      eventId: 'evt_c1', authorizationId: 'iauth_c1', cardId: 'ic_c1', agentId: 'agt_c', amount: 2500, currency: 'usd', created: 1_767_225_700,
      merchant: { name: 'ROCKET', mcc: '4121', country: 'us' },
    });
    const [update, ...rest] = updates(event);
    assert.equal(rest.length, 0);
    assert.deepEqual({ ...update, merchant: undefined, card: undefined }, {
      kind: 'authorization', processor: 'stripe', eventId: 'evt_c1', authorizationId: 'iauth_c1', cardId: 'ic_c1', status: 'pending', approved: true,
      amount: { amount: 2500, currency: 'usd' }, occurredAt: new Date(1_767_225_700_000), merchant: undefined, card: undefined,
    });
    assert.equal(update?.merchant.mcc, '4121');
    assert.equal(update?.merchant.country, 'US');
    assert.deepEqual(update?.card.metadata, { agent_id: 'agt_c' });
  });

  for (const status of ['closed', 'reversed', 'expired'] as const) {
    test(`when an approved authorization is updated to ${status}, then the status is ${status}`, () => {
      const [update] = updates(stripeAuthorizationEvent('issuing_authorization.updated', { status, amount: status === 'reversed' ? 0 : 900 }));
      assert.equal(update?.kind === 'authorization' && update.status, status);
    });
  }

  test('when the authorization was not approved, then the status is declined whatever Stripe says', () => {
    const [update] = updates(stripeAuthorizationEvent('issuing_authorization.created', { approved: false, status: 'closed', amount: 700 }));
    assert.ok(update?.kind === 'authorization');
    assert.equal(update.status, 'declined');
    assert.equal(update.approved, false);
  });

  test('when the status is unknown, then it is a PayloadError', () => {
    const event = stripeAuthorizationEvent('issuing_authorization.updated');
    event.data.object.status = 'mystery';
    assert.throws(() => deliver(event), PayloadError);
  });
});

describe('stripe webhooks: issuing_transaction', () => {
  test('when a capture is created, then one positive capture TransactionUpdate is read', () => {
    const event = stripeTransactionEvent({ eventId: 'evt_t1', transactionId: 'ipi_1', type: 'capture', amount: 1234, authorizationId: 'iauth_t1', cardId: 'ic_t1', cardholderId: 'ich_t1', created: 1_767_226_000 });
    assert.equal(event.data.object.amount, -1234);
    const [update, ...rest] = updates(event);
    assert.equal(rest.length, 0);
    assert.deepEqual({ ...update, merchant: undefined }, {
      kind: 'transaction', processor: 'stripe', eventId: 'evt_t1', transactionId: 'ipi_1', authorizationId: 'iauth_t1', cardId: 'ic_t1', type: 'capture',
      amount: { amount: 1234, currency: 'usd' }, occurredAt: new Date(1_767_226_000_000), merchant: undefined,
      card: { id: 'ic_t1', metadata: {}, cardholderId: 'ich_t1', cardholderMetadata: {}, status: null },
    });
    assert.equal(update?.merchant.name, 'Rocket Rides');
  });

  test('when a refund is created, then its positive Stripe amount stays positive and the type is refund', () => {
    const event = stripeTransactionEvent({ type: 'refund', amount: 300 });
    assert.equal(event.data.object.amount, 300);
    const [update] = updates(event);
    assert.ok(update?.kind === 'transaction');
    assert.equal(update.type, 'refund');
    assert.deepEqual(update.amount, { amount: 300, currency: 'usd' });
  });

  test('when a refund is unlinked, then authorizationId is null', () => {
    const [update] = updates(stripeTransactionEvent({ type: 'refund', authorizationId: null }));
    assert.equal(update?.kind === 'transaction' && update.authorizationId, null);
  });

  test('when the transaction is updated, then it is read like a created one', () => {
    const [update] = updates(stripeTransactionEvent({ eventType: 'issuing_transaction.updated', transactionId: 'ipi_u' }));
    assert.equal(update?.kind === 'transaction' && update.transactionId, 'ipi_u');
  });
});

describe('stripe webhooks: other events', () => {
  for (const type of ['issuing_card.updated', 'payment_intent.succeeded', 'issuing_dispute.created']) {
    test(`when a ${type} event arrives, then it is ignored with its id and type`, () => {
      const event = { ...stripeAuthorizationRequest(), id: 'evt_other', type };
      assert.deepEqual(deliver(event), { kind: 'ignored', eventId: 'evt_other', type });
    });
  }
});

describe('stripe webhooks: formatAnswer', () => {
  const base = request(stripeAuthorizationRequest({ amount: 1000, controllable: true, apiVersion: '2025-03-31.basil' }));

  test('when approving, then it is 200 with the event version, JSON, approved and string metadata', () => {
    const reply = adapter.formatAnswer(base, { approved: true, reason: 'approved', metadata: { check_id: 'chk_1' } });
    assert.deepEqual(reply, {
      status: 200,
      headers: { 'Stripe-Version': '2025-03-31.basil', 'Content-Type': 'application/json' },
      body: { approved: true, metadata: { check_id: 'chk_1' } },
    });
  });

  test('when declining, then approved is false and no amount is sent', () => {
    const reply = adapter.formatAnswer(base, { approved: false, partialAmount: 500, reason: 'max_amount', metadata: { reason: 'max_amount' } });
    assert.deepEqual(reply.body, { approved: false, metadata: { reason: 'max_amount' } });
  });

  test('when approving part of a controllable request, then the amount is sent', () => {
    const reply = adapter.formatAnswer(base, { approved: true, partialAmount: 400, reason: 'partial', metadata: {} });
    assert.deepEqual(reply.body, { approved: true, amount: 400, metadata: {} });
  });

  test('when the partial amount is the whole request, then no amount is sent', () => {
    assert.deepEqual(adapter.formatAnswer(base, { approved: true, partialAmount: 1000, reason: 'ok', metadata: {} }).body, { approved: true, metadata: {} });
  });

  test('when approving part of a request Stripe cannot shorten, then it declines rather than let the whole amount through', () => {
    const fixed = { ...base, amountControllable: false };
    assert.deepEqual(adapter.formatAnswer(fixed, { approved: true, partialAmount: 400, reason: 'partial', metadata: {} }).body, { approved: false, metadata: {} });
  });

  test('when the request had no api_version, then the SDK pinned version is sent', () => {
    const reply = adapter.formatAnswer({ ...base, apiVersion: null }, { approved: true, reason: 'ok', metadata: {} });
    assert.equal(reply.headers['Stripe-Version'], Stripe.API_VERSION);
  });

  test('when metadata is beyond Stripe limits, then keys over 40 chars are dropped and values cut to 500', () => {
    const reply = adapter.formatAnswer(base, { approved: true, reason: 'ok', metadata: { ['k'.repeat(41)]: 'x', long: 'v'.repeat(600) } });
    assert.deepEqual(reply.body, { approved: true, metadata: { long: 'v'.repeat(500) } });
  });
});
