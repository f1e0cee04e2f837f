// When the database is down, the gateway answers 503 quickly, in each port's error shape, and
// decides nothing.
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { uncachedLookups } from '../../src/agents/lookup-cache.js';
import { createAdminApp, createAgentApp } from '../../src/app.js';
import type { AppDeps } from '../../src/app.js';
import { connect } from '../../src/db/database.js';
import { freePort } from '../../src/db/embedded.js';
import { createLogger } from '../../src/http/logging.js';
import { createMetrics } from '../../src/http/metrics.js';
import { createLedger } from '../../src/ledger/ledger.js';

async function deadDatabaseDeps(): Promise<AppDeps> {
  const knex = connect(`postgres://postgres:x@127.0.0.1:${await freePort()}/nothing`);
  return { knex, lookups: uncachedLookups(knex), ledger: createLedger(knex), metrics: createMetrics(), logger: createLogger('silent'), adminToken: 'admin-token-0123456789' };
}

async function listen(app: ReturnType<typeof createAgentApp>) {
  const server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise((r) => server.close(r)) };
}

test('when the database is unreachable, then a check answers 503 api_error within 2 s', async () => {
  const deps = await deadDatabaseDeps();
  const server = await listen(createAgentApp(deps));
  try {
    const started = performance.now();
    const res = await fetch(`${server.url}/v1/checks`, {
      method: 'POST',
      headers: { 'x-api-key': `sg_test_${'a'.repeat(40)}`, 'content-type': 'application/json' },
      body: JSON.stringify({ action_type: 'refund', amount: 5, currency: 'USD' }),
    });
    const elapsed = performance.now() - started;
    assert.equal(res.status, 503);
    const body = (await res.json()) as { error: { type: string; code: string; request_id: string } };
    assert.equal(body.error.type, 'api_error');
    assert.equal(body.error.code, 'unavailable');
    assert.ok(elapsed < 2000, `answered in ${Math.round(elapsed)} ms`);
    assert.equal((await fetch(`${server.url}/readyz`)).status, 503);
    assert.equal((await fetch(`${server.url}/healthz`)).status, 200, 'liveness does not depend on the database');
  } finally {
    await server.close();
    await deps.knex.destroy();
  }
});

test('when the database is unreachable, then the admin API answers 503 in the admin shape', async () => {
  const deps = await deadDatabaseDeps();
  const server = await listen(createAdminApp(deps));
  try {
    const res = await fetch(`${server.url}/admin/v1/agents`, { headers: { authorization: 'Bearer admin-token-0123456789' } });
    assert.equal(res.status, 503);
    const body = (await res.json()) as { error: { code: string; message: string; request_id: string } };
    assert.equal(body.error.code, 'unavailable');
    assert.match(body.error.request_id, /^req_/);
  } finally {
    await server.close();
    await deps.knex.destroy();
  }
});
