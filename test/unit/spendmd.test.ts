import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { PolicyError, compilePolicy } from '../../src/policy/compile.js';
import { decide } from '../../src/policy/decide.js';
import type { Decision } from '../../src/policy/decide.js';
import type { Action, CompiledPolicy, CompiledRule } from '../../src/policy/model.js';
import { SpendMdError, parseSpendMd } from '../../src/policy/spendmd.js';
import type { SpendMdIssue, SpendMdPolicy } from '../../src/policy/spendmd.js';
import { usageKey, usageSpecFor } from '../../src/policy/usage.js';
import type { Usage } from '../../src/policy/usage.js';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8');
const parseFixture = (name: string) => parseSpendMd(fixture(name), name);
const md = (...lines: string[]) => lines.join('\n');
const IDENTITY = ['## Identity', 'agent_name: test-agent', 'owner: ops@company.com'];

/** The issues parseSpendMd reports (fails the test if the text parses). */
function issuesOf(text: string, file = 'SPEND.md'): SpendMdIssue[] {
  try {
    parseSpendMd(text, file);
  } catch (error) {
    assert.ok(error instanceof SpendMdError, `a SpendMdError, got ${String(error)}`);
    assert.ok(error.issues.length > 0);
    return error.issues;
  }
  assert.fail('expected the SPEND.md to be rejected');
}

function compiled(parsed: SpendMdPolicy, version = 1): CompiledPolicy {
  return compilePolicy(parsed.document, version);
}

function ruleOfType(policy: CompiledPolicy, type: CompiledRule['type'], window?: string): CompiledRule {
  const rule = policy.rules.find((r) => r.type === type && (window === undefined || ('window' in r && r.window === window)));
  assert.ok(rule, `a ${type}${window ? ` (${window})` : ''} rule`);
  return rule;
}

