// Real-time card authorizations: signed Stripe `issuing_authorization.request` events posted to a
// gateway process (its own process, durable commits), every one a new authorization that is
// decided and reserved. Closed loop at 32 in flight over 64 cards (64 agents) and on one hot card
// (wrk when installed, else autocannon; BENCH_CLIENT=autocannon forces it); then an open loop at a
// fixed 500 requests/s for the latency goal, and the same open loop against a server that only
// parses and answers (bench/minimal-webhook.ts), and one durable write per request to the database's
// disk at the same rate (bench/disk.ts): the two floors. BENCH_ROUNDS (3) rounds run them in turn,
// each with the machine's CPU steal beside it; then one request at a time, once.
import { spawn } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import autocannon from 'autocannon';
import { cpuMs, machineTicks, postgresCpuMs, stealPercent } from './cpu.js';
import { durableWrites } from './disk.js';
import type { DiskFigures } from './disk.js';
import { percentiles, post, waitForPort } from './http.js';
import { freePort } from '../src/db/embedded.js';
import { wrkClosedLoop, wrkInstalled } from './wrk.js';
import { startGatewayProcess } from '../test/helpers/gateway-process.js';
import type { GatewayProcess as Gateway } from '../test/helpers/gateway-process.js';
import { signStripe, stripeAuthorizationRequest } from '../test/helpers/processor-events.js';

const ADMIN = 'bench-authorizations-admin-00';
const SECRET = 'whsec_bench_authorizations';

export interface AuthorizationFigures {
  name: string;
  total: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  approved: number;
  failMode: number;
  /** CPU per request, µs: the gateway process, PostgreSQL (all backends), this client. */
  cpuUs: { gateway: number; postgres: number; client: number };
  /** What answered, when not the gateway. */
  server?: string;
  /** The load generator. */
  client: string;
  /** Share of the machine's CPU the hypervisor stole during the loop, percent (Linux). */
  stealPct?: number;
}

/**
 * bench/minimal-webhook.ts in its own process: the same fixed-rate load against it shows what the
 * client and this machine alone cost each request's latency (the floor under the p99 goal).
 */
async function startFloor(): Promise<Gateway> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(path.dirname(new URL(import.meta.url).pathname), 'minimal-webhook.ts'), String(port)], { stdio: 'inherit' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null) child.kill('SIGTERM');
    await exited;
  };
  await waitForPort(port).catch(async (error: unknown) => {
    await stop();
    throw error;
  });
  return { child, port, adminPort: port, stop };
}

async function createAgents(gw: Gateway, agent: http.Agent, count: number, tag: string): Promise<string[]> {
  const admin = { authorization: `Bearer ${ADMIN}` };
  await post(agent, gw.adminPort, '/admin/v1/policies', admin, JSON.stringify({ policy_id: tag, rules: [
    { rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 500, currency: 'USD' } },
    { rule_id: 'day', rule_type: 'velocity_limit', parameters: { limit: 100_000_000, currency: 'USD', window: 'daily' } },
    { rule_id: 'no-gambling', rule_type: 'category_blocklist', parameters: { categories: ['gambling'] } },
  ] }));
  const ids = Array.from({ length: count }, (_, i) => `${tag}-${i}`);
  for (const id of ids) await post(agent, gw.adminPort, '/admin/v1/agents', admin, JSON.stringify({ id, owner: 'bench@example.com', policy_id: tag }));
  return ids;
}

/**
 * Requests prepared per second of a wrk run: above any rate this machine has reached (7,000/s was
 * passed on a fast morning, and the run refused to go on).
 */
const WRK_CEILING_PER_SECOND = 12_000;

/** Signed, distinct requests made before the clock starts (signing is the processor's cost, not ours). */
function signedRequests(agentIds: string[], count: number): { body: string; signature: string }[] {
  return Array.from({ length: count }, (_, i) => {
    const agentId = agentIds[i % agentIds.length] as string;
    const body = JSON.stringify(stripeAuthorizationRequest({ agentId, cardId: `ic_bench_${agentId}`, amount: 100 }));
    return { body, signature: signStripe(body, SECRET) };
  });
}

interface CpuMark {
  gateway: number;
  postgres: number;
  client: number;
}

function cpuMark(gw: Gateway): CpuMark {
  const own = process.cpuUsage();
  return { gateway: cpuMs(gw.child.pid) ?? 0, postgres: postgresCpuMs(), client: (own.user + own.system) / 1000 };
}

