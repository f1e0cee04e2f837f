// The mirror's passthrough path on its own: the mirror handler and the real forwarder in front of a
// tiny upstream, with look-ups that are cached (answered without a promise) or not. What the agent
// gets, and the one log line a failing call leaves.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import type { Lookups } from '../../src/agents/lookup-cache.js';
import type { Principal } from '../../src/agents/keys.js';
import type { MirrorDeps } from '../../src/mirror/checked-call.js';
import { createForwarder } from '../../src/mirror/forward.js';
import { createMirrorHandler } from '../../src/mirror/routes.js';
import type { AgentPolicy } from '../../src/policy/store.js';
import { compilePolicy } from '../../src/policy/compile.js';

const KEY = 'sg_test_passthroughpassthroughpassthrough00';
const PRINCIPAL: Principal = { keyId: 'key_1', kind: 'agent', agentId: 'agent-1', mode: 'test' };
const BOUND: AgentPolicy = { timezone: 'UTC', status: 'active', boundPolicyId: 'p', policy: compilePolicy({ policy_id: 'p', rules: [] }, 1) };

/**
 * Upstream: /v1/broken answers 503, /v1/slow never, /v1/late after 1.3 s, anything else 200 at once.
 * Its idle connections close after 2 s, which node announces as `Keep-Alive: timeout=2`.
 */
let upstream: http.Server;
let upstreamUrl: string;
const seen: http.IncomingHttpHeaders[] = [];

before(async () => {
  upstream = http.createServer((req, res) => {
    seen.push(req.headers);
    if (req.url === '/v1/slow') return; // never answers
    if (req.url === '/v1/late') {
      setTimeout(() => res.end(JSON.stringify({ object: 'balance', status: 200 })), 1300);
      return;
    }
    const status = req.url?.startsWith('/v1/broken') ? 503 : 200;
    res.writeHead(status, { 'content-type': 'application/json', 'request-id': 'req_upstream' });
    res.end(JSON.stringify({ object: 'balance', status }));
  });
  upstream.keepAliveTimeout = 2000;
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
});

after(() => {
  upstream.closeAllConnections();
  upstream.close();
});

function lookups(cached: boolean): Lookups & { reads: number } {
  const counted = {
    reads: 0,
    async principal(presented: string) {
      counted.reads++;
      return presented === KEY ? PRINCIPAL : undefined;
    },
    async agentPolicy() {
      counted.reads++;
      return BOUND;
    },
    async registeredCard() {
      return undefined;
    },
    ...(cached ? { cached: { principal: (presented: string) => (presented === KEY ? PRINCIPAL : undefined), agentPolicy: () => BOUND } } : {}),
  };
  return counted;
}

async function mirror(look: Lookups, level = 'info', timeoutMs = 5000) {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString('utf8')) as Record<string, unknown>);
      done();
    },
  });
  const forwarder = createForwarder(upstreamUrl, { timeoutMs });
  const deps = { lookups: look, stripeKeys: { test: 'sk_test_upstream' }, forwarder, deadlineMs: 1500 } as unknown as MirrorDeps;
  const server = http.createServer(createMirrorHandler(deps, pino({ level }, sink)));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    lines,
    close: async () => {
      server.closeAllConnections();
      server.close();
      await forwarder.close();
    },
  };
}

describe('the mirror passthrough', () => {
  for (const cached of [true, false]) {
    test(`with ${cached ? 'cached' : 'uncached'} look-ups, a GET reaches Stripe with the real key and Stripe's answer comes back`, async () => {
      const look = lookups(cached);
      const m = await mirror(look);
      try {
        const res = await fetch(`${m.url}/v1/balance`, { headers: { authorization: `Bearer ${KEY}` } });
        assert.equal(res.status, 200);
        assert.equal(res.headers.get('request-id'), 'req_upstream');
        assert.deepEqual(await res.json(), { object: 'balance', status: 200 });
        assert.equal(seen.at(-1)?.authorization, 'Bearer sk_test_upstream');
        // Cached: no promise-returning read at all; uncached: the key and the policy were read.
        assert.equal(look.reads, cached ? 0 : 2);
        const denied = await fetch(`${m.url}/v1/balance`, { headers: { authorization: 'Bearer sg_test_unknownunknownunknownunknown00' } });
        assert.equal(denied.status, 401);
        assert.equal(((await denied.json()) as { error: { type: string } }).error.type, 'authentication_error');
      } finally {
        await m.close();
      }
    });
  }

  test('a 2xx leaves no log line at info level; a Stripe 5xx is relayed as is and logged as an error with its status', async () => {
    const m = await mirror(lookups(true));
    try {
      assert.equal((await fetch(`${m.url}/v1/balance`, { headers: { authorization: `Bearer ${KEY}` } })).status, 200);
      assert.equal(m.lines.length, 0);
      const res = await fetch(`${m.url}/v1/broken?x=1`, { headers: { authorization: `Bearer ${KEY}` } });
      assert.equal(res.status, 503);
      assert.deepEqual(await res.json(), { object: 'balance', status: 503 });
      assert.equal(m.lines.length, 1);
      assert.equal(m.lines[0]?.msg, 'mirror request');
      assert.equal(m.lines[0]?.level, 50); // error
      assert.equal(m.lines[0]?.status, 503);
      assert.equal(m.lines[0]?.path, '/v1/broken');
      assert.equal(typeof m.lines[0]?.ms, 'number');
      assert.equal(JSON.stringify(m.lines).includes(KEY), false);
    } finally {
      await m.close();
    }
  });

  test('at debug level every passthrough call is logged', async () => {
    const m = await mirror(lookups(true), 'debug');
    try {
      assert.equal((await fetch(`${m.url}/v1/balance`, { headers: { authorization: `Bearer ${KEY}` } })).status, 200);
      assert.equal(m.lines.filter((l) => l.msg === 'mirror request' && l.status === 200 && l.level === 20).length, 1);
    } finally {
      await m.close();
    }
  });

  test('Stripe silent past the timeout: 502 api_error to the agent, logged', async () => {
    const m = await mirror(lookups(true), 'info', 300);
    try {
      const started = performance.now();
      const res = await fetch(`${m.url}/v1/slow`, { headers: { authorization: `Bearer ${KEY}` } });
      const waited = performance.now() - started;
      assert.equal(res.status, 502);
      const body = (await res.json()) as { error: { type: string; message: string } };
      assert.equal(body.error.type, 'api_error');
      assert.match(body.error.message, /ETIMEDOUT/);
      assert.ok(waited >= 280 && waited < 3000, `answered after ${waited} ms`);
      assert.equal(m.lines.filter((l) => l.msg === 'mirror request' && l.status === 502).length, 1);
    } finally {
      await m.close();
    }
  });

  test("a call on a pooled connection has the whole timeout, even after Stripe announced a shorter Keep-Alive", async () => {
    const m = await mirror(lookups(true), 'info', 3000);
    try {
      // The first call leaves its connection pooled; Stripe said it keeps idle ones 2 s (node's
      // http.Agent then timed the socket out after 1 s, for the next request too).
      assert.equal((await fetch(`${m.url}/v1/balance`, { headers: { authorization: `Bearer ${KEY}` } })).status, 200);
      const res = await fetch(`${m.url}/v1/late`, { headers: { authorization: `Bearer ${KEY}` } });
      assert.equal(res.status, 200, 'a 1.3 s answer is within the 3 s timeout');
    } finally {
      await m.close();
    }
  });
});
