// `npm run bench`: prints figures, never asserts timings. Uses BENCH_DATABASE_URL if set (it writes
// bench agents and decisions there), else a throwaway embedded PostgreSQL with durable commits.
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { connect, migrate } from '../src/db/database.js';
import { startEmbeddedPostgres } from '../src/db/embedded.js';
import { benchAuthorizations } from './authorizations.js';
import { benchChecks } from './checks.js';
import { benchDecide } from './decide.js';
import { benchFreeze } from './freeze.js';
import { benchLedger } from './ledger.js';
import { benchMirror } from './mirror.js';

// `npm run bench -- mirror` runs one section; no argument runs them all.
const only = process.argv[2];
const wanted = (section: string) => !only || only === section;

const dataDir = await mkdtemp(path.join(tmpdir(), 'spendgate-bench-'));
const db = process.env.BENCH_DATABASE_URL ? undefined : await startEmbeddedPostgres(dataDir, { info: () => undefined, warn: console.error }, 'spendgate_bench');
const url = process.env.BENCH_DATABASE_URL ?? db?.url ?? '';
const knex = connect(url, 10);
try {
  await migrate(knex);
  const settings = await knex.raw(`select name, setting from pg_settings where name in ('fsync', 'synchronous_commit', 'server_version')`);
  console.log(`machine: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), node ${process.version}`);
  console.log(`postgres: ${settings.rows.map((r: { name: string; setting: string }) => `${r.name}=${r.setting}`).join(' ')}`);

  if (wanted('policy')) await policySection();
  if (wanted('mirror')) await mirrorSection();
  if (wanted('authorizations')) await authorizationSection();
  if (wanted('freeze')) await freezeSection();
} finally {
  await knex.destroy();
  await db?.stop();
  await rm(dataDir, { recursive: true, force: true });
}

async function mirrorSection() {
  console.log('\nStripe mirror: 32 autocannon connections for 8 s each (req/s), plus one probe connection for p50/p99; every server its own process');
  const figures = await benchMirror(url);
  for (const f of figures) {
    console.log(`  ${f.name.padEnd(66)} ${f.requestsPerSecond.toLocaleString('en').padStart(6)} req/s  p50 ${f.p50Ms} ms  p99 ${f.p99Ms} ms${f.non2xx ? `  (${f.non2xx} non-2xx!)` : ''}`);
  }
  const by = (prefix: string) => figures.find((f) => f.name.startsWith(prefix));
  const floor = by('GET through minimal');
  const gateway = by('GET through spendgate');
  const passPost = by('POST /v1/customers');
  const checked = by('POST /v1/payment_intents');
  if (floor && gateway) console.log(`  passthrough vs minimal proxy: ${(gateway.requestsPerSecond / floor.requestsPerSecond).toFixed(2)}x throughput, ${(gateway.p50Ms - floor.p50Ms).toFixed(2)} ms added p50`);
  if (passPost && checked) console.log(`  checked money-moving POST vs passthrough POST: ${(checked.p50Ms - passPost.p50Ms).toFixed(2)} ms added p50`);
}

async function freezeSection() {
  console.log('\nfreeze all: 10,000 registered Stripe cards, one POST /admin/v1/cards/freeze; fake Stripe in its own process with a fixed latency per call');
  for (const f of await benchFreeze(url, knex, 10_000, [{ concurrency: 16, latencyMs: 20 }, { concurrency: 64, latencyMs: 20 }])) {
    console.log(`  concurrency ${String(f.concurrency).padStart(2)}, ${f.latencyMs} ms per call: frozen locally ${f.frozenAtAnswer.toLocaleString('en')} cards when the answer came, after ${f.answerMs} ms (the transaction alone: ${f.transactionMs} ms); Stripe confirmed ${f.confirmed.toLocaleString('en')} after ${(f.confirmedMs / 1000).toFixed(1)} s (${f.callsPerSecond.toLocaleString('en')} calls/s)`);
  }
}

async function authorizationSection() {
  console.log('\ncard authorizations: signed Stripe issuing_authorization.request events, each decided and reserved (gateway in its own process)');
  for (const f of await benchAuthorizations(url)) {
    console.log(`  ${f.name.padEnd(40)} ${f.perSecond.toLocaleString('en').padStart(6)} decisions/s  p50 ${f.p50Ms} ms  p99 ${f.p99Ms} ms  (${f.total} requests, ${f.approved} approved${f.failMode ? `, ${f.failMode} by FAIL MODE!` : ''})`);
  }
}

async function policySection() {
  const d = benchDecide();
  console.log(`\ndecide(): ${d.rules}-rule policy: ${d.perDecisionUs.toFixed(2)} µs per decision (${d.decisionsPerSecond.toLocaleString('en')} decisions/s, one core)`);

  console.log('\nledger: durable reservations (decide + reserve + record, one transaction per coalesced batch)');
  for (const [budgets, total, concurrency] of [[1, 20000, 64], [64, 20000, 64]] as const) {
    const f = await benchLedger(knex, budgets, total, concurrency);
    console.log(`  ${String(budgets).padStart(2)} budget${budgets === 1 ? ' ' : 's'}: ${f.perSecond.toLocaleString('en').padStart(6)} reservations/s  p50 ${f.p50Ms} ms  p99 ${f.p99Ms} ms  (${f.reservations} reservations, ${f.concurrency} in flight)`);
  }

  const naive = await benchLedger(knex, 1, 5000, 64, 1);
  console.log(`  for comparison, one transaction per reservation (no coalescing), one budget: ${naive.perSecond.toLocaleString('en')} reservations/s  p50 ${naive.p50Ms} ms`);

  console.log('\ncheck API: POST /v1/checks over HTTP keep-alive, one agent, every check allowed and reserved');
  for (const concurrency of [1, 32]) {
    const c = await benchChecks(url, concurrency === 1 ? 2000 : 10000, concurrency);
    console.log(`  ${String(concurrency).padStart(2)} in flight: ${c.perSecond.toLocaleString('en').padStart(6)} checks/s  p50 ${c.p50Ms} ms  p99 ${c.p99Ms} ms  (${c.total} checks)`);
  }
}
