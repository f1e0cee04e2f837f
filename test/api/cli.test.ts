// The `spend` CLI, run in-process against a real gateway: what it prints, the exit code, and that
// what it did is visible through the admin and agent APIs.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { run } from '../../src/cli/main.js';
import { ADMIN_TOKEN, agentWithPolicy, startTestGateway, uniqueId } from '../helpers/gateway.js';
import type { TestGateway } from '../helpers/gateway.js';

let gw: TestGateway;
let dir: string;
before(async () => {
  gw = await startTestGateway();
  dir = await mkdtemp(path.join(tmpdir(), 'spendgate-cli-'));
});
after(async () => {
  await gw.stop();
  await rm(dir, { recursive: true, force: true });
});

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `spend ...args` against the test gateway (env overrides win; undefined removes a variable). */
async function spend(args: string[], env: Record<string, string | undefined> = {}): Promise<Result> {
  let stdout = '';
  let stderr = '';
  const code = await run(args, {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env: { SPEND_ADMIN_URL: gw.adminUrl, SPEND_ADMIN_TOKEN: ADMIN_TOKEN, ...env },
    cwd: dir,
  });
  return { code, stdout, stderr };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function spendJson(args: string[]): Promise<any> {
  const result = await spend([...args, '--json']);
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout);
}

function spendMd(agent: string, spending: string[] = ['per_transaction: 10 USD', 'daily_limit: 25 USD'], more: string[] = []): string {
  return ['# SPEND.md', '## Identity', `agent_name: ${agent}`, 'owner: ops@example.com', '## Spending', 'spend:', ...spending, ...more, ''].join('\n');
}

async function fixture(name: string, text: string): Promise<string> {
  const file = path.join(dir, `${uniqueId('f')}-${name}`);
  await writeFile(file, text);
  return file;
}

const IP_ALLOWLIST = ['## Security', 'security:', 'ip_allowlist:', '  - 10.0.0.0/8'];
const check = (agentId: string, amount: number) => ({ agent_id: agentId, action_type: 'purchase', amount, currency: 'USD', counterparty: 'openai.com' });

function oneLine(stderr: string): string {
  const lines = stderr.split('\n').filter(Boolean);
  assert.equal(lines.length, 1, `expected one line on stderr, got: ${stderr}`);
  assert.match(lines[0] ?? '', /^spend: /);
  return lines[0] ?? '';
}

test('when a valid SPEND.md is validated, then it prints the agent and its rules and exits 0, offline', async () => {
  const agent = uniqueId('cli-valid');
  const result = await spend(['policy', 'validate', await fixture('SPEND.md', spendMd(agent))], { SPEND_ADMIN_URL: 'http://127.0.0.1:9', SPEND_ADMIN_TOKEN: undefined });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stderr, '');
  assert.match(result.stdout, /is valid/);
  assert.match(result.stdout, new RegExp(`Agent: +${agent} \\(owner ops@example.com, time zone UTC\\)`));
  assert.match(result.stdout, /max_amount .*limit=10\.00 currency=USD/);
  assert.match(result.stdout, /velocity_limit .*window=daily/);
  assert.doesNotMatch(result.stdout, /NOT ENFORCED/);
});

test('when a SPEND.md has errors, then validate exits 1 and lists every error with its line', async () => {
  const file = await fixture('SPEND.md', spendMd(uniqueId('cli-bad'), ['per_transaction: ten USD', 'daily_limit: 25']));
  const result = await spend(['policy', 'validate', file]);
  assert.equal(result.code, 1);
  assert.equal(result.stdout, '');
  assert.match(result.stderr, /^spend: .*SPEND\.md: line 7: spend\.per_transaction: /);
  assert.match(result.stderr, /\n {2}line 7: spend\.per_transaction: /);
  assert.match(result.stderr, /\n {2}line 8: spend\.daily_limit: /);
});

test('when a SPEND.md asks for an IP allowlist, then validate says loudly that it is NOT ENFORCED', async () => {
  const result = await spend(['policy', 'validate', await fixture('SPEND.md', spendMd(uniqueId('cli-ip'), undefined, IP_ALLOWLIST))]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /NOT ENFORCED/);
  assert.match(result.stdout, /security\.ip_allowlist/);
  assert.match(result.stdout, /--allow-unenforced/);
  const json = await spendJson(['policy', 'validate', await fixture('SPEND.md', spendMd(uniqueId('cli-ip'), undefined, IP_ALLOWLIST))]);
  assert.deepEqual(json.not_enforced.map((s: { key: string }) => s.key), ['security.ip_allowlist']);
});

