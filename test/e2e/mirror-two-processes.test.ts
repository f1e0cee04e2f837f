// Two gateway processes on one PostgreSQL, one fake Stripe: 200 concurrent one-dollar
// PaymentIntents against a fifty-dollar daily limit reach Stripe exactly 50 times.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';
import Stripe from 'stripe';
import { freePort } from '../../src/db/embedded.js';
import { startFakeStripe } from '../helpers/fake-stripe.js';
import type { FakeStripe } from '../helpers/fake-stripe.js';
import { databaseUrl, uniqueId } from '../helpers/gateway.js';

const main = path.join(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'src', 'main.ts');
const ADMIN = 'two-process-admin-token-0000';

interface GatewayProcess {
  child: ChildProcess;
  port: number;
  adminPort: number;
}

async function startGatewayProcess(stripeBase: string): Promise<GatewayProcess> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const child = spawn(process.execPath, ['--import', 'tsx', main], {
    env: { ...process.env, DATABASE_URL: databaseUrl(), PORT: String(port), ADMIN_PORT: String(adminPort), HOST: '127.0.0.1', SPEND_ADMIN_TOKEN: ADMIN, STRIPE_SECRET_KEY: 'sk_test_twoprocess', STRIPE_API_BASE: stripeBase, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let errors = '';
  child.stderr?.on('data', (d) => (errors += d));
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/readyz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`gateway did not start: ${errors}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, port, adminPort };
}

let fake: FakeStripe;
let gateways: GatewayProcess[] = [];
before(async () => {
  fake = await startFakeStripe();
  gateways = await Promise.all([startGatewayProcess(fake.url), startGatewayProcess(fake.url)]);
});
after(async () => {
  for (const g of gateways) g.child.kill('SIGTERM');
  await Promise.all(gateways.map((g) => new Promise((r) => (g.child.exitCode !== null ? r(null) : g.child.once('exit', r)))));
  await fake.stop();
});

test('when 200 one-dollar PaymentIntents race through two gateway processes against a 50 USD daily limit, then Stripe sees exactly 50', async () => {
  const [a, b] = gateways as [GatewayProcess, GatewayProcess];
  const admin = (method: string, url: string, body: unknown) =>
    fetch(`http://127.0.0.1:${a.adminPort}/admin/v1${url}`, { method, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) }).then((r) => r.json() as Promise<Record<string, unknown>>);
  const agentId = uniqueId('racer');
  await admin('POST', '/policies', { policy_id: agentId, rules: [{ rule_id: 'daily', rule_type: 'velocity_limit', parameters: { limit: 50, currency: 'USD', window: 'daily' } }] });
  await admin('POST', '/agents', { id: agentId, owner: 'ops@example.com', policy_id: agentId });
  const key = (await admin('POST', `/agents/${agentId}/api-keys`, { mode: 'test' })).key as string;

  const clients = [a, b].map((g) => new Stripe(key, { host: '127.0.0.1', port: g.port, protocol: 'http', maxNetworkRetries: 0 }));
  const results = await Promise.allSettled(
    Array.from({ length: 200 }, (_, i) => (clients[i % 2] as Stripe).paymentIntents.create({ amount: 100, currency: 'usd', confirm: true, payment_method: 'pm_card_visa', metadata: { n: String(i) } })),
  );
  const created = results.filter((r) => r.status === 'fulfilled').length;
  const blocked = results.filter((r) => r.status === 'rejected' && (r.reason as { code?: string }).code === 'spend_policy_blocked').length;
  const reached = fake.requests.filter((r) => r.method === 'POST' && r.path === '/v1/payment_intents').length;
  assert.equal(created, 50);
  assert.equal(blocked, 150);
  assert.equal(reached, 50, 'Stripe saw exactly the allowed calls');
  // Each process answered its own half: 100 definite answers each, allowed or blocked.
  for (const g of [0, 1]) {
    const answered = results.filter((r, i) => i % 2 === g && (r.status === 'fulfilled' || (r.reason as { code?: string }).code === 'spend_policy_blocked')).length;
    assert.equal(answered, 100);
  }
  const tx = await admin('GET', `/transactions?agent_id=${agentId}&status=completed&limit=100`, undefined);
  assert.equal((tx.pagination as { total_count: number }).total_count, 50);
});
