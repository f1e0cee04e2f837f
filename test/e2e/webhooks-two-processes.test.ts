// Two gateway processes on one PostgreSQL answer Stripe's authorization webhooks: every request is
// delivered to both at once (a redelivery racing the first delivery), against a 50 USD daily limit.
// Each request gets one answer from both, and exactly 50 one-dollar authorizations are reserved.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Knex } from 'knex';
import { freePort } from '../../src/db/embedded.js';
import { databaseUrl, testKnex, uniqueId } from '../helpers/gateway.js';
import { signStripe, stripeAuthorizationRequest } from '../helpers/processor-events.js';

const main = path.join(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'src', 'main.ts');
const ADMIN = 'two-process-webhook-admin-00';
const SECRET = 'whsec_two_processes';

interface GatewayProcess {
  child: ChildProcess;
  port: number;
  adminPort: number;
}

async function startGatewayProcess(): Promise<GatewayProcess> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const child = spawn(process.execPath, ['--import', 'tsx', main], {
    env: { ...process.env, DATABASE_URL: databaseUrl(), PORT: String(port), ADMIN_PORT: String(adminPort), HOST: '127.0.0.1', SPEND_ADMIN_TOKEN: ADMIN, STRIPE_WEBHOOK_SECRET: SECRET, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let errors = '';
  child.stderr?.on('data', (d) => (errors += d));
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/readyz`)).ok) return { child, port, adminPort };
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`gateway did not start: ${errors}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let gateways: GatewayProcess[] = [];
let knex: Knex;
before(async () => {
  knex = testKnex(2);
  gateways = await Promise.all([startGatewayProcess(), startGatewayProcess()]);
});
after(async () => {
  for (const g of gateways) g.child.kill('SIGTERM');
  await Promise.all(gateways.map((g) => new Promise((r) => (g.child.exitCode !== null ? r(null) : g.child.once('exit', r)))));
  await knex.destroy();
});

test('when 100 one-dollar authorizations are each delivered to both processes at once against a 50 USD daily limit, then 50 are approved, each once', async () => {
  const [a, b] = gateways as [GatewayProcess, GatewayProcess];
  const admin = (url: string, body: unknown) =>
    fetch(`http://127.0.0.1:${a.adminPort}/admin/v1${url}`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const agentId = uniqueId('swiper');
  await admin('/policies', { policy_id: agentId, rules: [{ rule_id: 'daily', rule_type: 'velocity_limit', parameters: { limit: 50, currency: 'USD', window: 'daily' } }] });
  await admin('/agents', { id: agentId, owner: 'ops@example.com', policy_id: agentId });

  const deliver = (port: number, body: string) =>
    fetch(`http://127.0.0.1:${port}/webhooks/stripe`, { method: 'POST', headers: { 'content-type': 'application/json', 'stripe-signature': signStripe(body, SECRET) }, body })
      .then((r) => r.json() as Promise<{ approved: boolean; metadata: Record<string, string> }>);
  const bodies = Array.from({ length: 100 }, () => JSON.stringify(stripeAuthorizationRequest({ agentId, amount: 100 })));
  const answers = await Promise.all(bodies.map((body) => Promise.all([deliver(a.port, body), deliver(b.port, body)])));

  for (const [first, second] of answers) {
    assert.equal(first.approved, second.approved, 'both deliveries of one request get the same answer');
    assert.equal(first.metadata.spend_check_id, second.metadata.spend_check_id);
  }
  assert.equal(answers.filter(([first]) => first.approved).length, 50);
  const reserved = await knex('decisions').where({ agent_id: agentId, status: 'reserved' });
  assert.equal(reserved.length, 50);
  const counter = await knex('usage_counters').where({ agent_id: agentId, window: 'daily' }).first();
  assert.equal(Number(counter.reserved), 5000);
});
