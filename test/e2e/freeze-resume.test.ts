// A freeze-all survives the gateway stopping half-way: the queue lives in PostgreSQL, so a new
// gateway process on the same database finishes the job — after a clean stop at once, after a
// crash (SIGKILL) once the dead process's leases run out.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { freePort } from '../../src/db/embedded.js';
import { startFakeStripe } from '../helpers/fake-stripe.js';
import type { FakeStripe } from '../helpers/fake-stripe.js';
import { ADMIN_TOKEN, agentWithPolicy, startTestGateway } from '../helpers/gateway.js';
import type { TestGateway } from '../helpers/gateway.js';
import { isolatedDatabase } from '../helpers/isolated-db.js';
import { registeredStripeCards, STRIPE_KEY, until } from '../helpers/cards.js';

const main = path.join(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'src', 'main.ts');
const open = [{ rule_id: 'cap', rule_type: 'max_amount', parameters: { limit: 1000, currency: 'USD' } }];

let db: { url: string; drop(): Promise<void> };
let fake: FakeStripe;
before(async () => {
  db = await isolatedDatabase();
  fake = await startFakeStripe();
  // Every freeze takes a while, so a job of 30 cards at concurrency 2 is still running when stopped.
  fake.on('POST', '/v1/issuing/cards/:id', { delayMs: 100 });
});
after(async () => {
  await fake.stop();
  await db.drop();
});

const env = () => ({ DATABASE_URL: db.url, STRIPE_SECRET_KEY: STRIPE_KEY, STRIPE_API_BASE: fake.url, FREEZE_CONCURRENCY: '2', STRIPE_TIMEOUT_MS: '1000' });

async function counts(gw: TestGateway, jobId: string) {
  return (await gw.admin('GET', `/cards/jobs/${jobId}?cards=false`)).body.counts as { confirmed: number; pending: number; total: number };
}

test('when the gateway stops in the middle of a freeze-all, then a new gateway on the same database finishes it', async () => {
  const first = await startTestGateway(env());
  const { agentId } = await agentWithPolicy(first, open);
  const ids = await registeredStripeCards(first, fake, agentId, 30);
  const res = await first.admin('POST', '/cards/freeze', { agent_id: agentId, wait_ms: 0 });
  const jobId = res.body.job_id as string;
  await until('a few confirmations', async () => (await counts(first, jobId)).confirmed >= 4);
  await first.stop();
  const second = await startTestGateway(env());
  try {
    const before = await counts(second, jobId);
    assert.ok(before.pending > 0, `expected work left after the stop, got ${JSON.stringify(before)}`);
    await until('the second gateway to finish the job', async () => (await counts(second, jobId)).pending === 0);
    const done = await second.admin('GET', `/cards/jobs/${jobId}`);
    assert.equal(done.body.counts.confirmed, 30);
    for (const id of ids) assert.equal(fake.get(id)?.status, 'inactive', id);
  } finally {
    await second.stop();
  }
});

test('when the gateway process is killed in the middle of a freeze-all, then a new gateway finishes it once the leases run out', async () => {
  const [port, adminPort] = [await freePort(), await freePort()];
  const child = spawn(process.execPath, ['--import', 'tsx', main], {
    env: { ...process.env, ...env(), PORT: String(port), ADMIN_PORT: String(adminPort), HOST: '127.0.0.1', SPEND_ADMIN_TOKEN: ADMIN_TOKEN, LOG_LEVEL: 'silent', RECONCILE_CRON: 'off' },
    stdio: 'ignore',
  });
  const exited = new Promise((r) => child.once('exit', r));
  const admin = async (method: string, url: string, body?: unknown) => {
    const r = await fetch(`http://127.0.0.1:${adminPort}/admin/v1${url}`, { method, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: r.status, body: (await r.json()) as Record<string, any> }; // eslint-disable-line @typescript-eslint/no-explicit-any
  };
  const setup = await startTestGateway(env());
  let jobId = '';
  let ids: string[] = [];
  try {
    await until('the child gateway to start', async () => (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined))?.ok === true, 30_000);
    // Set up through an in-process gateway, stopped before the freeze: only the child works on it.
    const { agentId } = await agentWithPolicy(setup, open);
    ids = await registeredStripeCards(setup, fake, agentId, 30);
    await setup.stop();
    const res = await admin('POST', '/cards/freeze', { agent_id: agentId, wait_ms: 0 });
    jobId = res.body.job_id as string;
    await until('a few confirmations', async () => (await admin('GET', `/cards/jobs/${jobId}?cards=false`)).body.counts.confirmed >= 4);
  } finally {
    child.kill('SIGKILL');
    await exited;
  }
  const third = await startTestGateway(env());
  try {
    const left = await counts(third, jobId);
    assert.ok(left.pending > 0, `expected work left after the kill, got ${JSON.stringify(left)}`);
    await until('the new gateway to finish the job', async () => (await counts(third, jobId)).pending === 0, 30_000);
    assert.equal((await counts(third, jobId)).confirmed, 30);
    for (const id of ids) assert.equal(fake.get(id)?.status, 'inactive', id);
  } finally {
    await third.stop();
  }
});
