// security.allowed_endpoints patterns: parsing, matching, and how policies carry them.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PolicyError, compilePolicy } from '../../src/policy/compile.js';
import { endpointAllowed, parseEndpointPattern } from '../../src/policy/endpoints.js';
import type { EndpointPattern } from '../../src/policy/endpoints.js';
import { parseSpendMd } from '../../src/policy/spendmd.js';

const patterns = (...texts: string[]) => texts.map((t) => parseEndpointPattern(t) as EndpointPattern);

test('when a pattern names a method, then only that method matches', () => {
  const allowed = patterns('GET /v1/customers');
  assert.equal(endpointAllowed(allowed, 'GET', '/v1/customers'), true);
  assert.equal(endpointAllowed(allowed, 'get', '/v1/customers?limit=3'), true);
  assert.equal(endpointAllowed(allowed, 'POST', '/v1/customers'), false);
  assert.equal(endpointAllowed(allowed, 'GET', '/v1/customers/cus_1'), false);
});

test('when a pattern uses * and **, then * is one segment and ** one or more', () => {
  const allowed = patterns('/v1/payment_intents/*', '/v1/issuing/**');
  assert.equal(endpointAllowed(allowed, 'POST', '/v1/payment_intents/pi_1'), true);
  assert.equal(endpointAllowed(allowed, 'POST', '/v1/payment_intents/pi_1/confirm'), false);
  assert.equal(endpointAllowed(allowed, 'POST', '/v1/payment_intents'), false);
  assert.equal(endpointAllowed(allowed, 'GET', '/v1/issuing/cards/ic_1'), true);
  assert.equal(endpointAllowed(allowed, 'GET', '/v1/issuing'), false);
  assert.equal(endpointAllowed(allowed, 'GET', '/v1/issuingx/cards'), false);
});

test('when the list is empty, then nothing is allowed', () => {
  assert.equal(endpointAllowed([], 'GET', '/v1/balance'), false);
});

test('when a pattern is malformed, then the error says what a pattern looks like', () => {
  for (const bad of ['customers', 'PATCH /v1/customers', '/v1/**/x', '/v1/cus*', 'GET', '/v3/x', '/v1/a b']) {
    const result = parseEndpointPattern(bad);
    assert.equal(typeof result, 'string', bad);
  }
});

test('when a JSON policy lists allowed_endpoints, then they compile, and a bad one is reported with its path', () => {
  const policy = compilePolicy({ policy_id: 'p', rules: [], allowed_endpoints: ['GET /v1/customers', '/v1/refunds'] }, 1);
  assert.equal(policy.allowedEndpoints?.length, 2);
  assert.equal(compilePolicy({ policy_id: 'p', rules: [] }, 1).allowedEndpoints, undefined);
  assert.throws(() => compilePolicy({ policy_id: 'p', rules: [], allowed_endpoints: ['GET /v1/ok', 'nope'] }, 1), (error: unknown) => {
    assert.ok(error instanceof PolicyError);
    assert.equal(error.issues[0]?.path, 'allowed_endpoints[1]');
    return true;
  });
});

test('when SPEND.md sets security.allowed_endpoints, then it is enforced, not refused as unsupported', () => {
  const text = ['## Identity', 'agent_name: shop-bot', 'owner: ops@example.com', '## Security', 'security:', 'allowed_endpoints:', '- GET /v1/customers', '- /v1/payment_intents/*'].join('\n');
  const parsed = parseSpendMd(text);
  assert.deepEqual(parsed.document.allowed_endpoints, ['GET /v1/customers', '/v1/payment_intents/*']);
  assert.equal(parsed.unenforced.length, 0);
});