describe('parseSpendMd: the seed examples', () => {
  test('when the security-hardened example is parsed, then identity and every spending control become rules', () => {
    const parsed = parseFixture('secure-agent.SPEND.md');
    assert.deepEqual(parsed.agent, { id: 'secure-agent', owner: 'security@company.com' });
    assert.equal(parsed.document.policy_id, 'secure-agent');
    const policy = compiled(parsed);
    assert.deepEqual(policy.rules.map((r) => r.type).sort(), [
      'category_blocklist',
      'country_restriction',
      'escalate_if',
      'max_amount',
      'merchant_allowlist',
      'velocity_limit',
      'velocity_limit',
    ]);

    const perTransaction = ruleOfType(policy, 'max_amount');
    assert.ok(perTransaction.type === 'max_amount');
    assert.deepEqual(perTransaction.limit, { amount: 1000, currency: 'usd' });

    const daily = ruleOfType(policy, 'velocity_limit', 'daily');
    assert.ok(daily.type === 'velocity_limit');
    assert.deepEqual(daily.limit, { amount: 2500, currency: 'usd' });
    const monthly = ruleOfType(policy, 'velocity_limit', 'monthly');
    assert.ok(monthly.type === 'velocity_limit');
    assert.deepEqual(monthly.limit, { amount: 10_000, currency: 'usd' });

    const allowlist = ruleOfType(policy, 'merchant_allowlist');
    assert.ok(allowlist.type === 'merchant_allowlist');
    assert.deepEqual([...allowlist.merchants].sort(), ['anthropic.com', 'openai.com']);
    assert.ok(allowlist.categories, 'allowed_categories: [] is an explicit, empty category alternative');
    assert.equal(allowlist.categories.mccs.size + allowlist.categories.stripeNames.size, 0);

    const blocked = ruleOfType(policy, 'category_blocklist');
    assert.ok(blocked.type === 'category_blocklist');
    for (const mcc of ['7995', '6051', '4829', '6012']) assert.ok(blocked.categories.mccs.has(mcc), mcc);

    const geo = ruleOfType(policy, 'country_restriction');
    assert.ok(geo.type === 'country_restriction');
    assert.deepEqual([...(geo.allowed ?? [])], ['US']);
    assert.equal(geo.blocked, undefined);

    const approval = ruleOfType(policy, 'escalate_if');
    assert.ok(approval.type === 'escalate_if');
    assert.deepEqual(approval.above, { amount: 1000, currency: 'usd' });
    assert.deepEqual(approval.notifyAtOrAbove, { amount: 100, currency: 'usd' });
  });

  test('when the security-hardened example is parsed, then unenforced controls and inactive settings are listed, never rules', () => {
    const parsed = parseFixture('secure-agent.SPEND.md');
    const lastKey = (k: string) => k.split('.').pop();
    assert.deepEqual(parsed.unenforced.map((s) => lastKey(s.key)).sort(), ['api_key_rotation_days', 'ip_allowlist', 'require_https', 'require_signed_requests']);
    assert.deepEqual(parsed.inactive.map((s) => s.key).sort(), [
      'approval.approval_channels',
      'approval.notify_on_all',
      'approval.timeout_action',
      'approval.timeout_minutes',
      'notifications.email',
      'notifications.events',
      'notifications.slack',
      'security.audit_retention_days',
    ]);
    const byKey = new Map([...parsed.unenforced, ...parsed.inactive].map((s) => [lastKey(s.key), s]));
    assert.deepEqual(byKey.get('ip_allowlist')?.value, ['10.0.0.0/8']);
    assert.equal(byKey.get('ip_allowlist')?.line, 51);
    assert.equal(byKey.get('require_https')?.line, 22);
    assert.equal(byKey.get('api_key_rotation_days')?.value, 30);
    assert.equal(byKey.get('timeout_minutes')?.value, 10);
    assert.equal(byKey.get('timeout_action')?.value, 'deny');
    assert.equal(byKey.get('audit_retention_days')?.value, 730);
    for (const s of [...parsed.unenforced, ...parsed.inactive]) assert.ok(s.note.length > 0, `${s.key} explains itself`);

    const rulesText = JSON.stringify(parsed.document.rules);
    for (const word of ['https', 'ip_allowlist', '10.0.0.0', 'signed', 'rotation', 'timeout', 'slack', 'email', 'transaction.completed', 'audit']) {
      assert.ok(!rulesText.includes(word), `${word} is not in the rules`);
    }
  });

  test('when spend: is followed by unindented keys (as seed 000 prints it), then it means the same as the indented fenced form', () => {
    const bare = parseFixture('spendmd/start-restrictive.SPEND.md');
    const indented = parseFixture('spendmd/start-restrictive.indented.SPEND.md');
    assert.deepEqual(bare.document, indented.document);
    assert.deepEqual(bare.agent, indented.agent);
    assert.deepEqual(bare.unenforced.map((s) => [s.key, s.value]), indented.unenforced.map((s) => [s.key, s.value]));
    assert.deepEqual(bare.inactive.map((s) => [s.key, s.value]), indented.inactive.map((s) => [s.key, s.value]));
    assert.equal(bare.document.rules.length, 5, 'per_transaction, daily, monthly, allowlist, approval');
  });

  test('when the security-hardened example is fenced and indented, then it is deep-equal to the bare seed text', () => {
    const bare = parseFixture('secure-agent.SPEND.md');
    const fenced = parseFixture('spendmd/secure-agent.fenced.SPEND.md');
    assert.deepEqual(fenced.document, bare.document);
    assert.deepEqual(fenced.agent, bare.agent);
    assert.deepEqual(fenced.unenforced.map((s) => [s.key, s.value]), bare.unenforced.map((s) => [s.key, s.value]));
    assert.deepEqual(fenced.inactive.map((s) => [s.key, s.value]), bare.inactive.map((s) => [s.key, s.value]));
  });

  test('when the file has Windows line endings, then it means the same', () => {
    const text = fixture('secure-agent.SPEND.md');
    assert.deepEqual(parseSpendMd(text.replace(/\n/g, '\r\n')).document, parseSpendMd(text).document);
  });

  test('when the Start Restrictive example is parsed, then its spend keys map to the documented rule types', () => {
    const policy = compiled(parseFixture('spendmd/start-restrictive.SPEND.md'));
    const max = ruleOfType(policy, 'max_amount');
    assert.ok(max.type === 'max_amount');
    assert.deepEqual(max.limit, { amount: 500, currency: 'usd' });
    const daily = ruleOfType(policy, 'velocity_limit', 'daily');
    assert.ok(daily.type === 'velocity_limit');
    assert.deepEqual(daily.limit, { amount: 1000, currency: 'usd' });
    const monthly = ruleOfType(policy, 'velocity_limit', 'monthly');
    assert.ok(monthly.type === 'velocity_limit');
    assert.deepEqual(monthly.limit, { amount: 5000, currency: 'usd' });
    const allow = ruleOfType(policy, 'merchant_allowlist');
    assert.ok(allow.type === 'merchant_allowlist');
    assert.deepEqual([...allow.merchants].sort(), ['anthropic.com', 'openai.com']);
    const approval = ruleOfType(policy, 'escalate_if');
    assert.ok(approval.type === 'escalate_if');
    assert.deepEqual(approval.above, { amount: 2500, currency: 'usd' });
    assert.deepEqual(approval.notifyAtOrAbove, { amount: 500, currency: 'usd' });
  });

  test('when the seed prints two "## Security" snippets, then both land in unenforced and no rule is made', () => {
    const parsed = parseFixture('spendmd/security-snippets.SPEND.md');
    assert.deepEqual(parsed.document.rules, []);
    assert.deepEqual(parsed.unenforced.map((s) => [s.key, s.value, s.line]), [
      ['security.ip_allowlist', ['203.0.113.0/24', '198.51.100.0/24', '192.0.2.50/32'], 9],
      ['security.require_signed_requests', true, 18],
    ]);
  });
});