test('when a JSON policy is validated, then its problems are listed by path', async () => {
  const good = { policy_id: uniqueId('p'), rules: [{ rule_id: 'r1', rule_type: 'max_amount', parameters: { limit: 10, currency: 'USD' } }] };
  const ok = await spend(['policy', 'validate', await fixture('policy.json', JSON.stringify(good))]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /valid: policy .*1 rule/);
  const oneBad = { ...good, rules: [{ rule_id: 'r1', rule_type: 'max_amount', parameters: { currency: 'USD' } }] };
  const failed = await spend(['policy', 'validate', await fixture('policy.json', JSON.stringify(oneBad))]);
  assert.equal(failed.code, 1);
  assert.match(oneLine(failed.stderr), /^spend: \S*policy\.json: rules\[0\]\.parameters\.limit: /);
  const twoBad = { ...good, rules: [...oneBad.rules, { rule_id: 'r1', rule_type: 'no_such_rule', parameters: {} }] };
  const both = await spend(['policy', 'validate', await fixture('policy.json', JSON.stringify(twoBad))]);
  assert.equal(both.code, 1);
  assert.match(both.stderr, /^spend: \S*policy\.json: invalid policy \(\d+ problems\)\n/);
  assert.match(both.stderr, /\n {2}rules\[0\]\.parameters\.limit: /);
  assert.match(both.stderr, /\n {2}rules\[1\]\.rule_type: /);
});

test('when a SPEND.md is applied, then the agent exists with the policy; a changed file makes version 2', async () => {
  const agent = uniqueId('cli-apply');
  const applied = await spend(['policy', 'apply', await fixture('SPEND.md', spendMd(agent))]);
  assert.equal(applied.code, 0, applied.stderr);
  assert.match(applied.stdout, new RegExp(`Agent: +${agent}`));
  assert.match(applied.stdout, new RegExp(`Policy: ${agent} version 1, 2 rules`));
  const created = await gw.admin('GET', `/agents/${agent}`);
  assert.equal(created.status, 200);
  assert.equal(created.body.policy_id, agent);

  const changed = await spendJson(['policy', 'apply', await fixture('SPEND.md', spendMd(agent, ['per_transaction: 20 USD']))]);
  assert.equal(changed.agent.id, agent);
  assert.equal(changed.policy.version, 2);
  assert.deepEqual(changed.policy.rules.map((r: { rule_type: string }) => r.rule_type), ['max_amount']);
});

test('when a SPEND.md asks for unenforceable controls, then apply refuses it unless --allow-unenforced', async () => {
  const agent = uniqueId('cli-unenforced');
  const file = await fixture('SPEND.md', spendMd(agent, undefined, IP_ALLOWLIST));
  const refused = await spend(['policy', 'apply', file]);
  assert.equal(refused.code, 1);
  assert.equal(refused.stdout, '');
  assert.match(refused.stderr, /^spend: .*security\.ip_allowlist/);
  assert.match(refused.stderr, /--allow-unenforced/);
  assert.equal((await gw.admin('GET', `/agents/${agent}`)).status, 404);

  const accepted = await spend(['policy', 'apply', file, '--allow-unenforced']);
  assert.equal(accepted.code, 0, accepted.stderr);
  assert.match(accepted.stdout, /NOT ENFORCED/);
  assert.match(accepted.stdout, /security\.ip_allowlist/);
  assert.equal((await gw.admin('GET', `/agents/${agent}`)).body.policy_id, agent);
});

test('when a JSON policy is applied twice, then the first creates it and the second adds version 2', async () => {
  const policy = { policy_id: uniqueId('cli-json'), rules: [{ rule_id: 'r1', rule_type: 'max_amount', parameters: { limit: 10, currency: 'USD' } }] };
  const first = await spendJson(['policy', 'apply', await fixture('policy.json', JSON.stringify(policy))]);
  assert.equal(first.version, 1);
  const second = await spend(['policy', 'apply', await fixture('policy.json', JSON.stringify({ ...policy, name: 'renamed' }))]);
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stdout, new RegExp(`Saved policy ${policy.policy_id} version 2`));
});

