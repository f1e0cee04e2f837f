// GET /admin/v1/transactions and `spend transactions`: every money-moving call the gateway decided
// (here card authorizations, answered and then settled by Stripe's events), with its outcome and
// what it counts; the filters, the pagination and the refusal of bad input in the admin shape.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { run } from '../../src/cli/main.js';
import { ADMIN_TOKEN, agentWithPolicy, startTestGateway } from '../helpers/gateway.js';
import type { TestGateway } from '../helpers/gateway.js';
import { signStripe, stripeAuthorizationEvent, stripeAuthorizationRequest, stripeTransactionEvent } from '../helpers/processor-events.js';

const SECRET = 'whsec_test_transactions';

let gw: TestGateway;
let agentId: string;
let key: string;
/** The authorization ids of the four swipes below, by what became of them. */
const auth = { held: 'iauth_tx_held', declined: 'iauth_tx_declined', reversed: 'iauth_tx_reversed', captured: 'iauth_tx_captured' };
let startedAt: Date;

async function postStripe(event: unknown): Promise<{ status: number; body: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const body = JSON.stringify(event);
  const res = await fetch(`${gw.agentUrl}/webhooks/stripe`, { method: 'POST', headers: { 'content-type': 'application/json', 'stripe-signature': signStripe(body, SECRET) }, body });
  return { status: res.status, body: await res.json() };
}

before(async () => {
  gw = await startTestGateway({ STRIPE_WEBHOOK_SECRET: SECRET });
  ({ agentId, key } = await agentWithPolicy(gw, [{ rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 100, currency: 'USD' } }]));
  // Distinct authorization ids per run: the test database is shared between runs.
  for (const name of Object.keys(auth) as (keyof typeof auth)[]) auth[name] = `${auth[name]}_${agentId.slice(-12)}`;
  startedAt = new Date(Date.now() - 1000);
  const cardId = `ic_${agentId.slice(-12)}`;
  const swipe = async (authorizationId: string, amount: number) => {
    await new Promise((resolve) => setTimeout(resolve, 3)); // distinct times: newest first is the order below, reversed
    return (await postStripe(stripeAuthorizationRequest({ agentId, cardId, authorizationId, amount }))).body;
  };
  assert.equal((await swipe(auth.captured, 6000)).approved, true);
  assert.equal((await swipe(auth.reversed, 3000)).approved, true);
  assert.equal((await swipe(auth.declined, 15_000)).approved, false);
  assert.equal((await swipe(auth.held, 4000)).approved, true);
  // $60 captured as $55, then closed; $30 reversed by the merchant; $40 still held.
  for (const event of [
    stripeAuthorizationEvent('issuing_authorization.created', { agentId, cardId, authorizationId: auth.captured, amount: 6000 }),
    stripeTransactionEvent({ cardId, authorizationId: auth.captured, amount: 5500 }),
    stripeAuthorizationEvent('issuing_authorization.updated', { agentId, cardId, authorizationId: auth.captured, amount: 0, status: 'closed' }),
    stripeAuthorizationEvent('issuing_authorization.updated', { agentId, cardId, authorizationId: auth.reversed, amount: 0, status: 'reversed' }),
  ]) assert.equal((await postStripe(event)).status, 200);
  // A question to the check API is not a transaction.
  assert.equal((await gw.agent('POST', '/v1/checks', key, { agent_id: agentId, action_type: 'payment', amount: 10, currency: 'USD', counterparty: 'x' })).status, 200);
});
after(async () => {
  await gw?.stop();
});

