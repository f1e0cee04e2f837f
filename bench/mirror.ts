// The mirror's cost: passthrough GETs direct to a local fake Stripe, through a minimal keep-alive
// Node proxy (the floor), and through the gateway; then checked money-moving POSTs through the
// gateway, against the same POST through the minimal proxy. Every server is its own process;
// autocannon is the client.
//
// Two figures per target, because they answer different questions:
// - throughput: BENCH_CONNECTIONS (32) autocannon connections for BENCH_SECONDS (5): how many
//   requests per second the server sustains when the CPU is saturated;
// - latency: one connection, one request at a time, nothing else running (BENCH_LATENCY_SECONDS,
//   3): what a request pays for going through. Under saturation p50 is only the throughput again
//   (Little's law: p50 ≈ connections / req/s), so "added p50" is read from this unloaded figure;
//   the p50 seen by a probe connection during the load is printed too.
// BENCH_ROUNDS (3) rounds measure every target in turn; the figures are medians of the rounds.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import autocannon from 'autocannon';
import { freePort } from '../src/db/embedded.js';
import { cpuMs, machineTicks, stealPercent } from './cpu.js';
import { waitForPort } from './http.js';

const here = path.dirname(new URL(import.meta.url).pathname);
const ADMIN = 'bench-mirror-admin-token-000';

export interface Latency {
  p50: number;
  p99: number;
  /** Sequential requests per second on the one connection. */
  perSecond: number;
}

export interface TargetFigures {
  name: string;
  /** Under load: autocannon's req/s and a probe's p50/p99 beside it. */
  requestsPerSecond: number;
  loadedP50Ms: number;
  loadedP99Ms: number;
  non2xx: number;
  /**
   * CPU time (user + system) the proxying process spent per request under load, in µs: the
   * figure least disturbed by neighbours on a shared VM. Undefined where /proc is missing.
   */
  cpuUsPerRequest?: number;
  /** One connection, nothing else running. */
  idle: Latency;
  /** Share of the machine's CPU the hypervisor stole while this target was measured, percent (Linux). */
  stealPct?: number;
}

export type TargetId = 'directGet' | 'proxyGet' | 'gatewayGet' | 'proxyPost' | 'gatewayChecked';

export interface MirrorFigures {
  connections: number;
  seconds: number;
  rounds: number;
  /** Medians over the rounds. */
  figures: Partial<Record<TargetId, TargetFigures>>;
  perRound: Partial<Record<TargetId, TargetFigures>>[];
}