test('when keys are created, listed, rotated and revoked, then the agent port honours each step', async () => {
  const { agentId } = await agentWithPolicy(gw, [{ rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 100, currency: 'USD' } }]);
  const created = await spend(['api-key', 'create', '--agent', agentId]);
  assert.equal(created.code, 0, created.stderr);
  const key = /\b(sg_test_[0-9A-Za-z]{32,})\b/.exec(created.stdout)?.[1] ?? '';
  assert.ok(key, created.stdout);
  assert.match(created.stdout, /will not be shown again/);
  assert.equal((await gw.agent('POST', '/v1/checks', key, check(agentId, 5))).status, 200);

  const listed = await spend(['api-key', 'list', '--agent', agentId]);
  assert.equal(listed.code, 0, listed.stderr);
  assert.doesNotMatch(listed.stdout, /sg_test_[0-9A-Za-z]{32,}/);
  const keys = (await spendJson(['api-key', 'list', '--agent', agentId])).data;
  assert.equal(keys.length, 2);
  const keyId = /Created test key (key_\S+)/.exec(created.stdout)?.[1] ?? '';
  assert.ok(keys.some((k: { id: string }) => k.id === keyId), created.stdout);
  for (const k of keys) assert.match(listed.stdout, new RegExp(k.id));

  const rotated = await spendJson(['api-key', 'rotate', keyId, '--grace-hours', '1']);
  assert.equal(rotated.previous.id, keyId);
  assert.equal((await gw.agent('POST', '/v1/checks', rotated.key, check(agentId, 5))).status, 200);
  assert.equal((await gw.agent('POST', '/v1/checks', key, check(agentId, 5))).status, 200, 'the old key works during the grace period');

  const revoked = await spend(['api-key', 'revoke', keyId]);
  assert.equal(revoked.code, 0, revoked.stderr);
  assert.match(revoked.stdout, new RegExp(`Revoked key ${keyId}`));
  assert.equal((await gw.agent('POST', '/v1/checks', key, check(agentId, 5))).status, 401);

  const all = await spend(['api-key', 'revoke', '--all', '--agent', agentId]);
  assert.equal(all.code, 0, all.stderr);
  assert.match(all.stdout, new RegExp(`Revoked 2 agent keys of agent ${agentId}`));
  assert.equal((await gw.agent('POST', '/v1/checks', rotated.key, check(agentId, 5))).status, 401);
  assert.ok((await spendJson(['api-key', 'list', '--agent', agentId])).data.every((k: { status: string }) => k.status === 'revoked'));
});

test('when a key id and --all are both given, or neither, then revoke refuses before calling the gateway', async () => {
  assert.match(oneLine((await spend(['api-key', 'revoke', 'key_x', '--all'])).stderr), /not both/);
  const neither = await spend(['api-key', 'revoke']);
  assert.equal(neither.code, 1);
  assert.match(oneLine(neither.stderr), /give a key id, or --all/);
});

/** A stand-in admin API that records what it was sent (revoking every key of a shared database would break other tests). */
async function recordingAdmin(reply: unknown) {
  const seen: { method: string; url: string; authorization: string; body: string }[] = [];
  const server = createServer(async (req: IncomingMessage, res) => {
    let body = '';
    for await (const chunk of req) body += String(chunk);
    seen.push({ method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization ?? '', body });
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(reply));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, seen, close: () => new Promise((resolve) => server.close(resolve)) };
}

test('when every key is revoked with --all, then it sends {"all": true} without asking and prints the count', async () => {
  const admin = await recordingAdmin({ revoked: 3, data: [] });
  try {
    const result = await spend(['api-key', 'revoke', '--all'], { SPEND_ADMIN_URL: admin.url });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /Revoked 3 agent keys of all agents/);
    assert.deepEqual(admin.seen.map((r) => [r.method, r.url, JSON.parse(r.body)]), [['POST', '/admin/v1/api-keys/revoke', { all: true }]]);
    assert.equal(admin.seen[0]?.authorization, `Bearer ${ADMIN_TOKEN}`);
  } finally {
    await admin.close();
  }
});

test('when no token is given, then the CLI uses DATA_DIR/admin.key (default ./.spendgate/admin.key)', async () => {
  const admin = await recordingAdmin({ data: [] });
  try {
    await mkdir(path.join(dir, '.spendgate'), { recursive: true });
    await writeFile(path.join(dir, '.spendgate', 'admin.key'), 'sga_fromDefaultDataDir0123456789abcdefgh\n');
    await mkdir(path.join(dir, 'custom'), { recursive: true });
    await writeFile(path.join(dir, 'custom', 'admin.key'), 'sga_fromCustomDataDir0123456789abcdefghi\n');
    assert.equal((await spend(['api-key', 'list'], { SPEND_ADMIN_URL: admin.url, SPEND_ADMIN_TOKEN: undefined })).code, 0);
    assert.equal((await spend(['api-key', 'list'], { SPEND_ADMIN_URL: admin.url, SPEND_ADMIN_TOKEN: undefined, DATA_DIR: 'custom' })).code, 0);
    assert.equal((await spend(['api-key', 'list', '--token', 'flag-token-0123456789'], { SPEND_ADMIN_URL: admin.url })).code, 0);
    assert.deepEqual(admin.seen.map((r) => r.authorization), [
      'Bearer sga_fromDefaultDataDir0123456789abcdefgh',
      'Bearer sga_fromCustomDataDir0123456789abcdefghi',
      'Bearer flag-token-0123456789',
    ]);
  } finally {
    await admin.close();
  }
  const none = await spend(['api-key', 'list'], { SPEND_ADMIN_TOKEN: undefined, DATA_DIR: 'nowhere' });
  assert.equal(none.code, 1);
  assert.match(oneLine(none.stderr), /no admin credential/);
});