describe('parseSpendMd: layout variants mean the same', () => {
  const reference = parseSpendMd(md(...IDENTITY, '## Spending', 'spend:', '  daily_limit: 10 USD', '  per_transaction: 5 USD'));
  const variants: [string, string][] = [
    ['unindented keys under spend:', md(...IDENTITY, '## Spending', 'spend:', 'daily_limit: 10 USD', 'per_transaction: 5 USD')],
    ['unindented keys after a comment line', md(...IDENTITY, '## Spending', 'spend: # limits', '# low limits', 'daily_limit: 10 USD', 'per_transaction: 5 USD')],
    ['keys without the spend: wrapper', md(...IDENTITY, '## Spending', 'daily_limit: 10 USD', 'per_transaction: 5 USD')],
    ['a heading with a subtitle', md(...IDENTITY, '## Spending - Start Restrictive', 'spend:', 'daily_limit: 10 USD', 'per_transaction: 5 USD')],
    ['a heading without a space', md(...IDENTITY, '##Spending', 'spend:', 'daily_limit: 10 USD', 'per_transaction: 5 USD')],
    ['an upper-case heading', md(...IDENTITY, '## SPENDING CONTROLS', 'spend:', 'daily_limit: 10 USD', 'per_transaction: 5 USD')],
    ['a fenced yaml block after prose', md(...IDENTITY, '## Spending', 'Keep it small: really.', '```yaml', 'spend:', '  daily_limit: 10 USD', '  per_transaction: 5 USD', '```', 'More prose: after.')],
    ['a tilde fence', md(...IDENTITY, '## Spending', '~~~', 'spend:', 'daily_limit: 10 USD', 'per_transaction: 5 USD', '~~~')],
    ['blank lines between keys', md(...IDENTITY, '', '## Spending', '', 'spend:', '', 'daily_limit: 10 USD', '', 'per_transaction: 5 USD', '')],
    ['a title and intro before the first section', md('# SPEND.md', 'Some intro: text', ...IDENTITY, '## Spending', 'spend:', 'daily_limit: 10 USD', 'per_transaction: 5 USD')],
    ['the amount with lower-case currency', md(...IDENTITY, '## Spending', 'spend:', 'daily_limit: 10 usd', 'per_transaction: 5.00 USD')],
  ];
  for (const [name, text] of variants) {
    test(`when the Spending section uses ${name}, then the document is the same`, () => {
      assert.deepEqual(parseSpendMd(text).document, reference.document);
    });
  }

  test('when a ### sub-heading appears, then it is not a section of its own', () => {
    const parsed = parseSpendMd(md(...IDENTITY, '## Spending', 'spend:', '  daily_limit: 10 USD', '### Notes', '  per_transaction: 5 USD'));
    assert.deepEqual(parsed.document, reference.document);
  });
});

