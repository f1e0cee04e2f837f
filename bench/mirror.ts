// The mirror's cost: passthrough GETs direct to a local fake Stripe, through a minimal keep-alive
// Node proxy (the floor), and through the gateway; then checked money-moving POSTs through the
// gateway. Every server is its own process; autocannon is the client.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import autocannon from 'autocannon';
import { freePort } from '../src/db/embedded.js';

const here = path.dirname(new URL(import.meta.url).pathname);
const ADMIN = 'bench-mirror-admin-token-000';

export interface LoadFigures {
  name: string;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
}

function startProcess(args: string[], env: Record<string, string>): ChildProcess {
  // BENCH_PROFILE=dir writes a CPU profile of the gateway there, to see where its time goes.
  const profile = process.env.BENCH_PROFILE && args[0]?.endsWith('main.ts') ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [];
  return spawn(process.execPath, [...profile, '--import', 'tsx', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
}

async function waitForPort(port: number, path = '/'): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      await fetch(`http://127.0.0.1:${port}${path}`);
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`nothing listening on ${port}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/**
 * autocannon drives the load; its latency histogram has whole-millisecond buckets, so a second,
 * light probe (one keep-alive connection, performance.now()) measures p50/p99 to the microsecond
 * while the load runs.
 */
async function load(name: string, options: autocannon.Options): Promise<LoadFigures> {
  const duration = Number(process.env.BENCH_SECONDS ?? 8);
  const running = autocannon({ connections: Number(process.env.BENCH_CONNECTIONS ?? 32), duration, ...options });
  const probe = await probeLatency(options, duration * 1000 - 500);
  const result = await running;
  return { name, requestsPerSecond: Math.round(result.requests.average), p50Ms: probe.p50, p99Ms: probe.p99, non2xx: result.non2xx };
}

async function probeLatency(options: autocannon.Options, forMs: number): Promise<{ p50: number; p99: number }> {
  const url = new URL(options.url as string);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const samples: number[] = [];
  const until = performance.now() + forMs;
  await new Promise((r) => setTimeout(r, 500)); // let the load ramp up
  while (performance.now() < until) {
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      const req = http.request({ host: url.hostname, port: url.port, path: url.pathname + url.search, method: options.method ?? 'GET', headers: options.headers as Record<string, string>, agent }, (res) => {
        res.resume();
        res.on('end', () => resolve());
      });
      req.on('error', reject);
      req.end(options.body as string | undefined);
    });
    samples.push(performance.now() - t0);
  }
  agent.destroy();
  samples.sort((a, b) => a - b);
  const pct = (p: number) => Number((samples[Math.min(samples.length - 1, Math.floor(samples.length * p))] ?? 0).toFixed(2));
  return { p50: pct(0.5), p99: pct(0.99) };
}

export async function benchMirror(databaseUrl: string): Promise<LoadFigures[]> {
  const [stripePort, proxyPort, gatewayPort, adminPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const children: ChildProcess[] = [];
  try {
    children.push(startProcess([path.join(here, '..', 'test', 'helpers', 'fake-stripe.ts'), '--port', String(stripePort)], {}));
    children.push(startProcess([path.join(here, 'minimal-proxy.ts'), String(proxyPort), `http://127.0.0.1:${stripePort}`], {}));
    children.push(startProcess([path.join(here, '..', 'src', 'main.ts')], {
      DATABASE_URL: databaseUrl, PORT: String(gatewayPort), ADMIN_PORT: String(adminPort), HOST: '127.0.0.1', LOG_LEVEL: 'silent',
      SPEND_ADMIN_TOKEN: ADMIN, STRIPE_SECRET_KEY: 'sk_test_bench', STRIPE_API_BASE: `http://127.0.0.1:${stripePort}`,
    }));
    await Promise.all([waitForPort(stripePort), waitForPort(proxyPort), waitForPort(gatewayPort, '/healthz')]);

    const admin = async (method: string, url: string, body: unknown) =>
      (await fetch(`http://127.0.0.1:${adminPort}/admin/v1${url}`, { method, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })).json() as Promise<Record<string, unknown>>;
    const agentId = `bench-mirror-${Date.now()}`;
    await admin('POST', '/policies', { policy_id: agentId, rules: [
      { rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 1000, currency: 'USD' } },
      { rule_id: 'daily', rule_type: 'velocity_limit', parameters: { limit: 1_000_000_000, currency: 'USD', window: 'daily' } },
    ] });
    await admin('POST', '/agents', { id: agentId, owner: 'bench@example.com', policy_id: agentId });
    const key = (await admin('POST', `/agents/${agentId}/api-keys`, { mode: 'test' })).key as string;

    const get = { method: 'GET' as const };
    const figures: LoadFigures[] = [];
    for (const round of [1, 2]) {
      const tag = round === 1 ? ' (warm-up)' : '';
      figures.push(await load(`GET direct to fake Stripe${tag}`, { url: `http://127.0.0.1:${stripePort}/v1/balance`, ...get, headers: { authorization: 'Bearer sk_test_bench' } }));
      figures.push(await load(`GET through minimal Node proxy${tag}`, { url: `http://127.0.0.1:${proxyPort}/v1/balance`, ...get, headers: { authorization: 'Bearer sk_test_bench' } }));
      figures.push(await load(`GET through spendgate${tag}`, { url: `http://127.0.0.1:${gatewayPort}/v1/balance`, ...get, headers: { authorization: `Bearer ${key}` } }));
    }
    const form = { 'content-type': 'application/x-www-form-urlencoded', authorization: `Bearer ${key}` };
    figures.push(await load('POST /v1/customers through spendgate (passthrough)', { url: `http://127.0.0.1:${gatewayPort}/v1/customers`, method: 'POST', headers: form, body: 'email=a%40example.com' }));
    figures.push(await load('POST /v1/payment_intents confirm=true through spendgate (checked)', { url: `http://127.0.0.1:${gatewayPort}/v1/payment_intents`, method: 'POST', headers: form, body: 'amount=100&currency=usd&confirm=true&payment_method=pm_card_visa' }));
    return figures.filter((f) => !f.name.endsWith('(warm-up)'));
  } finally {
    for (const child of children) child.kill('SIGTERM');
    await Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r)))));
  }
}
