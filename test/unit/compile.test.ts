import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PolicyError, compilePolicy, formatPath, normalizeMerchant } from '../../src/policy/compile.js';
import type { PolicyIssue } from '../../src/policy/compile.js';
import type { CompiledRule, RuleDocument } from '../../src/policy/model.js';
import { RULE_TYPES } from '../../src/policy/model.js';
import { seedRefundPolicy } from '../fixtures/policies.js';

const SEED_002 = seedRefundPolicy();

const rule = (rule_id: string, rule_type: string, parameters: Record<string, unknown>): RuleDocument => ({ rule_id, rule_type, parameters });

/** The issues compilePolicy reports for a document (fails the test if it compiles). */
function issuesOf(document: unknown): PolicyIssue[] {
  try {
    compilePolicy(document, 1);
  } catch (error) {
    assert.ok(error instanceof PolicyError, `a PolicyError, got ${String(error)}`);
    assert.ok(error.issues.length > 0);
    return error.issues;
  }
  assert.fail('expected the document to be rejected');
}

function only(rules: RuleDocument[]): CompiledRule[] {
  return [...compilePolicy({ policy_id: 'p', rules }, 1).rules];
}

describe('compilePolicy: seed 002', () => {
  test('when the seed policy is compiled, then amounts are minor units and version and order are kept', () => {
    const policy = compilePolicy(SEED_002, 1);
    assert.equal(policy.policyId, 'my_refund_policy');
    assert.equal(policy.version, 1);
    assert.deepEqual(policy.rules.map((r) => [r.id, r.type]), [
      ['r1', 'max_amount'],
      ['r2', 'escalate_if'],
      ['r3', 'refund_age_limit'],
    ]);
    const [r1, r2, r3] = policy.rules;
    assert.ok(r1?.type === 'max_amount');
    assert.deepEqual(r1.limit, { amount: 50_000, currency: 'usd' });
    assert.equal(r1.description, 'Block refunds over $500');
    assert.equal(r1.actionTypes, undefined);
    assert.ok(r2?.type === 'escalate_if');
    assert.deepEqual(r2.actionTypes, ['refund']);
    assert.ok(r3?.type === 'refund_age_limit');
    assert.equal(r3.maxDays, 30);
    assert.equal(r3.ifUnknown, 'escalate');
    assert.deepEqual(r3.actionTypes, ['refund']);
  });

  test('when escalate_if names no currency, then it inherits USD from r1 (the only currency named)', () => {
    const r2 = compilePolicy(SEED_002, 1).rules[1];
    assert.ok(r2?.type === 'escalate_if');
    assert.equal(r2.currency, 'usd');
    assert.deepEqual(r2.above, { amount: 20_000, currency: 'usd' });
    assert.equal(r2.notifyAtOrAbove, undefined);
  });

  test('when the same document is compiled as another version, then only the version differs', () => {
    const v1 = compilePolicy(SEED_002, 1);
    const v9 = compilePolicy(SEED_002, 9);
    assert.equal(v9.version, 9);
    assert.deepEqual({ ...v9, version: 1 }, v1);
  });
});

