// The gateway as a process, as `npm start` runs it: configuration errors, embedded PostgreSQL
// created then reused, SPEND_FILES, clean shutdown on SIGTERM, logs without secrets.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { freePort } from '../../src/db/embedded.js';
import { databaseUrl, uniqueId } from '../helpers/gateway.js';
import { startFakeStripe } from '../helpers/fake-stripe.js';

const main = path.join(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'src', 'main.ts');
const ADMIN = 'startup-test-admin-token-000';

interface Run {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function startProcess(env: Record<string, string>): Run {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !['DATABASE_URL', 'SPEND_FILES', 'STRIPE_SECRET_KEY'].includes(k)));
  const child = spawn(process.execPath, ['--import', 'tsx', main], { env: { ...clean, LOG_LEVEL: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (d) => (output += d));
  child.stderr?.on('data', (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => output, exited };
}

async function waitFor(run: Run, text: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!run.output().includes(text)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for "${text}"; output:\n${run.output()}`);
    if (run.child.exitCode !== null) throw new Error(`exited ${run.child.exitCode} before "${text}"; output:\n${run.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('when several settings are bad, then start fails with exit 1 listing every one and echoing no secret', async () => {
  const secret = 'sk_live_abcdefghijklmnop123456';
  const run = startProcess({ PORT: 'abc', LOG_LEVEL: 'loud', STRIPE_SECRET_KEY: secret, AUTH_FAIL_MODE: 'sometimes', SPEND_ADMIN_TOKEN: 'short', TRUST_PROXY: '10.0.0.0/99', MIRROR_DEADLINE_MS: '0' });
  assert.equal(await run.exited, 1);
  const out = run.output();
  for (const name of ['PORT', 'LOG_LEVEL', 'STRIPE_SECRET_KEY', 'AUTH_FAIL_MODE', 'SPEND_ADMIN_TOKEN', 'TRUST_PROXY', 'MIRROR_DEADLINE_MS']) assert.match(out, new RegExp(name));
  assert.match(out, /live key but NODE_ENV is not "production"/);
  assert.ok(!out.includes(secret), 'the key itself must not be printed');
});

test('when started with no DATABASE_URL, then an embedded PostgreSQL is created, kept across restarts and stopped on SIGTERM', async () => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'spendgate-e2e-'));
  try {
    const [port, adminPort] = [await freePort(), await freePort()];
    const env = { DATA_DIR: dataDir, PORT: String(port), ADMIN_PORT: String(adminPort), SPEND_ADMIN_TOKEN: ADMIN };
    const first = startProcess(env);
    await waitFor(first, 'spendgate ready', 60_000);
    assert.match(first.output(), /creating an embedded PostgreSQL cluster/);
    assert.match(first.output(), /STRIPE_SECRET_KEY is not set: the Stripe mirror cannot forward calls/);
    assert.equal((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 200);
    const agentId = uniqueId('kept');
    const created = await fetch(`http://127.0.0.1:${adminPort}/admin/v1/agents`, {
      method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify({ id: agentId, owner: 'o@example.com' }),
    });
    assert.equal(created.status, 201);
    first.child.kill('SIGTERM');
    assert.equal(await first.exited, 0);
    await assert.rejects(fetch(`http://127.0.0.1:${port}/healthz`));
    assert.ok(!first.output().includes(ADMIN), 'the admin token is never logged');

    const second = startProcess(env);
    await waitFor(second, 'spendgate ready', 60_000);
    assert.doesNotMatch(second.output(), /creating an embedded PostgreSQL cluster/);
    const agent = await fetch(`http://127.0.0.1:${adminPort}/admin/v1/agents/${agentId}`, { headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(agent.status, 200, 'data survives a restart');
    second.child.kill('SIGINT');
    assert.equal(await second.exited, 0);
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});

test('when SPEND_FILES names a SPEND.md, then it is applied at start; with an unenforceable control the start is refused', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'spendgate-files-'));
  try {
    const agentId = uniqueId('filed');
    await writeFile(path.join(dir, 'agent.md'), `## Identity\nagent_name: ${agentId}\nowner: ops@example.com\n\n## Spending\nspend:\nper_transaction: 10 USD\n`);
    const [port, adminPort] = [await freePort(), await freePort()];
    const env = { DATABASE_URL: databaseUrl(), PORT: String(port), ADMIN_PORT: String(adminPort), SPEND_ADMIN_TOKEN: ADMIN, SPEND_FILES: dir };
    const ok = startProcess(env);
    await waitFor(ok, 'spendgate ready');
    const agent = (await (await fetch(`http://127.0.0.1:${adminPort}/admin/v1/agents/${agentId}`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as { policy_id: string };
    assert.equal(agent.policy_id, agentId);
    ok.child.kill('SIGTERM');
    assert.equal(await ok.exited, 0);

    const unsafe = path.join(dir, 'unsafe.md');
    await writeFile(unsafe, `## Identity\nagent_name: ${agentId}-2\nowner: ops@example.com\n\n## Security\nsecurity:\nip_allowlist:\n- 10.0.0.0/8\n`);
    const refused = startProcess({ ...env, SPEND_FILES: unsafe });
    assert.equal(await refused.exited, 1);
    assert.match(refused.output(), /security\.ip_allowlist \(line 7\)/);

    const overridden = startProcess({ ...env, SPEND_FILES: unsafe, SPEND_ALLOW_UNENFORCED: '1' });
    await waitFor(overridden, 'spendgate ready');
    assert.match(overridden.output(), /NOT ENFORCED: not supported yet: IP allowlists/);
    overridden.child.kill('SIGTERM');
    assert.equal(await overridden.exited, 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('when requests carry keys, then every log line is JSON with a request id and no key appears', async () => {
  const [port, adminPort] = [await freePort(), await freePort()];
  const run = startProcess({ DATABASE_URL: databaseUrl(), PORT: String(port), ADMIN_PORT: String(adminPort), SPEND_ADMIN_TOKEN: ADMIN });
  await waitFor(run, 'spendgate ready');
  const fakeKey = `sg_test_${'x'.repeat(40)}`;
  const res = await fetch(`http://127.0.0.1:${port}/v1/checks`, { method: 'POST', headers: { authorization: `Bearer ${fakeKey}`, 'content-type': 'application/json' }, body: '{}' });
  assert.equal(res.status, 401);
  const requestId = res.headers.get('request-id');
  assert.match(requestId ?? '', /^req_/);
  await fetch(`http://127.0.0.1:${adminPort}/admin/v1/agents`, { headers: { authorization: `Bearer ${ADMIN}` } });
  run.child.kill('SIGTERM');
  assert.equal(await run.exited, 0);
  const lines = run.output().trim().split('\n');
  for (const line of lines) JSON.parse(line);
  assert.ok(lines.some((l) => l.includes(requestId ?? '?')), 'the request id is logged');
  assert.ok(!run.output().includes(fakeKey) && !run.output().includes(ADMIN), 'no key or token in the logs');
});

test('when agents send card numbers and keys through the mirror, then no log line holds a card number, an agent key or the Stripe key, even at debug level', async () => {
  const fake = await startFakeStripe();
  const [port, adminPort] = [await freePort(), await freePort()];
  const upstreamKey = 'sk_test_startupUpstreamSecret0001';
  const wrong = `sg_test_${'y'.repeat(40)}`;
  const pan = '4242424242424242';
  /** What no log line may hold; the agent's key and its Basic credential join once created. */
  const secrets: string[] = [pan, upstreamKey, wrong];
  const run = startProcess({ DATABASE_URL: databaseUrl(), PORT: String(port), ADMIN_PORT: String(adminPort), SPEND_ADMIN_TOKEN: ADMIN, STRIPE_SECRET_KEY: upstreamKey, STRIPE_API_BASE: fake.url, LOG_LEVEL: 'debug' });
  try {
    await waitFor(run, 'spendgate ready');
    const admin = (method: string, p: string, body?: unknown) =>
      fetch(`http://127.0.0.1:${adminPort}/admin/v1${p}`, { method, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    const agentId = uniqueId('logs');
    assert.equal((await admin('POST', '/policies', { policy_id: agentId, rules: [{ rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 50, currency: 'USD' } }] })).status, 201);
    assert.equal((await admin('POST', '/agents', { id: agentId, owner: 'o@example.com', policy_id: agentId })).status, 201);
    const key = ((await (await admin('POST', `/agents/${agentId}/api-keys`, { mode: 'test' })).json()) as { key: string }).key;
    const basic = `Basic ${Buffer.from(`${key}:`).toString('base64')}`;
    secrets.push(key, basic.slice('Basic '.length));
    const form = `amount=500&currency=usd&confirm=true&payment_method_data[type]=card&payment_method_data[card][number]=${pan}&payment_method_data[card][cvc]=314&payment_method_data[card][exp_month]=12&payment_method_data[card][exp_year]=2030`;
    const mirror = (p: string, init: RequestInit = {}, auth = `Bearer ${key}`) =>
      fetch(`http://127.0.0.1:${port}${p}`, { ...init, headers: { authorization: auth, 'content-type': 'application/x-www-form-urlencoded', ...(init.headers as Record<string, string> | undefined) } });
    const first = await mirror('/v1/payment_intents', { method: 'POST', body: form });
    assert.equal(first.status, 200, await first.clone().text());
    fake.on('POST', '/v1/payment_intents', { status: 500, body: { error: { type: 'api_error', message: `card ${pan} failed` } }, times: 1 });
    assert.equal((await mirror('/v1/payment_intents', { method: 'POST', body: form })).status, 500);
    // Forwarded as it is (the fake has no tokens: Stripe's 404 comes back); what matters is the log.
    assert.equal((await mirror('/v1/tokens', { method: 'POST', body: `card[number]=${pan}&card[cvc]=314` })).status, 404);
    assert.equal((await mirror(`/v1/customers?email=${pan}`)).status, 200);
    assert.equal((await mirror('/v1/balance', {}, basic)).status, 200);
    assert.equal((await mirror('/v1/balance', {}, `Bearer ${wrong}`)).status, 401);
  } finally {
    run.child.kill('SIGTERM');
    await run.exited;
    await fake.stop();
  }
  const output = run.output();
  const lines = output.trim().split('\n');
  for (const line of lines) JSON.parse(line);
  assert.ok(lines.some((l) => l.includes('/v1/payment_intents')), 'the mirror calls are logged');
  for (const secret of secrets) {
    assert.ok(!output.includes(secret), `the logs hold ${secret.slice(0, 12)}…`);
  }
  assert.doesNotMatch(output, /sg_test_[A-Za-z0-9]{20,}/, 'no agent key in the logs');
});

test('when npm run migrate runs against an up-to-date database, then it says so and exits 0', async () => {
  const cli = path.join(path.dirname(main), 'db', 'migrate-cli.ts');
  const child = spawn(process.execPath, ['--import', 'tsx', cli], { env: { ...process.env, DATABASE_URL: databaseUrl() }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d) => (out += d));
  const code = await new Promise((resolve) => child.on('exit', resolve));
  assert.equal(code, 0);
  assert.match(out, /already up to date/);
});
