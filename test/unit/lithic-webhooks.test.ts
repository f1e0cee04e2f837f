import { describe, mock, test } from 'node:test';
import assert from 'node:assert/strict';
import { createLithicWebhooks, lithicDeclineResult } from '../../adapters/lithic/webhooks.js';
import { PayloadError, SignatureError } from '../../adapters/processor.js';
import type { AuthorizationRequest, AuthorizationUpdate, SettlementUpdate, WebhookEvent } from '../../adapters/processor.js';
import { lithicAsaRequest, lithicSecret, lithicTransactionEvent, signLithic } from '../helpers/processor-events.js';

const SECRET = lithicSecret();
const OLD_SECRET = lithicSecret();
const adapter = createLithicWebhooks({ secrets: [SECRET, OLD_SECRET] });

function deliver(payload: object | string, secret = SECRET, sign: { id?: string; timestamp?: number } = {}): WebhookEvent {
  const body = typeof payload === 'string' ? payload : JSON.stringify(payload);
  return adapter.readWebhook(Buffer.from(body), { ...signLithic(body, secret, sign) });
}

function request(payload: object): AuthorizationRequest {
  const read = deliver(payload);
  assert.equal(read.kind, 'authorization_request');
  return read.request;
}

function updates(payload: object, id = 'msg_settle'): SettlementUpdate[] {
  const read = deliver(payload, SECRET, { id });
  assert.equal(read.kind, 'settlement');
  assert.equal(read.eventId, id);
  return read.updates;
}

describe('lithic webhooks: signature', () => {
  const body = JSON.stringify(lithicAsaRequest());
  const now = () => Math.floor(Date.now() / 1000);

  test('when the signature is made with the current secret, then the request is read', () => {
    assert.equal(deliver(body).kind, 'authorization_request');
  });

  test('when the signature is made with the previous (rotated) secret, then the request is read', () => {
    assert.equal(deliver(body, OLD_SECRET).kind, 'authorization_request');
  });

  test('when the header lists a wrong and a right signature, then the request is read', () => {
    const headers = signLithic(body, SECRET);
    headers['webhook-signature'] = `v1,${Buffer.alloc(32).toString('base64')} ${headers['webhook-signature']}`;
    assert.equal(adapter.readWebhook(Buffer.from(body), { ...headers }).kind, 'authorization_request');
  });

  test('when the signature is made with another secret, then it is a SignatureError that never names a secret', () => {
    assert.throws(
      () => deliver(body, lithicSecret()),
      (e: unknown) => e instanceof SignatureError && !e.message.includes(SECRET.slice(6)) && !e.message.includes('whsec_'),
    );
  });

  test('when the body changes after signing, then it is a SignatureError', () => {
    const headers = signLithic(body, SECRET);
    const tampered = body.replace('"amount":700', '"amount":7000');
    assert.notEqual(tampered, body);
    assert.throws(() => adapter.readWebhook(Buffer.from(tampered), { ...headers }), SignatureError);
  });

  test('when the webhook-id is changed after signing, then it is a SignatureError', () => {
    const headers = signLithic(body, SECRET, { id: 'msg_a' });
    assert.throws(() => adapter.readWebhook(Buffer.from(body), { ...headers, 'webhook-id': 'msg_b' }), SignatureError);
  });

  test('when the timestamp is 301 s old, then it is a SignatureError', () => {
    assert.throws(() => deliver(body, SECRET, { timestamp: now() - 301 }), SignatureError);
  });

  test('when the timestamp is 301 s in the future, then it is a SignatureError', () => {
    assert.throws(() => deliver(body, SECRET, { timestamp: now() + 301 }), SignatureError);
  });

  test('when the timestamp is 290 s old, then the request is read', () => {
    assert.equal(deliver(body, SECRET, { timestamp: now() - 290 }).kind, 'authorization_request');
  });

  for (const name of ['webhook-id', 'webhook-timestamp', 'webhook-signature'] as const) {
    test(`when the ${name} header is missing, then it is a SignatureError`, () => {
      const headers: Record<string, string> = { ...signLithic(body, SECRET) };
      delete headers[name];
      assert.throws(() => adapter.readWebhook(Buffer.from(body), headers), (e: unknown) => e instanceof SignatureError && e.message.includes(name));
    });
  }

  test('when the signature header is garbled, then it is a SignatureError', () => {
    const headers = { ...signLithic(body, SECRET), 'webhook-signature': 'not a signature' };
    assert.throws(() => adapter.readWebhook(Buffer.from(body), headers), SignatureError);
  });

  test('when no secret is configured, then every delivery is a SignatureError', () => {
    const unconfigured = createLithicWebhooks({ secrets: [] });
    assert.throws(() => unconfigured.readWebhook(Buffer.from(body), { ...signLithic(body, SECRET) }), /no Lithic webhook secret/);
  });

  test('when a configured secret is not base64, then it never verifies but the others still do', () => {
    const mixed = createLithicWebhooks({ secrets: ['whsec_%%%not-base64%%%', SECRET] });
    assert.equal(mixed.readWebhook(Buffer.from(body), { ...signLithic(body, SECRET) }).kind, 'authorization_request');
  });

  test('when processors.md §3.5 test vector is signed, then the signature matches it and verifies at its time', (t) => {
    const secret = 'whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=';
    const vectorBody = '{"event_type":"card_authorization.approval_request","token":"00000000-0000-0000-0000-000000000001"}';
    const headers = signLithic(vectorBody, secret, { id: 'msg_2Lp0fAkU8dVY1m2RyK3dYp', timestamp: 1_700_000_000 });
    assert.equal(headers['webhook-signature'], 'v1,Kq8uj+cdy1pOzGAzjaYFOMP+or4BP7KCyt830RIWlQE=');
    const vectorAdapter = createLithicWebhooks({ secrets: [secret] });
    t.after(() => mock.timers.reset());
    mock.timers.enable({ apis: ['Date'], now: 1_700_000_100_000 });
    // Signed, but the body is not a whole CardAuthorization: readable signature, unreadable payload.
    assert.throws(() => vectorAdapter.readWebhook(Buffer.from(vectorBody), { ...headers }), PayloadError);
    mock.timers.setTime(1_700_000_400_000);
    assert.throws(() => vectorAdapter.readWebhook(Buffer.from(vectorBody), { ...headers }), SignatureError);
  });

  test('when the signed body is not JSON, then it is a PayloadError', () => {
    assert.throws(() => deliver('{"token":'), PayloadError);
  });

  test('when a body that is not JSON is signed with another secret, then it is still a SignatureError', () => {
    assert.throws(() => deliver('{"token":', lithicSecret()), SignatureError);
  });
});