function cpuPer(before: CpuMark, after: CpuMark, requests: number): AuthorizationFigures['cpuUs'] {
  const per = (k: keyof CpuMark) => Math.round(((after[k] - before[k]) * 1000) / Math.max(1, requests));
  return { gateway: per('gateway'), postgres: per('postgres'), client: per('client') };
}

function summarize(name: string, client: string, latencies: number[], seconds: number, answers: string[], cpuUs: AuthorizationFigures['cpuUs']): AuthorizationFigures {
  const pct = percentiles(latencies);
  return {
    name, client, total: latencies.length, perSecond: Math.round(latencies.length / seconds), p50Ms: pct(0.5), p99Ms: pct(0.99),
    approved: answers.filter((a) => a.includes('"approved":true')).length, failMode: answers.filter((a) => a.includes('fail_mode')).length, cpuUs,
  };
}

/**
 * Closed loop: `concurrency` keep-alive connections, each sending its next request when the last
 * answer arrives. autocannon is the client: it costs this machine's two cores about half the CPU
 * per request of node's http client, which by itself topped out near 2,400 requests/s here.
 * Latency is timed per request, to the microsecond, from the moment autocannon builds it.
 */
async function autocannonLoop(gw: Gateway, name: string, requests: { body: string; signature: string }[], concurrency: number): Promise<AuthorizationFigures> {
  const latencies: number[] = [];
  const answers: string[] = [];
  let next = 0;
  const mark = cpuMark(gw);
  const started = performance.now();
  // autocannon resolves on its next one-second tick after the last answer: time the requests.
  let firstSent: number | undefined;
  let lastAnswered = started;
  const result = await autocannon({
    url: `http://127.0.0.1:${gw.port}`,
    connections: concurrency,
    amount: requests.length,
    requests: [{
      method: 'POST',
      path: '/webhooks/stripe',
      setupRequest: (request, context: { sentAt?: number }) => {
        const { body, signature } = requests[next++ % requests.length] as { body: string; signature: string };
        context.sentAt = performance.now();
        firstSent ??= context.sentAt;
        return { ...request, headers: { 'content-type': 'application/json', 'stripe-signature': signature }, body };
      },
      onResponse: (_status, body, context: { sentAt?: number }) => {
        lastAnswered = performance.now();
        latencies.push(lastAnswered - (context.sentAt ?? started));
        answers.push(body);
      },
    }],
  });
  const seconds = (lastAnswered - (firstSent ?? started)) / 1000;
  if (result.errors > 0 || result.non2xx > 0) throw new Error(`${name}: ${result.errors} errors, ${result.non2xx} non-2xx answers`);
  return summarize(name, 'autocannon', latencies, seconds, answers, cpuPer(mark, cpuMark(gw), latencies.length));
}

/**
 * The same closed loop driven by wrk for `seconds`: it costs ~60–90 µs of CPU per request here
 * against autocannon's ~120–150, CPU the gateway and PostgreSQL then have. `requests` must outlast
 * the run (wrkClosedLoop refuses a run that would send one twice).
 */
async function wrkLoop(gw: Gateway, name: string, requests: { body: string; signature: string }[], concurrency: number, seconds: number): Promise<AuthorizationFigures> {
  const mark = cpuMark(gw);
  const run = await wrkClosedLoop(gw.port, requests, concurrency, seconds);
  // wrk is its own process: its CPU comes from the run, not from this one's.
  const cpuUs = cpuPer(mark, { ...cpuMark(gw), client: mark.client + run.clientCpuMs }, run.total);
  return {
    name, client: 'wrk', total: run.total, perSecond: Math.round(run.total / run.seconds), p50Ms: Number(run.p50Ms.toFixed(2)), p99Ms: Number(run.p99Ms.toFixed(2)),
    approved: run.approved, failMode: run.failMode, cpuUs,
  };
}