test('when an agent is blocked, then violations shows it as a table and as JSON', async () => {
  const { agentId, policyId, key } = await agentWithPolicy(gw, [{ rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 10, currency: 'USD' } }]);
  assert.equal((await gw.agent('POST', '/v1/checks', key, check(agentId, 50))).body.decision, 'block');
  assert.equal((await gw.agent('POST', '/v1/checks', key, check(agentId, 60))).body.decision, 'block');

  const table = await spend(['violations', '--agent', agentId]);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, new RegExp(`${agentId} .*purchase .*60\\.00 USD .*block .*max_amount .*max `));
  assert.match(table.stdout, /2 of 2 violations/);

  const json = await spendJson(['violations', '--agent', agentId, '--decision', 'block', '--reason', 'max_amount', '--policy', policyId]);
  assert.equal(json.pagination.total_count, 2);
  assert.deepEqual(json.data.map((v: { amount: number }) => v.amount), [60, 50]);

  const firstPage = await spendJson(['violations', '--agent', agentId, '--limit', '1']);
  assert.equal(firstPage.data.length, 1);
  assert.equal(firstPage.pagination.has_more, true);
  const paged = await spend(['violations', '--agent', agentId, '--limit', '1']);
  assert.match(paged.stdout, new RegExp(`--cursor ${firstPage.pagination.next_cursor}`));
  const everything = await spendJson(['violations', '--agent', agentId, '--limit', '1', '--all']);
  assert.deepEqual(everything.data.map((v: { amount: number }) => v.amount), [60, 50]);
  assert.equal(everything.pagination.has_more, false);

  const none = await spend(['violations', '--agent', uniqueId('nobody')]);
  assert.match(none.stdout, /No violations match/);
});

test('when the token is wrong, then the CLI exits 1 with one line that does not show the token', async () => {
  const token = 'wrong-token-9876543210-secret';
  const result = await spend(['api-key', 'list'], { SPEND_ADMIN_TOKEN: token });
  assert.equal(result.code, 1);
  assert.equal(result.stdout, '');
  assert.match(oneLine(result.stderr), /admin credentials/i);
  assert.doesNotMatch(result.stderr, /9876543210/);
});

test('when the gateway is not running, then the CLI exits 1 saying it cannot reach it', async () => {
  const admin = await recordingAdmin({});
  await admin.close(); // a port that was just free: nothing listens there now
  const result = await spend(['violations'], { SPEND_ADMIN_URL: admin.url });
  assert.equal(result.code, 1);
  assert.equal(oneLine(result.stderr), `spend: cannot reach the gateway at ${admin.url} (is it running?)`);
});

test('when an option is invalid or a command unknown, then commander errors are one "spend:" line too', async () => {
  const badLimit = await spend(['violations', '--limit', 'lots']);
  assert.equal(badLimit.code, 1);
  assert.match(oneLine(badLimit.stderr), /--limit/);
  const unknown = await spend(['polcy']);
  assert.equal(unknown.code, 1);
  assert.match(oneLine(unknown.stderr), /unknown command 'polcy'/);
  const help = await spend(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage: spend/);
});

test('when an agent has approval requests, then spend approvals list shows them as a table and as JSON, and says approving is not built yet', async () => {
  const { agentId } = await agentWithPolicy(gw, [{ rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 100, currency: 'USD' } }]);
  await gw.knex('approvals').insert({ id: `apr_${uniqueId('x').replace(/[^A-Za-z0-9]/g, '')}`, agent_id: agentId, check_id: uniqueId('chk'), source: 'stripe', action_type: 'card_authorization', amount: 4200, currency: 'usd', counterparty: 'ACME CLOUD' });
  const table = await spend(['approvals', 'list', '--agent', agentId]);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /ACME CLOUD/);
  assert.match(table.stdout, /42\.00/);
  assert.match(table.stdout, /not built yet/);
  const json = await spendJson(['approvals', 'list', '--agent', agentId]);
  assert.equal(json.data.length, 1);
  assert.equal(json.data[0].status, 'pending');
  const bad = await spend(['approvals', 'list', '--status', 'maybe']);
  assert.equal(bad.code, 1);
});