describe('lithic webhooks: ASA request', () => {
  const created = new Date('2026-11-20T10:00:00.000Z');

  test('when an ASA request arrives, then every field is normalized', () => {
    const asa = lithicAsaRequest({
      token: 'tok-1', eventToken: 'evt-tok-1', cardToken: 'card-1', cardState: 'OPEN', cardMemo: 'agent_id=agt_9',
      amount: 4200, currency: 'USD', merchantAmount: 3900, merchantCurrency: 'EUR',
      merchant: { descriptor: 'ACME CLOUD', acceptorId: 'acc-1', mcc: '0763', city: 'BERLIN', country: 'DEU' },
      partialApprovalCapable: true, panEntryMode: 'ECOMMERCE', walletType: 'APPLE_PAY', created,
    });
    const read = deliver(asa, SECRET, { id: 'msg_asa_1' });
    assert.equal(read.kind, 'authorization_request');
    assert.deepEqual(read.request, {
      processor: 'lithic',
      eventId: 'msg_asa_1',
      authorizationId: 'tok-1',
      requestKey: 'tok-1:evt-tok-1:4200',
      amount: { amount: 4200, currency: 'usd' },
      merchantAmount: { amount: 3900, currency: 'eur' },
      amountControllable: true,
      merchant: { name: 'ACME CLOUD', networkId: 'acc-1', category: null, mcc: '0763', country: 'DE', city: 'BERLIN', url: null },
      card: { id: 'card-1', metadata: {}, cardholderId: null, cardholderMetadata: {}, status: 'active' },
      wallet: 'apple_pay',
      method: 'online',
      livemode: true,
      apiVersion: null,
      createdAt: created,
    });
  });

  test('when the request comes as the approval_request event, then it is read the same way', () => {
    const asa = lithicAsaRequest({ token: 'tok-ev', amount: 100, asEvent: true });
    assert.equal(asa.event_type, 'card_authorization.approval_request');
    assert.equal(request(asa).authorizationId, 'tok-ev');
  });

  for (const [state, status] of [['OPEN', 'active'], ['PAUSED', 'frozen'], ['CLOSED', 'canceled'], ['PENDING_ACTIVATION', 'pending'], ['PENDING_FULFILLMENT', 'pending']] as const) {
    test(`when the card is ${state}, then the snapshot says ${status}`, () => {
      assert.equal(request(lithicAsaRequest({ cardState: state })).card.status, status);
    });
  }

  for (const [alpha3, alpha2] of [['USA', 'US'], ['GBR', 'GB'], ['QZZ', 'XK'], ['ZZZ', null], ['', null]] as const) {
    test(`when the merchant country is "${alpha3}", then the neutral country is ${alpha2}`, () => {
      assert.equal(request(lithicAsaRequest({ merchant: { country: alpha3 } })).merchant.country, alpha2);
    });
  }

  test('when the terminal cannot take a partial approval, then amountControllable is false', () => {
    assert.equal(request(lithicAsaRequest({ partialApprovalCapable: false })).amountControllable, false);
  });

  test('when only the deprecated flat amount fields are sent, then they are used', () => {
    const asa: Record<string, unknown> = { ...lithicAsaRequest({ amount: 1500, currency: 'GBP', merchantAmount: 1700, merchantCurrency: 'EUR' }) };
    delete asa.amounts;
    const r = request(asa);
    assert.deepEqual(r.amount, { amount: 1500, currency: 'gbp' });
    assert.deepEqual(r.merchantAmount, { amount: 1700, currency: 'eur' });
  });

  test('when the same request is delivered twice, then both carry the same requestKey', () => {
    const asa = lithicAsaRequest({ token: 'tok-twice', amount: 500 });
    assert.equal(request(asa).requestKey, request(structuredClone(asa)).requestKey);
  });

  test('when an incremental request reuses the token, then its requestKey differs', () => {
    const first = request(lithicAsaRequest({ token: 'tok-inc', eventToken: 'e1', amount: 500 }));
    const next = request(lithicAsaRequest({ token: 'tok-inc', eventToken: 'e2', amount: 500 }));
    const noEventToken = request(lithicAsaRequest({ token: 'tok-inc', amount: 800 }));
    assert.equal(first.authorizationId, next.authorizationId);
    assert.equal(new Set([first.requestKey, next.requestKey, noEventToken.requestKey]).size, 3);
  });

  test('when the card is missing, then it is a PayloadError', () => {
    const asa: Record<string, unknown> = { ...lithicAsaRequest() };
    delete asa.card;
    assert.throws(() => deliver(asa), /card/);
  });

  test('when livemode is configured false (sandbox), then requests say so', () => {
    const sandbox = createLithicWebhooks({ secrets: [SECRET], livemode: false });
    const body = JSON.stringify(lithicAsaRequest());
    const read = sandbox.readWebhook(Buffer.from(body), { ...signLithic(body, SECRET) });
    assert.equal(read.kind === 'authorization_request' && read.request.livemode, false);
  });
});