async function openLoop(gw: Gateway, name: string, requests: { body: string; signature: string }[], perSecond: number): Promise<AuthorizationFigures> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const latencies: number[] = [];
  const answers: string[] = [];
  const started = performance.now();
  const inFlight: Promise<void>[] = [];
  const mark = cpuMark(gw);
  for (let i = 0; i < requests.length; i++) {
    const due = started + (i * 1000) / perSecond;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const { body, signature } = requests[i] as { body: string; signature: string };
    const t0 = performance.now();
    inFlight.push(post(agent, gw.port, '/webhooks/stripe', { 'stripe-signature': signature }, body).then((res) => {
      latencies.push(performance.now() - t0);
      answers.push(res.body);
    }));
  }
  await Promise.all(inFlight);
  const seconds = (performance.now() - started) / 1000;
  agent.destroy();
  return summarize(name, "node's http", latencies, seconds, answers, cpuPer(mark, cpuMark(gw), latencies.length));
}

/** Each loop's figures in every round (BENCH_ROUNDS), then the unloaded latency once. */
export interface AuthorizationRuns {
  rounds: AuthorizationFigures[][];
  /** The disk floor of each round (durableWrites at the open loop's rate), with its CPU steal. */
  disk: (DiskFigures & { stealPct?: number })[];
  unloaded: AuthorizationFigures;
}

/** `measure`'s figures with the CPU steal of the machine while it ran. */
async function withSteal<T extends object>(measure: () => Promise<T> | T): Promise<T & { stealPct?: number }> {
  const before = machineTicks();
  const figures = await measure();
  const steal = stealPercent(before, machineTicks());
  return { ...figures, ...(steal !== undefined ? { stealPct: steal } : {}) };
}

/**
 * `databaseUrl`'s PostgreSQL keeps its WAL on the file system of `diskDir` (the bench's embedded
 * cluster lives there); the disk floor is measured there.
 */
export async function benchAuthorizations(databaseUrl: string, diskDir: string): Promise<AuthorizationRuns> {
  const profile = process.env.BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [];
  const gw = await startGatewayProcess({ DATABASE_URL: databaseUrl, SPEND_ADMIN_TOKEN: ADMIN, STRIPE_WEBHOOK_SECRET: SECRET }, { nodeArgs: profile });
  const setup = new http.Agent({ keepAlive: true, maxSockets: 4 });
  try {
    const tag = `bench-auth-${Date.now()}`;
    const many = await createAgents(gw, setup, 64, `${tag}-many`);
    const [hot] = await createAgents(gw, setup, 1, `${tag}-hot`);
    // autocannon sends a number of requests; wrk runs for BENCH_SECONDS through as many as it
    // may need (it must never run out: each is a new authorization).
    const useWrk = process.env.BENCH_CLIENT !== 'autocannon' && wrkInstalled();
    const seconds = Number(process.env.BENCH_SECONDS ?? 5);
    const total = Number(process.env.BENCH_AUTHORIZATIONS ?? (useWrk ? WRK_CEILING_PER_SECOND * seconds : 20_000));
    const roundCount = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3));
    const closedLoop = (name: string, agentIds: string[], count: number, concurrency: number, forSeconds = seconds) =>
      useWrk ? wrkLoop(gw, name, signedRequests(agentIds, count), concurrency, forSeconds) : autocannonLoop(gw, name, signedRequests(agentIds, count), concurrency);
    await closedLoop('warm-up', many, useWrk ? WRK_CEILING_PER_SECOND * 2 : 2000, 32, 2);
    const floor = await startFloor();
    try {
      // Every loop in each round, in turn, so a neighbour's spike on this shared VM hits one
      // round's figures rather than all of one loop's; the caller reports medians and each round.
      const rounds: AuthorizationFigures[][] = [];
      const disk: AuthorizationRuns['disk'] = [];
      for (let round = 0; round < roundCount; round++) {
        rounds.push([
          await withSteal(() => closedLoop('32 in flight over 64 cards (64 agents)', many, total, 32)),
          await withSteal(() => closedLoop('32 in flight on one hot card', [hot as string], total, 32)),
          await withSteal(() => openLoop(gw, 'fixed 500 requests/s over 64 cards', signedRequests(many, 5000), 500)),
          { ...(await withSteal(() => openLoop(floor, 'floor: 500/s to a server that only parses', signedRequests(many, 5000), 500))), server: 'floor server' },
        ]);
        disk.push(await withSteal(() => durableWrites(diskDir, 500, 5000)));
      }
      const unloaded = await withSteal(() => closedLoop('one at a time (unloaded latency)', many, useWrk ? WRK_CEILING_PER_SECOND * 2 : 1000, 1, 2));
      return { rounds, disk, unloaded };
    } finally {
      await floor.stop();
    }
  } finally {
    setup.destroy();
    await gw.stop();
  }
}