describe('parseSpendMd: what each key compiles to', () => {
  const cases: [string, string[], CompiledRule['type'], (rule: CompiledRule) => void][] = [
    ['per_transaction', ['spend:', 'per_transaction: 12.345 KWD'], 'max_amount', (r) => assert.deepEqual(r.type === 'max_amount' && r.limit, { amount: 12_345, currency: 'kwd' })],
    ['daily_limit', ['spend:', 'daily_limit: 1000 JPY'], 'velocity_limit', (r) => assert.deepEqual(r.type === 'velocity_limit' && [r.limit, r.window], [{ amount: 1000, currency: 'jpy' }, 'daily'])],
    ['weekly_limit', ['spend:', 'weekly_limit: 70 EUR'], 'velocity_limit', (r) => assert.deepEqual(r.type === 'velocity_limit' && [r.limit, r.window], [{ amount: 7000, currency: 'eur' }, 'weekly'])],
    ['monthly_limit', ['spend:', 'monthly_limit: 1_000 USD'], 'velocity_limit', (r) => assert.deepEqual(r.type === 'velocity_limit' && [r.limit, r.window], [{ amount: 100_000, currency: 'usd' }, 'monthly'])],
    ['allowlist without categories', ['spend:', 'allowlist:', '- openai.com', '- 1234567890'], 'merchant_allowlist', (r) => assert.deepEqual(r.type === 'merchant_allowlist' && [r.merchants, r.categories], [['openai.com', '1234567890'], undefined])],
    ['allowlist with categories', ['spend:', 'allowlist:', '- openai.com', 'allowed_categories:', '- software_saas'], 'merchant_allowlist', (r) => assert.ok(r.type === 'merchant_allowlist' && r.categories?.mccs.has('5734'))],
    ['allowed_categories alone', ['spend:', 'allowed_categories:', '- software_saas'], 'category_allowlist', (r) => assert.ok(r.type === 'category_allowlist' && r.categories.mccs.has('5734'))],
    ['blocked_categories', ['spend:', 'blocked_categories:', '- gambling'], 'category_blocklist', (r) => assert.ok(r.type === 'category_blocklist' && r.categories.mccs.has('7995'))],
    ['blocklist', ['spend:', 'blocklist:', '- evil.example'], 'merchant_blocklist', (r) => assert.deepEqual(r.type === 'merchant_blocklist' && r.merchants, ['evil.example'])],
    ['geographic_restrictions', ['spend:', 'geographic_restrictions:', '- US', '- CA'], 'country_restriction', (r) => assert.deepEqual(r.type === 'country_restriction' && [...(r.allowed ?? [])].sort(), ['CA', 'US'])],
    ['blocked_countries', ['spend:', 'blocked_countries:', '- RU'], 'country_restriction', (r) => assert.deepEqual(r.type === 'country_restriction' && [...(r.blocked ?? [])], ['RU'])],
    ['allowed_currencies', ['spend:', 'allowed_currencies:', '- USD'], 'currency_allowlist', (r) => assert.deepEqual(r.type === 'currency_allowlist' && [...r.currencies], ['usd'])],
    ['require_confirmation_over alone', ['approval:', 'require_confirmation_over: 25 USD'], 'escalate_if', (r) => assert.deepEqual(r.type === 'escalate_if' && [r.above, r.notifyAtOrAbove], [{ amount: 2500, currency: 'usd' }, undefined])],
    ['auto_approve_under alone', ['approval:', 'auto_approve_under: 5 USD'], 'escalate_if', (r) => assert.deepEqual(r.type === 'escalate_if' && [r.above, r.notifyAtOrAbove], [undefined, { amount: 500, currency: 'usd' }])],
  ];
  for (const [key, body, type, check] of cases) {
    test(`when the file sets ${key}, then it compiles to one ${type} rule`, () => {
      const section = body[0] === 'approval:' ? '## Approval' : '## Spending';
      const policy = compiled(parseSpendMd(md(...IDENTITY, section, ...body)));
      assert.equal(policy.rules.length, 1);
      const [rule] = policy.rules;
      assert.ok(rule);
      assert.equal(rule.type, type);
      check(rule);
    });
  }

  test('when the Identity names a time zone and a policy_id, then both are used', () => {
    const parsed = parseSpendMd(md('## Identity', 'agent_name: a1', 'owner: o@x.com', 'timezone: Asia/Kolkata', 'policy_id: shared-policy'));
    assert.deepEqual(parsed.agent, { id: 'a1', owner: 'o@x.com', timezone: 'Asia/Kolkata' });
    assert.equal(parsed.document.policy_id, 'shared-policy');
  });

  test('when protective controls are switched off or empty, then they are not listed as unenforced', () => {
    const parsed = parseSpendMd(md(...IDENTITY, '## Spending', 'spend:', 'require_https: false', '## Security', 'security:', 'ip_allowlist: []', 'require_signed_requests: false'));
    assert.deepEqual(parsed.unenforced, []);
    assert.deepEqual(parsed.document.rules, []);
  });

  test('when a blocked category is unknown, then compiling fails and origins point at its line and key', () => {
    const parsed = parseSpendMd(md(...IDENTITY, '## Spending', 'spend:', 'daily_limit: 10 USD', 'blocked_categories:', '- gamblign'));
    try {
      compiled(parsed);
      assert.fail('expected a PolicyError');
    } catch (error) {
      assert.ok(error instanceof PolicyError);
      const issue = error.issues[0];
      assert.ok(issue);
      assert.match(issue.message, /gamblign/);
      const index = Number(/^rules\[(\d+)\]/.exec(issue.path)?.[1]);
      const ruleId = parsed.document.rules[index]?.rule_id ?? '';
      assert.deepEqual(parsed.origins[ruleId], { line: 7, key: 'spend.blocked_categories' });
    }
  });
});