describe('lithic webhooks: card_transaction.updated', () => {
  const created = new Date('2026-11-20T10:00:00.000Z');
  const updated = new Date('2026-11-20T11:00:00.000Z');

  function authorization(list: SettlementUpdate[]): AuthorizationUpdate {
    const first = list[0];
    assert.ok(first?.kind === 'authorization');
    return first;
  }

  test('when an approved transaction is pending, then one pending update holds the pending amount', () => {
    const list = updates(lithicTransactionEvent({ token: 'tx-1', cardToken: 'card-1', status: 'PENDING', amount: 900, holdAmount: 1000, created, updated, merchant: { country: 'CAN', mcc: '5812' } }), 'msg_p');
    assert.equal(list.length, 1);
    assert.deepEqual(authorization(list), {
      kind: 'authorization', processor: 'lithic', eventId: 'msg_p', authorizationId: 'tx-1', cardId: 'card-1', status: 'pending', approved: true,
      amount: { amount: 1000, currency: 'usd' }, occurredAt: updated,
      merchant: { name: 'ACME CLOUD', networkId: '174030075991', category: null, mcc: '5812', country: 'CA', city: 'NEW YORK', url: null },
      card: { id: 'card-1', metadata: {}, cardholderId: null, cardholderMetadata: {}, status: null },
    });
  });

  for (const [status, expected] of [['DECLINED', 'declined'], ['VOIDED', 'reversed'], ['EXPIRED', 'expired'], ['SETTLED', 'closed']] as const) {
    test(`when the transaction is ${status}, then the authorization is ${expected}`, () => {
      const update = authorization(updates(lithicTransactionEvent({ status, events: [] })));
      assert.equal(update.status, expected);
      assert.equal(update.approved, status !== 'DECLINED');
    });
  }

  test('when a pending transaction was not approved, then it is declined', () => {
    const update = authorization(updates(lithicTransactionEvent({ status: 'PENDING', result: 'CARD_PAUSED' })));
    assert.equal(update.status, 'declined');
    assert.equal(update.approved, false);
  });

  test('when a transaction settles with a clearing, then a positive capture with the event token follows the authorization', () => {
    const list = updates(lithicTransactionEvent({
      token: 'tx-s', cardToken: 'card-s', status: 'SETTLED', amount: 1200,
      events: [{ type: 'AUTHORIZATION', amount: 1200, token: 'ev-auth' }, { type: 'CLEARING', amount: 1150, token: 'ev-clear', created: updated }],
    }));
    assert.equal(list.length, 2);
    assert.deepEqual(authorization(list).amount, { amount: 1200, currency: 'usd' });
    const capture = list[1];
    assert.ok(capture?.kind === 'transaction');
    assert.deepEqual(
      { id: capture.transactionId, auth: capture.authorizationId, card: capture.cardId, type: capture.type, amount: capture.amount, at: capture.occurredAt },
      { id: 'ev-clear', auth: 'tx-s', card: 'card-s', type: 'capture', amount: { amount: 1150, currency: 'usd' }, at: updated },
    );
  });

  test('when a transaction has a return, then it is a positive refund whatever the sign Lithic uses', () => {
    const list = updates(lithicTransactionEvent({
      status: 'SETTLED',
      events: [{ type: 'CLEARING', amount: 1000, token: 'ev-c' }, { type: 'RETURN', amount: -400, token: 'ev-r' }, { type: 'RETURN', amount: 100, token: 'ev-r2' }],
    }));
    const moves = list.filter((u) => u.kind === 'transaction');
    assert.deepEqual(moves.map((m) => [m.transactionId, m.type, m.amount.amount]), [['ev-c', 'capture', 1000], ['ev-r', 'refund', 400], ['ev-r2', 'refund', 100]]);
  });

  test('when events other than clearing and return occur, then they add no transaction', () => {
    const list = updates(lithicTransactionEvent({ status: 'VOIDED', events: [{ type: 'AUTHORIZATION', amount: 500 }, { type: 'AUTHORIZATION_REVERSAL', amount: 500 }] }));
    assert.equal(list.length, 1);
  });

  test('when a bare transaction arrives without event_type, then it is still a settlement', () => {
    const txn: Record<string, unknown> = { ...lithicTransactionEvent({ token: 'tx-bare' }) };
    delete txn.event_type;
    assert.equal(authorization(updates(txn)).authorizationId, 'tx-bare');
  });

  test('when the status is unknown, then it is a PayloadError', () => {
    assert.throws(() => deliver({ ...lithicTransactionEvent(), status: 'LIMBO' }), PayloadError);
  });

  for (const type of ['card.created', 'card_authorization.challenge', 'dispute.updated']) {
    test(`when a ${type} event arrives, then it is ignored with its message id and type`, () => {
      assert.deepEqual(deliver({ event_type: type, token: 'x' }, SECRET, { id: 'msg_other' }), { kind: 'ignored', eventId: 'msg_other', type });
    });
  }
});