describe('compilePolicy: currencies', () => {
  test('when default_currency is given, then rules without a currency use it', () => {
    const [max] = compilePolicy({ policy_id: 'p', default_currency: 'EUR', rules: [rule('m', 'max_amount', { limit: 1 })] }, 1).rules;
    assert.ok(max?.type === 'max_amount');
    assert.deepEqual(max.limit, { amount: 100, currency: 'eur' });
  });

  test('when default_currency differs from a rule currency, then each rule keeps its own', () => {
    const rules = compilePolicy(
      { policy_id: 'p', default_currency: 'EUR', rules: [rule('a', 'max_amount', { limit: 1, currency: 'USD' }), rule('b', 'velocity_limit', { limit: 2, window: 'day' })] },
      1,
    ).rules;
    assert.deepEqual(rules.map((r) => ('limit' in r ? r.limit : undefined)), [
      { amount: 100, currency: 'usd' },
      { amount: 200, currency: 'eur' },
    ]);
  });

  test('when rules name USD in different cases, then that is one currency to inherit', () => {
    const rules = only([rule('a', 'max_amount', { limit: 1, currency: 'USD' }), rule('b', 'max_amount', { limit: 1, currency: 'usd', action_types: ['refund'] }), rule('c', 'velocity_limit', { limit: 5, window: 'monthly' })]);
    const c = rules[2];
    assert.ok(c?.type === 'velocity_limit');
    assert.deepEqual(c.limit, { amount: 500, currency: 'usd' });
  });

  test('when the rules name several currencies, then a rule without one is an error at its currency path', () => {
    const issues = issuesOf({
      policy_id: 'p',
      rules: [rule('a', 'max_amount', { limit: 1, currency: 'USD' }), rule('b', 'max_amount', { limit: 1, currency: 'EUR' }), rule('c', 'velocity_limit', { limit: 1, window: 'day' })],
    });
    assert.deepEqual(issues.map((i) => i.path), ['rules[2].parameters.currency']);
    assert.match(issues[0]?.message ?? '', /currency/);
  });

  test('when an amount-free escalate_if names an unknown currency, then it is an error, not silently accepted', () => {
    const issues = issuesOf({ policy_id: 'p', rules: [rule('payouts', 'escalate_if', { currency: 'ABC', action_types: ['payout'] })] });
    assert.deepEqual(issues.map((i) => i.path), ['rules[0].parameters.currency']);
    assert.match(issues[0]?.message ?? '', /ABC/);
  });

  test('when default_currency is not a real currency, then the issue is reported at default_currency', () => {
    const issues = issuesOf({ policy_id: 'p', default_currency: 'ABC', rules: [rule('m', 'max_amount', { limit: 1 })] });
    assert.ok(issues.some((i) => i.path === 'default_currency' && /ABC/.test(i.message)), JSON.stringify(issues));
  });

  test('when no rule names a currency, then an amount rule without one is an error', () => {
    const issues = issuesOf({ policy_id: 'p', rules: [rule('a', 'max_amount', { limit: 1 })] });
    assert.deepEqual(issues.map((i) => i.path), ['rules[0].parameters.currency']);
  });

  const amounts: [string, Record<string, unknown>, number][] = [
    ['USD 19.99 as a number', { limit: 19.99, currency: 'USD' }, 1999],
    ['USD "0.10" as text', { limit: '0.10', currency: 'USD' }, 10],
    ['JPY 500', { limit: 500, currency: 'JPY' }, 500],
    ['KWD "12.345"', { limit: '12.345', currency: 'KWD' }, 12_345],
    ['KWD 0.001', { limit: 0.001, currency: 'kwd' }, 1],
  ];
  for (const [name, parameters, minor] of amounts) {
    test(`when max_amount is ${name}, then the limit is ${minor} minor units`, () => {
      const [max] = only([rule('m', 'max_amount', parameters)]);
      assert.ok(max?.type === 'max_amount');
      assert.equal(max.limit.amount, minor);
    });
  }
});