function startProcess(args: string[], env: Record<string, string>): ChildProcess {
  // BENCH_PROFILE=dir writes CPU profiles of the gateway and the minimal proxy there
  // (CPU.<date>.<time>.<pid>…), to see where their time goes.
  const profiled = args[0]?.endsWith('main.ts') || args[0]?.endsWith('minimal-proxy.ts');
  const profile = process.env.BENCH_PROFILE && profiled ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [];
  return spawn(process.execPath, [...profile, '--import', 'tsx', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
}

interface Target {
  /** The process answering at url (the proxy, the gateway or the fake), for its CPU time. */
  pid?: number;
  url: string;
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  body?: string;
}

/** Saturating load, with a light probe connection measuring latency to the microsecond beside it. */
async function underLoad(target: Target, connections: number, seconds: number) {
  const cpuBefore = cpuMs(target.pid);
  const running = autocannon({ url: target.url, method: target.method, headers: target.headers, body: target.body, connections, duration: seconds });
  await new Promise((r) => setTimeout(r, 500)); // let the load ramp up
  const beside = await probe(target, seconds * 1000 - 1000);
  const result = await running;
  const cpuAfter = cpuMs(target.pid);
  const requests = result.requests.total + beside.count;
  return {
    requestsPerSecond: Math.round(result.requests.average), loadedP50Ms: beside.p50, loadedP99Ms: beside.p99, non2xx: result.non2xx,
    ...(cpuBefore !== undefined && cpuAfter !== undefined && requests > 0 ? { cpuUsPerRequest: Math.round(((cpuAfter - cpuBefore) * 1000) / requests) } : {}),
  };
}

/** One keep-alive connection, one request at a time, timed with performance.now(). */
async function probe(target: Target, forMs: number): Promise<Latency & { count: number }> {
  const url = new URL(target.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const samples: number[] = [];
  const started = performance.now();
  const until = started + forMs;
  while (performance.now() < until) {
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      const req = http.request({ host: url.hostname, port: url.port, path: url.pathname + url.search, method: target.method, headers: target.headers, agent }, (res) => {
        res.resume();
        res.on('end', () => resolve());
      });
      req.on('error', reject);
      req.end(target.body);
    });
    samples.push(performance.now() - t0);
  }
  const elapsed = performance.now() - started;
  agent.destroy();
  samples.sort((a, b) => a - b);
  const pct = (p: number) => Number((samples[Math.min(samples.length - 1, Math.floor(samples.length * p))] ?? 0).toFixed(3));
  return { p50: pct(0.5), p99: pct(0.99), perSecond: Math.round((samples.length * 1000) / elapsed), count: samples.length };
}

async function measure(name: string, target: Target, connections: number, seconds: number, idleSeconds: number): Promise<TargetFigures> {
  const before = machineTicks();
  const loaded = await underLoad(target, connections, seconds);
  await new Promise((r) => setTimeout(r, 300)); // let the servers go idle again
  const { p50, p99, perSecond } = await probe(target, idleSeconds * 1000);
  const steal = stealPercent(before, machineTicks());
  return { name, ...loaded, idle: { p50, p99, perSecond }, ...(steal !== undefined ? { stealPct: steal } : {}) };
}

export async function benchMirror(databaseUrl: string): Promise<MirrorFigures> {
  const connections = Number(process.env.BENCH_CONNECTIONS ?? 32);
  const seconds = Number(process.env.BENCH_SECONDS ?? 5);
  const idleSeconds = Number(process.env.BENCH_LATENCY_SECONDS ?? 3);
  const roundCount = Number(process.env.BENCH_ROUNDS ?? 3);
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
      { rule_id: 'daily', rule_type: 'velocity_limit', parameters: { limit: 1_000_000_000_000, currency: 'USD', window: 'daily' } },
    ] });
    await admin('POST', '/agents', { id: agentId, owner: 'bench@example.com', policy_id: agentId });
    const key = (await admin('POST', `/agents/${agentId}/api-keys`, { mode: 'test' })).key as string;

    const [fakePid, proxyPid, gatewayPid] = children.map((c) => c.pid);
    const pids = new Map([[stripePort, fakePid], [proxyPort, proxyPid], [gatewayPort, gatewayPid]]);
    const get = (port: number, bearer: string): Target => ({ pid: pids.get(port), url: `http://127.0.0.1:${port}/v1/balance`, method: 'GET', headers: { authorization: `Bearer ${bearer}` } });
    const pay = (port: number, bearer: string): Target => ({
      pid: pids.get(port),
      url: `http://127.0.0.1:${port}/v1/payment_intents`, method: 'POST', body: 'amount=100&currency=usd&confirm=true&payment_method=pm_card_visa',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Bearer ${bearer}` },
    });
    const targets: Record<TargetId, readonly [string, Target]> = {
      directGet: ['GET /v1/balance direct to fake Stripe', get(stripePort, 'sk_test_bench')],
      proxyGet: ['GET /v1/balance through minimal Node proxy (floor)', get(proxyPort, 'sk_test_bench')],
      gatewayGet: ['GET /v1/balance through spendgate (passthrough)', get(gatewayPort, key)],
      proxyPost: ['POST /v1/payment_intents through minimal Node proxy', pay(proxyPort, 'sk_test_bench')],
      gatewayChecked: ['POST /v1/payment_intents through spendgate (checked)', pay(gatewayPort, key)],
    };
    // BENCH_TARGETS=gatewayGet,proxyGet measures only those (with BENCH_PROFILE, to profile one path).
    const only = process.env.BENCH_TARGETS?.split(',');
    const chosen = (Object.entries(targets) as [TargetId, (typeof targets)[TargetId]][]).filter(([id]) => !only || only.includes(id));
    // Warm-up: JIT, connection pools, prepared statements, caches.
    for (const [, [, target]] of chosen) await measure('', target, connections, 2, 0.5);
    // Rounds of every target in turn, so a neighbour's load spike hits all of them alike; each
    // figure is the median of its rounds.
    const rounds: Partial<Record<TargetId, TargetFigures>>[] = [];
    for (let round = 0; round < roundCount; round++) {
      const figures: Partial<Record<TargetId, TargetFigures>> = {};
      for (const [id, [name, target]] of chosen) figures[id] = await measure(name, target, connections, seconds, idleSeconds);
      rounds.push(figures);
    }
    const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;
    const figures: Partial<Record<TargetId, TargetFigures>> = {};
    for (const [id, [name]] of chosen) {
      const all = rounds.map((r) => r[id] as TargetFigures);
      figures[id] = {
        name,
        requestsPerSecond: median(all.map((f) => f.requestsPerSecond)),
        loadedP50Ms: median(all.map((f) => f.loadedP50Ms)),
        loadedP99Ms: median(all.map((f) => f.loadedP99Ms)),
        non2xx: all.reduce((n, f) => n + f.non2xx, 0),
        ...(all.every((f) => f.cpuUsPerRequest !== undefined) ? { cpuUsPerRequest: median(all.map((f) => f.cpuUsPerRequest as number)) } : {}),
        idle: { p50: median(all.map((f) => f.idle.p50)), p99: median(all.map((f) => f.idle.p99)), perSecond: median(all.map((f) => f.idle.perSecond)) },
      };
    }
    return { connections, seconds, rounds: roundCount, figures, perRound: rounds };
  } finally {
    for (const child of children) child.kill('SIGTERM');
    await Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r)))));
  }
}