describe('parseSpendMd: errors name the file, the line and the key', () => {
  // [case, lines, line, key pattern, message pattern]; IDENTITY occupies lines 1-3. YAML syntax
  // errors and unknown sections are not about one key, so only their line and message are checked.
  const cases: [string, string[], number, RegExp, RegExp][] = [
    ['an amount without a currency (a YAML number)', [...IDENTITY, '## Spending', 'spend:', 'daily_limit: 10 USD', 'per_transaction: 10'], 7, /(^|\.)per_transaction$/, /currency|USD/],
    ['an amount without a currency (quoted text)', [...IDENTITY, '## Spending', 'spend:', 'per_transaction: "10"'], 6, /(^|\.)per_transaction$/, /./],
    ['an unknown currency', [...IDENTITY, '## Spending', 'spend:', 'daily_limit: 10 USD', 'per_transaction: 10 ABC'], 7, /(^|\.)per_transaction$/, /ABC/],
    ['decimals the currency does not have', [...IDENTITY, '## Spending', 'spend:', 'daily_limit: 1.5 JPY'], 6, /(^|\.)daily_limit$/, /decimal/],
    ['a negative amount', [...IDENTITY, '## Spending', 'spend:', 'monthly_limit: -5 USD'], 6, /(^|\.)monthly_limit$/, /./],
    ['an unknown spend key (typo)', [...IDENTITY, '## Spending', 'spend:', 'daily_limit: 10 USD', 'dialy_limit: 5 USD'], 7, /(^|\.)dialy_limit$/, /unknown key/],
    ['an unknown spend key in an indented fenced block', [...IDENTITY, '## Spending', '```yaml', 'spend:', '  daily_limit: 10 USD', '  per_transacton: 5 USD', '```'], 8, /(^|\.)per_transacton$/, /unknown key/],
    ['an unknown approval key', [...IDENTITY, '## Approval', 'approval:', 'auto_aprove_under: 5 USD'], 6, /(^|\.)auto_aprove_under$/, /unknown key/],
    ['an unknown identity key', ['## Identity', 'agent_name: a', 'agent_owner: o', 'owner: o@x.com'], 3, /^agent_owner$/, /unknown key/],
    ['an unknown security key', [...IDENTITY, '## Security', 'security:', 'require_mfa: true'], 6, /(^|\.)require_mfa$/, /unknown key/],
    ['an unknown section', [...IDENTITY, '## Budget', 'spend:', 'daily_limit: 10 USD'], 4, /.*/, /Budget/],
    ['a tab used as indentation', [...IDENTITY, '## Spending', 'spend:', '\tdaily_limit: 10 USD'], 6, /.*/, /YAML/],
    ['a broken mapping', [...IDENTITY, '## Spending', 'spend:', 'daily_limit: 10 USD', 'monthly_limit: : :'], 7, /.*/, /YAML/],
    ['a key given twice in one section', [...IDENTITY, '## Spending', 'spend:', 'daily_limit: 10 USD', 'daily_limit: 20 USD'], 7, /.*/, /unique/],
    ['an unknown time zone', [...IDENTITY, 'timezone: Mars/Olympus', '## Spending', 'spend:', 'daily_limit: 10 USD'], 4, /^timezone$/, /Mars\/Olympus/],
    ['an agent_name with spaces', ['## Identity', 'agent_name: my agent', 'owner: o@x.com'], 2, /^agent_name$/, /./],
    ['an allowlist that is not a list', [...IDENTITY, '## Spending', 'spend:', 'allowlist: openai.com'], 6, /(^|\.)allowlist$/, /list/],
    ['approval thresholds in two currencies', [...IDENTITY, '## Approval', 'approval:', 'auto_approve_under: 5 USD', 'require_confirmation_over: 25 EUR'], 7, /(^|\.)require_confirmation_over$/, /currency/],
    ['a spend: that is not a mapping', [...IDENTITY, '## Spending', 'spend: 10 USD'], 5, /^spend$/, /./],
  ];
  for (const [name, lines, line, key, message] of cases) {
    test(`when the file has ${name}, then the error is at line ${line}`, () => {
      const issues = issuesOf(md(...lines), 'agents/test.SPEND.md');
      const issue = issues.find((i) => i.line === line && key.test(i.key));
      assert.ok(issue, `an issue at line ${line} with key ${key}: ${JSON.stringify(issues)}`);
      assert.equal(issue.file, 'agents/test.SPEND.md');
      assert.match(issue.message, message);
    });
  }

  const missing: [string, string[], string][] = [
    ['no agent_name', ['## Identity', 'owner: o@x.com', '## Spending', 'spend:', 'daily_limit: 10 USD'], 'agent_name'],
    ['no owner', ['## Identity', 'agent_name: a', '## Spending', 'spend:', 'daily_limit: 10 USD'], 'owner'],
    ['no Identity section at all (the seed snippet alone)', ['## Spending - Start Restrictive', 'spend:', 'daily_limit: 10 USD'], 'agent_name'],
  ];
  for (const [name, lines, key] of missing) {
    test(`when the file has ${name}, then the error names ${key}`, () => {
      const issues = issuesOf(md(...lines));
      assert.ok(issues.some((i) => i.key === key && i.line >= 1), JSON.stringify(issues));
    });
  }

  test('when a file has several problems, then every one is reported', () => {
    const issues = issuesOf(md(...IDENTITY, '## Spending', 'spend:', 'daily_limit: 10', 'dialy_limit: 5 USD', '## Approval', 'approval:', 'auto_approve_under: 5 ABC'));
    assert.deepEqual(issues.map((i) => i.line).sort((a, b) => a - b), [6, 7, 10]);
  });

  test('when the error is printed, then the message says the file and "line N"', () => {
    try {
      parseSpendMd(md(...IDENTITY, '## Spending', 'spend:', 'per_transaction: 10'), 'x.SPEND.md');
      assert.fail('expected a SpendMdError');
    } catch (error) {
      assert.ok(error instanceof SpendMdError);
      assert.match(error.message, /x\.SPEND\.md/);
      assert.match(error.message, /line 6/);
      assert.match(error.message, /per_transaction/);
    }
  });

  test('when the same spending key is set in two Spending sections, then it is an error, not a silent override', () => {
    const text = md(...IDENTITY, '## Spending', 'spend:', 'daily_limit: 10 USD', '## Spending - more', 'spend:', 'daily_limit: 1000 USD');
    const issues = issuesOf(text);
    assert.ok(issues.some((i) => /daily_limit/.test(i.key) && (i.line === 6 || i.line === 9)), JSON.stringify(issues));
  });

  test('when a key is set both bare and under spend: in one section, then it is an error, not a silent override', () => {
    const text = md(...IDENTITY, '## Spending', 'daily_limit: 10 USD', 'spend:', '  daily_limit: 1000 USD');
    const issues = issuesOf(text);
    assert.ok(issues.some((i) => /daily_limit/.test(i.key) && (i.line === 5 || i.line === 7)), JSON.stringify(issues));
  });
});