describe('compilePolicy: every issue is collected with its path', () => {
  const cases: [string, RuleDocument, string, RegExp][] = [
    ['a negative limit', rule('a', 'max_amount', { limit: -1, currency: 'USD' }), 'rules[0].parameters.limit', /./],
    ['a limit that is not a number', rule('a', 'max_amount', { limit: 'abc', currency: 'USD' }), 'rules[0].parameters.limit', /./],
    ['a limit in exponent notation', rule('a', 'max_amount', { limit: '1e3', currency: 'USD' }), 'rules[0].parameters.limit', /./],
    ['too many decimals for JPY', rule('a', 'max_amount', { limit: 1.5, currency: 'JPY' }), 'rules[0].parameters.limit', /decimal/],
    ['too many decimals for USD', rule('a', 'max_amount', { limit: '1.001', currency: 'USD' }), 'rules[0].parameters.limit', /decimal/],
    ['an unknown currency', rule('a', 'max_amount', { limit: 1, currency: 'ABC' }), 'rules[0].parameters.currency', /ABC/],
    ['an unknown currency in currency_allowlist', rule('a', 'currency_allowlist', { currencies: ['USD', 'ABC'] }), 'rules[0].parameters.currencies', /ABC/],
    ['a missing limit', rule('a', 'max_amount', { currency: 'USD' }), 'rules[0].parameters.limit', /./],
    ['an unknown window', rule('a', 'velocity_limit', { limit: 1, currency: 'USD', window: 'yearly' }), 'rules[0].parameters.window', /./],
    ['a fractional max_count', rule('a', 'rate_limit', { max_count: 1.5, window: 'daily' }), 'rules[0].parameters.max_count', /./],
    ['an hour 25', rule('a', 'time_window', { start: '25:00', end: '09:00' }), 'rules[0].parameters.start', /HH:MM/],
    ['an unknown weekday', rule('a', 'time_window', { days: ['monday'], start: '09:00', end: '17:00' }), 'rules[0].parameters.days[0]', /./],
    ['equal start and end', rule('a', 'time_window', { start: '09:00', end: '09:00' }), 'rules[0].parameters.end', /differ/],
    ['a notify band above the escalation threshold', rule('a', 'escalate_if', { amount_above: 1, notify_at_or_above: 2, currency: 'USD' }), 'rules[0].parameters.notify_at_or_above', /amount_above/],
    ['a country that is not a 2-letter code', rule('a', 'country_restriction', { allowed_countries: ['USA'] }), 'rules[0].parameters.allowed_countries[0]', /./],
    ['both allowed and blocked countries', rule('a', 'country_restriction', { allowed_countries: ['US'], blocked_countries: ['RU'] }), 'rules[0].parameters', /exactly one/],
    ['neither allowed nor blocked countries', rule('a', 'country_restriction', {}), 'rules[0].parameters', /exactly one/],
    ['a counterparty_limit with neither limit nor count', rule('a', 'counterparty_limit', { window: 'daily' }), 'rules[0].parameters', /limit/],
    ['a zero duplicate window', rule('a', 'duplicate_window', { window_seconds: 0 }), 'rules[0].parameters.window_seconds', /./],
    ['an upper-case action type', rule('a', 'max_amount', { limit: 1, currency: 'USD', action_types: ['Refund'] }), 'rules[0].parameters.action_types[0]', /./],
    ['an empty action_types list', rule('a', 'max_amount', { limit: 1, currency: 'USD', action_types: [] }), 'rules[0].parameters.action_types', /./],
    ['an if_unknown that is not block or escalate', rule('a', 'refund_age_limit', { max_days: 30, if_unknown: 'allow' }), 'rules[0].parameters.if_unknown', /./],
    ['an unknown rule_type', rule('a', 'max_amout', { limit: 1, currency: 'USD' }), 'rules[0].rule_type', /max_amout/],
  ];
  for (const [name, bad, path, message] of cases) {
    test(`when a rule has ${name}, then the issue is at ${path}`, () => {
      const issues = issuesOf({ policy_id: 'p', rules: [bad] });
      assert.deepEqual(issues.map((i) => i.path), [path]);
      assert.match(issues[0]?.message ?? '', message);
    });
  }

  test('when a rule comes after a good rule, then its index is in the path', () => {
    const issues = issuesOf({ policy_id: 'p', rules: [rule('ok', 'max_amount', { limit: 5, currency: 'USD' }), rule('bad', 'velocity_limit', { limit: -5, currency: 'USD', window: 'daily' })] });
    assert.deepEqual(issues.map((i) => i.path), ['rules[1].parameters.limit']);
  });

  test('when several rules are wrong in several ways, then every issue is reported', () => {
    const issues = issuesOf({
      policy_id: 'p',
      rules: [
        rule('a', 'max_amout', { limit: 1, currency: 'USD' }),
        rule('b', 'max_amount', { limit: -1, currency: 'USD' }),
        rule('c', 'velocity_limit', { limit: 1, currency: 'USD', window: 'daily', action_type: ['refund'] }),
        rule('b', 'rate_limit', { max_count: 1, window: 'daily' }),
        rule('e', 'category_blocklist', { categories: ['gambling', 'gamblign'] }),
        rule('f', 'time_window', { start: '10:00', end: '10:00' }),
      ],
    });
    assert.deepEqual(issues.map((i) => i.path).sort(), [
      'rules[0].rule_type',
      'rules[1].parameters.limit',
      'rules[2].parameters.action_type',
      'rules[3].rule_id',
      'rules[4].parameters.categories',
      'rules[5].parameters.end',
    ]);
  });

  test('when a rule_id is malformed and another rule has a bad limit, then both issues are reported', () => {
    const issues = issuesOf({
      policy_id: 'p',
      rules: [rule('bad id!', 'max_amount', { limit: 1, currency: 'USD' }), rule('r2', 'max_amount', { limit: -1, currency: 'USD' })],
    });
    assert.deepEqual(issues.map((i) => i.path).sort(), ['rules[0].rule_id', 'rules[1].parameters.limit']);
  });

  test('when the PolicyError is printed, then its message lists every path', () => {
    try {
      compilePolicy({ policy_id: 'p', rules: [rule('a', 'nope', {}), rule('a', 'max_amount', { limit: 1 })] }, 1);
      assert.fail('expected a PolicyError');
    } catch (error) {
      assert.ok(error instanceof PolicyError);
      assert.match(error.message, /rules\[0\]\.rule_type/);
      assert.match(error.message, /rules\[1\]\.rule_id/);
      assert.match(error.message, /rules\[1\]\.parameters\.currency/);
    }
  });
});