async function list(query: string) {
  const res = await gw.admin('GET', `/transactions?agent_id=${agentId}${query}`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body as { data: Record<string, unknown>[]; pagination: { next_cursor: string | null; has_more: boolean; total_count: number } };
}

test('when an agent swiped four times, then each swipe is one transaction, newest first, with its outcome and what it counts now', async () => {
  const { data, pagination } = await list('');
  assert.equal(pagination.total_count, 4, 'the check API question is not listed');
  const rows = data.map((t) => [t.stripe_object_id, t.status, t.amount_minor, t.counted_minor, t.decision, t.reason_code]);
  assert.deepEqual(rows, [
    [auth.held, 'pending', 4000, 4000, 'allow', null],
    [auth.declined, 'declined', 15_000, null, 'block', 'max_amount'],
    [auth.reversed, 'failed', 3000, 0, 'allow', null],
    [auth.captured, 'completed', 6000, 5500, 'allow', null],
  ]);
  const held = data[0] as Record<string, unknown>;
  assert.equal(held.agent_id, agentId);
  assert.equal(held.source, 'stripe');
  assert.equal(held.action, 'card_authorization');
  assert.equal(held.amount, 40);
  assert.equal(held.currency, 'USD');
  assert.match(String(held.check_id), /^chk_/);
});

test('when filtered by status, then only that outcome is listed', async () => {
  const ids = async (status: string) => (await list(`&status=${status}`)).data.map((t) => t.stripe_object_id);
  assert.deepEqual(await ids('completed'), [auth.captured]);
  assert.deepEqual(await ids('declined'), [auth.declined]);
  assert.deepEqual(await ids('pending'), [auth.held]);
  assert.deepEqual(await ids('failed'), [auth.reversed]);
  assert.deepEqual(await ids('unknown'), []);
});

test('when filtered by time, then from is inclusive, to exclusive, and a date means midnight UTC', async () => {
  const total = async (query: string) => (await list(query)).pagination.total_count;
  assert.equal(await total(`&from=${encodeURIComponent(startedAt.toISOString())}`), 4);
  assert.equal(await total(`&to=${encodeURIComponent(startedAt.toISOString())}`), 0);
  const tomorrow = new Date(Date.now() + 86_400_000).toISOString().slice(0, 10);
  assert.equal(await total(`&from=${tomorrow}`), 0);
  assert.equal(await total(`&to=${tomorrow}`), 4);
  // An offset is read as written: the same instant two hours ahead in +02:00.
  const local = new Date(startedAt.getTime() + 2 * 3_600_000).toISOString().replace('Z', '+02:00');
  assert.equal(await total(`&from=${encodeURIComponent(local)}`), 4);
  const newest = (await list('')).data[0] as { created_at: string };
  assert.equal(await total(`&from=${encodeURIComponent(newest.created_at)}`), 1, 'from includes its own instant');
  assert.equal(await total(`&to=${encodeURIComponent(newest.created_at)}`), 3, 'to excludes its own instant');
});

test('when read two at a time, then the cursor walks every transaction once, in order', async () => {
  const first = await list('&limit=2');
  assert.equal(first.pagination.has_more, true);
  assert.equal(first.pagination.total_count, 4);
  const second = await list(`&limit=2&cursor=${encodeURIComponent(first.pagination.next_cursor as string)}`);
  assert.equal(second.pagination.has_more, false);
  assert.equal(second.pagination.next_cursor, null);
  assert.deepEqual([...first.data, ...second.data].map((t) => t.stripe_object_id), [auth.held, auth.declined, auth.reversed, auth.captured]);
});

test('when the query is bad, then 400 in the admin shape names the parameter', async () => {
  for (const [query, param] of [
    ['status=settled', 'status'],
    ['from=2026-13-01', 'from'],
    ['to=yesterday', 'to'],
    ['limit=0', 'limit'],
    ['limit=101', 'limit'],
    ['cursor=not-a-cursor', 'cursor'],
    ['agent=x', 'agent'],
  ] as const) {
    const res = await gw.admin('GET', `/transactions?${query}`);
    assert.equal(res.status, 400, query);
    assert.equal(typeof res.body.error.code, 'string', query);
    assert.match(res.body.error.request_id, /^req_/, query);
    assert.match(JSON.stringify(res.body.error), new RegExp(param), `${query}: ${JSON.stringify(res.body.error)}`);
  }
  const unauthenticated = await fetch(`${gw.adminUrl}/admin/v1/transactions`);
  assert.equal(unauthenticated.status, 401);
});

async function spend(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await run(args, {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env: { SPEND_ADMIN_URL: gw.adminUrl, SPEND_ADMIN_TOKEN: ADMIN_TOKEN },
    cwd: process.cwd(),
  });
  return { code, stdout, stderr };
}

test('when an operator runs spend transactions, then the table shows the amount asked and the amount counted', async () => {
  const completed = await spend(['transactions', '--agent', agentId, '--status', 'completed', '--from', startedAt.toISOString().slice(0, 10)]);
  assert.equal(completed.code, 0, completed.stderr);
  assert.match(completed.stdout, /Amount\s*│\s*Counted/);
  const row = completed.stdout.split('\n').find((line) => line.includes(auth.captured)) ?? '';
  assert.match(row, /60\.00 USD\s*│\s*55\.00 USD/);
  assert.match(row, /completed/);
  assert.match(completed.stdout, /1 of 1 transaction\./);
  assert.doesNotMatch(completed.stdout, new RegExp(auth.held));

  const declined = await spend(['transactions', '--agent', agentId, '--status', 'declined']);
  const declinedRow = declined.stdout.split('\n').find((line) => line.includes(auth.declined)) ?? '';
  assert.match(declinedRow, /150\.00 USD\s*│\s*-\s*│/, 'nothing counted for a declined swipe');
  assert.match(declinedRow, /max_amount/);

  const json = await spend(['transactions', '--agent', agentId, '--json']);
  assert.equal(json.code, 0, json.stderr);
  const parsed = JSON.parse(json.stdout) as { data: { stripe_object_id: string }[]; pagination: { total_count: number } };
  assert.equal(parsed.pagination.total_count, 4);
  assert.equal(parsed.data.length, 4);
});

test('when spend transactions is given a bad status or date, then it exits non-zero and says why', async () => {
  const status = await spend(['transactions', '--status', 'settled']);
  assert.notEqual(status.code, 0);
  assert.match(status.stderr, /settled/);
  assert.match(status.stderr, /pending, completed, declined, failed, unknown|Allowed choices/);
  const date = await spend(['transactions', '--from', 'last tuesday']);
  assert.equal(date.code, 1);
  assert.match(date.stderr, /from/);
  assert.equal(date.stdout, '');
});