describe('lithic webhooks: formatAnswer', () => {
  const base = request(lithicAsaRequest({ token: 'tok-ans', amount: 1000, partialApprovalCapable: true }));

  test('when approving, then it is 200 {result: APPROVED, token}', () => {
    assert.deepEqual(adapter.formatAnswer(base, { approved: true, reason: 'approved', metadata: { check_id: 'chk_1' } }), {
      status: 200,
      headers: { 'Content-Type': 'application/json' },
      body: { result: 'APPROVED', token: 'tok-ans' },
    });
  });

  test('when approving part of a capable terminal request, then approved_amount is sent', () => {
    assert.deepEqual(adapter.formatAnswer(base, { approved: true, partialAmount: 600, reason: 'partial', metadata: {} }).body, { result: 'APPROVED', token: 'tok-ans', approved_amount: 600 });
  });

  test('when approving part of a request the terminal cannot shorten, then it declines', () => {
    const fixed = { ...base, amountControllable: false };
    const body = adapter.formatAnswer(fixed, { approved: true, partialAmount: 600, reason: 'max_amount', metadata: {} }).body as { result: string };
    assert.notEqual(body.result, 'APPROVED');
  });

  const declines: [string, string][] = [
    ['card_frozen', 'CARD_PAUSED'],
    ['agent_frozen', 'CARD_PAUSED'],
    ['velocity_limit', 'VELOCITY_EXCEEDED'],
    ['rate_limit', 'VELOCITY_EXCEEDED'],
    ['max_amount', 'VELOCITY_EXCEEDED'],
    ['merchant_blocklist', 'UNAUTHORIZED_MERCHANT'],
    ['category_allowlist', 'UNAUTHORIZED_MERCHANT'],
    ['country_restriction', 'UNAUTHORIZED_MERCHANT'],
    ['currency_allowlist', 'UNAUTHORIZED_MERCHANT'],
    ['unknown_card', 'INSUFFICIENT_FUNDS'],
    ['fail_mode', 'INSUFFICIENT_FUNDS'],
    ['escalate', 'INSUFFICIENT_FUNDS'],
  ];
  for (const [reason, result] of declines) {
    test(`when declining for ${reason}, then the result is ${result}`, () => {
      assert.deepEqual(adapter.formatAnswer(base, { approved: false, reason, metadata: {} }).body, { result, token: 'tok-ans' });
    });
  }

  test('when declining for any reason, then the result is never the literal DECLINED', () => {
    for (const reason of ['', 'block', 'time_window', 'something_new']) assert.notEqual(lithicDeclineResult(reason), 'DECLINED');
  });
});