describe('compilePolicy: unknown keys are errors, never silently ignored', () => {
  const cases: [string, unknown, string, string][] = [
    ['a typo in a parameter (action_type)', { policy_id: 'p', rules: [rule('a', 'max_amount', { limit: 1, currency: 'USD', action_type: ['refund'] })] }, 'rules[0].parameters.action_type', 'action_type'],
    ['a typo in a limit key (limt)', { policy_id: 'p', rules: [rule('a', 'velocity_limit', { limt: 1, limit: 2, currency: 'USD', window: 'daily' })] }, 'rules[0].parameters.limt', 'limt'],
    ['a parameter of another rule type', { policy_id: 'p', rules: [rule('a', 'rate_limit', { max_count: 1, window: 'daily', currency: 'USD' })] }, 'rules[0].parameters.currency', 'currency'],
    ['a typo in a rule key (params)', { policy_id: 'p', rules: [{ rule_id: 'a', rule_type: 'max_amount', params: { limit: 1 } }] }, 'rules[0].params', 'params'],
    ['a typo in a rule key (descripton)', { policy_id: 'p', rules: [{ rule_id: 'a', rule_type: 'max_amount', parameters: { limit: 1, currency: 'USD' }, descripton: 'x' }] }, 'rules[0].descripton', 'descripton'],
    ['an unknown top-level key', { policy_id: 'p', rules: [], defaults: {} }, 'defaults', 'defaults'],
  ];
  for (const [name, document, path, key] of cases) {
    test(`when a document has ${name}, then it is rejected at ${path}`, () => {
      const issues = issuesOf(document);
      const issue = issues.find((i) => i.path === path);
      assert.ok(issue, `an issue at ${path}: ${JSON.stringify(issues)}`);
      assert.match(issue.message, /unknown key/);
      assert.ok(issue.message.includes(`"${key}"`));
    });
  }

  test('when a rule has two unknown keys, then both are named', () => {
    const issues = issuesOf({ policy_id: 'p', rules: [rule('a', 'max_amount', { limit: 1, currency: 'USD', lmit: 2, foo: 1 })] });
    const text = issues.map((i) => `${i.path} ${i.message}`).join('\n');
    assert.ok(text.includes('lmit') && text.includes('foo'), text);
  });
});

describe('compilePolicy: rule ids and types', () => {
  test('when two rules share a rule_id, then the second is reported as a duplicate', () => {
    const issues = issuesOf({ policy_id: 'p', rules: [rule('r1', 'max_amount', { limit: 1, currency: 'USD' }), rule('r1', 'max_amount', { limit: 2, currency: 'USD' })] });
    assert.deepEqual(issues.map((i) => i.path), ['rules[1].rule_id']);
    assert.match(issues[0]?.message ?? '', /duplicate.*r1/);
  });

  test('when the rule_type is unknown, then the message lists the known types', () => {
    const issues = issuesOf({ policy_id: 'p', rules: [rule('a', 'spend_limit', {})] });
    assert.equal(issues[0]?.path, 'rules[0].rule_type');
    for (const type of ['max_amount', 'velocity_limit', 'action_type_allowlist']) assert.ok(issues[0]?.message.includes(type), type);
  });

  test('when the model is asked for its rule types, then every SPEC §4 type is there', () => {
    for (const type of [
      'max_amount', 'escalate_if', 'refund_age_limit', 'velocity_limit', 'rate_limit', 'merchant_allowlist', 'merchant_blocklist',
      'category_allowlist', 'category_blocklist', 'country_restriction', 'currency_allowlist', 'time_window', 'counterparty_limit',
      'duplicate_window', 'action_type_allowlist',
    ]) {
      assert.ok((RULE_TYPES as string[]).includes(type), type);
    }
  });

  const badDocs: [string, unknown, string][] = [
    ['an empty policy_id', { policy_id: '', rules: [] }, 'policy_id'],
    ['a policy_id with a slash', { policy_id: 'a/b', rules: [] }, 'policy_id'],
    ['no rules key', { policy_id: 'p' }, 'rules'],
    ['rules that are not a list', { policy_id: 'p', rules: {} }, 'rules'],
    ['a rule_id with spaces', { policy_id: 'p', rules: [rule('bad id', 'max_amount', { limit: 1, currency: 'USD' })] }, 'rules[0].rule_id'],
  ];
  for (const [name, document, path] of badDocs) {
    test(`when the document has ${name}, then the issue is at ${path}`, () => {
      assert.ok(issuesOf(document).some((i) => i.path === path));
    });
  }
});