describe('decide() on a compiled SPEND.md policy', () => {
  const NOW = new Date('2026-04-03T12:00:00Z');
  const openai = (amount: number, change: Partial<Action> = {}): Action => ({
    actionType: 'payment',
    amount,
    currency: 'usd',
    merchant: { url: 'https://api.openai.com', country: 'US', mcc: '5734' },
    ...change,
  });
  const run = (policy: CompiledPolicy, action: Action, usage = new Map<string, Usage>(), timezone = 'UTC', now = NOW): Decision =>
    decide(policy, action, { now, timezone, usage, recent: [] });

  const approvalOnly = parseFixture('spendmd/approval-only.SPEND.md');
  const approvalPolicy = compiled(approvalOnly, 4);
  const approvalRule = ruleOfType(approvalPolicy, 'escalate_if');
  // auto_approve_under: 5 USD, require_confirmation_over: 25 USD
  const bands: [string, number, 'allow' | 'escalate', boolean][] = [
    ['well below auto_approve_under', 1, 'allow', false],
    ['one cent below auto_approve_under', 499, 'allow', false],
    ['exactly auto_approve_under', 500, 'allow', true],
    ['between the thresholds', 1500, 'allow', true],
    ['exactly require_confirmation_over', 2500, 'allow', true],
    ['one cent over require_confirmation_over', 2501, 'escalate', false],
    ['far over require_confirmation_over', 1_000_000, 'escalate', false],
  ];
  for (const [name, amount, outcome, notify] of bands) {
    test(`when the amount is ${name} (${amount} cents), then ${outcome}${outcome === 'allow' ? ` with notify ${notify}` : ''}`, () => {
      const d = run(approvalPolicy, openai(amount), new Map(), approvalOnly.agent.timezone);
      assert.equal(d.decision, outcome);
      assert.equal(d.notify, notify);
      assert.equal(d.policyVersion, 4);
      assert.equal(d.policyId, 'approval-agent');
      if (outcome === 'escalate') {
        assert.equal(d.reasonCode, 'escalate_if');
        assert.equal(d.violatedRuleId, approvalRule.id);
        assert.ok((d.message ?? '').length > 0);
      } else {
        assert.equal(d.violatedRuleId, null);
      }
    });
  }

  const secure = compiled(parseFixture('secure-agent.SPEND.md'));
  const id = (type: CompiledRule['type'], window?: string) => ruleOfType(secure, type, window).id;
  // per_transaction 10 USD, daily 25, monthly 100, allowlist openai/anthropic, blocked gambling/crypto/
  // money_transfer, US only, auto-approve under 1 USD, confirmation over 10 USD.
  const cases: [string, Action, 'allow' | 'block' | 'escalate', string | null, boolean][] = [
    ['99 cents at openai.com', openai(99), 'allow', null, false],
    ['exactly 1 USD (auto_approve_under)', openai(100), 'allow', null, true],
    ['exactly 10 USD (per_transaction and require_confirmation_over)', openai(1000), 'allow', null, true],
    ['10.01 USD: over per_transaction (block beats the escalation)', openai(1001), 'block', id('max_amount'), false],
    ['5 USD at anthropic.com', openai(500, { merchant: { url: 'anthropic.com', country: 'US' } }), 'allow', null, true],
    ['5 USD at a merchant not on the allowlist', openai(500, { merchant: { url: 'shop.example', country: 'US', mcc: '5734' } }), 'block', id('merchant_allowlist'), false],
    ['5 USD at openai.com abroad', openai(500, { merchant: { url: 'openai.com', country: 'GB', mcc: '5734' } }), 'block', id('country_restriction'), false],
    ['5 USD at openai.com, unknown country', openai(500, { merchant: { url: 'openai.com', mcc: '5734' } }), 'block', id('country_restriction'), false],
    ['5 USD at openai.com under a gambling MCC', openai(500, { merchant: { url: 'openai.com', country: 'US', mcc: '7995' } }), 'block', id('category_blocklist'), false],
    ['5 USD at openai.com under a money-transfer MCC', openai(500, { merchant: { url: 'openai.com', country: 'US', mcc: '4829' } }), 'block', id('category_blocklist'), false],
    ['500 JPY at openai.com (limits are in USD)', openai(500, { currency: 'jpy' }), 'block', id('max_amount'), false],
  ];
  for (const [name, action, outcome, ruleId, notify] of cases) {
    test(`when the security-hardened agent spends ${name}, then ${outcome}`, () => {
      const d = run(secure, action);
      assert.equal(d.decision, outcome, `${d.reasonCode}: ${d.message}`);
      assert.equal(d.violatedRuleId, ruleId);
      assert.equal(d.notify, notify);
    });
  }

  const usageCases: [string, number, number, number, 'allow' | 'block', string | null][] = [
    ['daily: 20 USD used, 5 more makes exactly 25', 2000, 0, 500, 'allow', null],
    ['daily: 20.01 USD used, 5 more is one cent over 25', 2001, 0, 500, 'block', 'daily'],
    ['monthly: 95 USD used, 5 more makes exactly 100', 0, 9500, 500, 'allow', null],
    ['monthly: 95.01 USD used, 5 more is one cent over 100', 0, 9501, 500, 'block', 'monthly'],
  ];
  for (const [name, daily, monthly, amount, outcome, window] of usageCases) {
    test(`when ${name}, then ${outcome}`, () => {
      const action = openai(amount);
      const usage = new Map<string, Usage>();
      for (const [w, used] of [['daily', daily], ['monthly', monthly]] as const) {
        const spec = usageSpecFor(ruleOfType(secure, 'velocity_limit', w), action, NOW, 'UTC');
        assert.ok(spec);
        usage.set(usageKey(spec), { amount: used, count: 1 });
      }
      const d = run(secure, action, usage);
      assert.equal(d.decision, outcome);
      assert.equal(d.violatedRuleId, window ? id('velocity_limit', window) : null);
      if (window) assert.equal(d.reasonCode, 'velocity_limit');
    });
  }

  test('when the agent lives in Berlin, then its daily limit resets at Berlin midnight, not UTC midnight', () => {
    const parsed = parseSpendMd(md('## Identity', 'agent_name: berlin', 'owner: o@x.com', 'timezone: Europe/Berlin', '## Spending', 'spend:', 'daily_limit: 10 USD'));
    const policy = compiled(parsed);
    const zone = parsed.agent.timezone ?? 'UTC';
    const daily = ruleOfType(policy, 'velocity_limit', 'daily');
    const spentAt = new Date('2026-10-24T12:00:00Z'); // Saturday, the day before the EU change
    const spec = usageSpecFor(daily, openai(1), spentAt, zone);
    assert.ok(spec);
    const usage = new Map<string, Usage>([[usageKey(spec), { amount: 1000, count: 1 }]]);
    const lastMs = new Date('2026-10-24T21:59:59.999Z'); // 23:59:59.999 CEST
    const midnight = new Date('2026-10-24T22:00:00.000Z'); // 00:00 Sunday in Berlin, still Saturday in UTC
    assert.equal(run(policy, openai(1), usage, zone, lastMs).decision, 'block');
    assert.equal(run(policy, openai(1000), usage, zone, midnight).decision, 'allow');
    assert.equal(run(policy, openai(1), usage, 'UTC', midnight).decision, 'allow', 'UTC reads a different counter');
  });
});