describe('compilePolicy: categories', () => {
  test('when a category name is unknown, then the issue names it', () => {
    const issues = issuesOf({ policy_id: 'p', rules: [rule('c', 'category_blocklist', { categories: ['gambling', 'gamblign', 'crypto'] })] });
    assert.deepEqual(issues.map((i) => i.path), ['rules[0].parameters.categories', 'rules[0].parameters.categories']);
    assert.ok(issues[0]?.message.includes('"gamblign"'));
    assert.ok(issues[1]?.message.includes('"crypto"'));
  });

  test('when merchant_allowlist categories contain an unknown name, then it is an error there too', () => {
    const issues = issuesOf({ policy_id: 'p', rules: [rule('m', 'merchant_allowlist', { merchants: ['openai.com'], categories: ['softwares'] })] });
    assert.deepEqual(issues.map((i) => i.path), ['rules[0].parameters.categories']);
    assert.ok(issues[0]?.message.includes('softwares'));
  });

  test('when categories mix a group, a Stripe name, a raw MCC and miscellaneous, then all resolve', () => {
    const [c] = only([rule('c', 'category_allowlist', { categories: ['Gambling', 'bakeries', '5734', 'miscellaneous'] })]);
    assert.ok(c?.type === 'category_allowlist');
    for (const mcc of ['7995', '7801', '5462', '5734']) assert.ok(c.categories.mccs.has(mcc), mcc);
    for (const name of ['betting_casino_gambling', 'bakeries', 'computer_software_stores', 'miscellaneous']) assert.ok(c.categories.stripeNames.has(name), name);
  });

  test('when merchant_allowlist has no categories key, then it has no category alternative', () => {
    const [m] = only([rule('m', 'merchant_allowlist', { merchants: [] })]);
    assert.ok(m?.type === 'merchant_allowlist');
    assert.equal(m.categories, undefined);
  });
});

describe('compilePolicy: normalization', () => {
  test('when windows are given as day/week/month/hour, then they mean daily/weekly/monthly/hourly', () => {
    const rules = only([
      rule('d', 'rate_limit', { max_count: 1, window: 'day' }),
      rule('w', 'rate_limit', { max_count: 1, window: 'week' }),
      rule('m', 'rate_limit', { max_count: 1, window: 'month' }),
      rule('h', 'rate_limit', { max_count: 1, window: 'hour' }),
    ]);
    assert.deepEqual(rules.map((r) => ('window' in r ? r.window : undefined)), ['daily', 'weekly', 'monthly', 'hourly']);
  });

  test('when countries and currencies are given in mixed case, then they are canonical', () => {
    const [geo, cur] = only([rule('g', 'country_restriction', { allowed_countries: ['us', 'Ca'] }), rule('c', 'currency_allowlist', { currencies: ['USD', 'Jpy'] })]);
    assert.ok(geo?.type === 'country_restriction' && cur?.type === 'currency_allowlist');
    assert.deepEqual([...(geo.allowed ?? [])].sort(), ['CA', 'US']);
    assert.deepEqual([...cur.currencies].sort(), ['jpy', 'usd']);
  });

  test('when a time window is compiled, then start and end are minutes of the day and days default to all', () => {
    const [t] = only([rule('t', 'time_window', { start: '22:30', end: '24:00' })]);
    assert.ok(t?.type === 'time_window');
    assert.equal(t.startMinute, 22 * 60 + 30);
    assert.equal(t.endMinute, 24 * 60);
    assert.equal(t.days.size, 7);
  });

  const merchants: [string, string][] = [
    ['openai.com', 'openai.com'],
    ['OpenAI.com', 'openai.com'],
    ['https://www.OpenAI.com/path?q=1', 'openai.com'],
    ['http://shop.example.org:8080/', 'shop.example.org'],
    ['  Anthropic  ', 'anthropic'],
    ['www.example.com', 'example.com'],
  ];
  for (const [input, expected] of merchants) {
    test(`when the merchant "${input}" is normalized, then it is "${expected}"`, () => {
      assert.equal(normalizeMerchant(input), expected);
      const [m] = only([rule('m', 'merchant_blocklist', { merchants: [input] })]);
      assert.ok(m?.type === 'merchant_blocklist');
      assert.deepEqual(m.merchants, [expected]);
    });
  }

  test('when a path is formatted, then indexes are in brackets and keys joined with dots', () => {
    assert.equal(formatPath(['rules', 1, 'parameters', 'limit']), 'rules[1].parameters.limit');
    assert.equal(formatPath(['policy_id']), 'policy_id');
    assert.equal(formatPath([]), '');
  });
});
