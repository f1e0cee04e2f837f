import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { compilePolicy } from '../../src/policy/compile.js';
import { decide } from '../../src/policy/decide.js';
import type { Decision, DecisionContext } from '../../src/policy/decide.js';
import type { Action, CompiledPolicy, RuleDocument } from '../../src/policy/model.js';
import { usageKey, usageSpecFor } from '../../src/policy/usage.js';
import type { ReservationFacts, Usage } from '../../src/policy/usage.js';
import { seedRefundPolicy } from '../fixtures/policies.js';

/** Friday 2026-04-03 12:00 UTC. */
const NOW = new Date('2026-04-03T12:00:00Z');
const TZ = 'UTC';

/** One limit per currency: USD (2 decimals), JPY (0), KWD (3); `minor` is the limit in minor units. */
const CURRENCIES = [
  { code: 'USD', currency: 'usd', limit: '500', minor: 50_000, text: '500.00 USD' },
  { code: 'JPY', currency: 'jpy', limit: '500', minor: 500, text: '500 JPY' },
  { code: 'KWD', currency: 'kwd', limit: '12.345', minor: 12_345, text: '12.345 KWD' },
] as const;

function policyOf(rules: RuleDocument[], version = 1): CompiledPolicy {
  return compilePolicy({ policy_id: 'test-policy', rules }, version);
}

function act(overrides: Partial<Action> = {}): Action {
  return { actionType: 'payment', amount: 100, currency: 'usd', ...overrides };
}

function ctx(overrides: Partial<DecisionContext> = {}): DecisionContext {
  return { now: NOW, timezone: TZ, usage: new Map(), recent: [], ...overrides };
}

/** The usage map a ledger would hand decide(): the counter each named rule reads, for this action. */
function usageFor(policy: CompiledPolicy, entries: [string, Usage][], action: Action, now = NOW, timezone = TZ): Map<string, Usage> {
  const map = new Map<string, Usage>();
  for (const [id, used] of entries) {
    const rule = policy.rules.find((r) => r.id === id);
    assert.ok(rule, `rule ${id} exists`);
    const spec = usageSpecFor(rule, action, now, timezone);
    assert.ok(spec, `rule ${id} reads a counter`);
    map.set(usageKey(spec), used);
  }
  return map;
}

function expectAllow(d: Decision, notify?: boolean): void {
  assert.equal(d.decision, 'allow', `expected allow, got ${d.decision} (${String(d.reasonCode)}: ${String(d.message)})`);
  assert.equal(d.reasonCode, null);
  assert.equal(d.violatedRuleId, null);
  assert.equal(d.message, null);
  if (notify !== undefined) assert.equal(d.notify, notify, 'notify');
}

function expectViolation(d: Decision, decision: 'block' | 'escalate', reasonCode: string, ruleId: string): void {
  assert.equal(d.decision, decision, `expected ${decision}, got ${d.decision} (${String(d.reasonCode)}: ${String(d.message)})`);
  assert.equal(d.reasonCode, reasonCode);
  assert.equal(d.violatedRuleId, ruleId);
  assert.equal(typeof d.message, 'string');
  assert.ok((d.message ?? '').length > 0, 'a human message');
  assert.equal(d.notify, false);
}

describe('max_amount', () => {
  for (const c of CURRENCIES) {
    const policy = policyOf([{ rule_id: 'max', rule_type: 'max_amount', description: `At most ${c.text}`, parameters: { limit: c.limit, currency: c.code } }]);
    test(`when a ${c.code} amount is exactly the limit ${c.text}, then it is allowed`, () => {
      expectAllow(decide(policy, act({ amount: c.minor, currency: c.currency }), ctx()));
    });
    test(`when a ${c.code} amount is one minor unit over ${c.text}, then it is blocked by max_amount`, () => {
      const d = decide(policy, act({ amount: c.minor + 1, currency: c.currency }), ctx());
      expectViolation(d, 'block', 'max_amount', 'max');
      assert.equal(d.violatedRuleDescription, `At most ${c.text}`);
      assert.ok(d.message?.includes(c.text), `message names the limit: ${d.message}`);
    });
    test(`when a ${c.code} amount is zero, then it is allowed`, () => {
      expectAllow(decide(policy, act({ amount: 0, currency: c.currency }), ctx()));
    });
  }

  test('when the limit is a float like 19.99, then exactly 1999 cents is allowed and 2000 blocked', () => {
    const policy = policyOf([{ rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 19.99, currency: 'USD' } }]);
    expectAllow(decide(policy, act({ amount: 1999 }), ctx()));
    expectViolation(decide(policy, act({ amount: 2000 }), ctx()), 'block', 'max_amount', 'max');
  });
});

describe('escalate_if', () => {
  for (const c of CURRENCIES) {
    const above = c.minor;
    const notifyFrom = Math.floor(c.minor / 5);
    const policy = policyOf([
      {
        rule_id: 'esc',
        rule_type: 'escalate_if',
        description: 'Human approval',
        parameters: { amount_above: c.limit, notify_at_or_above: toMajor(notifyFrom, c.currency), currency: c.code },
      },
    ]);
    const cases: [string, number, 'allow' | 'escalate', boolean][] = [
      ['below the notify band', notifyFrom - 1, 'allow', false],
      ['exactly at notify_at_or_above', notifyFrom, 'allow', true],
      ['inside the notify band', notifyFrom + 1, 'allow', true],
      ['exactly amount_above', above, 'allow', true],
      ['one minor unit over amount_above', above + 1, 'escalate', false],
    ];
    for (const [name, amount, outcome, notify] of cases) {
      test(`when a ${c.code} amount is ${name} (${amount}), then ${outcome}${outcome === 'allow' ? ` with notify ${notify}` : ''}`, () => {
        const d = decide(policy, act({ amount, currency: c.currency }), ctx());
        if (outcome === 'allow') expectAllow(d, notify);
        else expectViolation(d, 'escalate', 'escalate_if', 'esc');
      });
    }
  }

  test('when escalate_if names no amount, then every action of its types escalates and others pass', () => {
    const policy = policyOf([{ rule_id: 'payouts', rule_type: 'escalate_if', parameters: { action_types: ['payout'] } }]);
    expectViolation(decide(policy, act({ actionType: 'payout', amount: 1 }), ctx()), 'escalate', 'escalate_if', 'payouts');
    expectAllow(decide(policy, act({ actionType: 'payment', amount: 1_000_000 }), ctx()), false);
  });

  test('when escalate_if only has a notify band, then above it is allowed with notify and never escalated', () => {
    const policy = policyOf([{ rule_id: 'n', rule_type: 'escalate_if', parameters: { notify_at_or_above: 10, currency: 'USD' } }]);
    expectAllow(decide(policy, act({ amount: 999 }), ctx()), false);
    expectAllow(decide(policy, act({ amount: 1000 }), ctx()), true);
    expectAllow(decide(policy, act({ amount: 10_000_000 }), ctx()), true);
  });
});

describe('refund_age_limit', () => {
  const policy = policyOf([{ rule_id: 'age', rule_type: 'refund_age_limit', description: 'Refunds within 30 days', parameters: { max_days: 30 } }]);
  const cases: [string, number | undefined, 'allow' | 'block' | 'escalate'][] = [
    ['the purchase was today', 0, 'allow'],
    ['the purchase was exactly 30 days ago', 30, 'allow'],
    ['the purchase was 31 days ago', 31, 'block'],
    ['the purchase date is unknown (default if_unknown: escalate)', undefined, 'escalate'],
  ];
  for (const [name, days, outcome] of cases) {
    test(`when ${name}, then the refund is ${outcome}`, () => {
      const d = decide(policy, act({ actionType: 'refund', refundAgeDays: days }), ctx());
      if (outcome === 'allow') expectAllow(d);
      else expectViolation(d, outcome, 'refund_age_limit', 'age');
    });
  }

  test('when the age is unknown, then the confidence is medium', () => {
    assert.equal(decide(policy, act({ actionType: 'refund' }), ctx()).confidence, 'medium');
    assert.equal(decide(policy, act({ actionType: 'refund', refundAgeDays: 31 }), ctx()).confidence, 'high');
  });

  test('when if_unknown is block and the age is unknown, then the refund is blocked', () => {
    const strict = policyOf([{ rule_id: 'age', rule_type: 'refund_age_limit', parameters: { max_days: 30, if_unknown: 'block' } }]);
    expectViolation(decide(strict, act({ actionType: 'refund' }), ctx()), 'block', 'refund_age_limit', 'age');
  });

  test('when the action is not a refund, then refund_age_limit does not apply (default action_types)', () => {
    expectAllow(decide(policy, act({ actionType: 'payment' }), ctx()));
    expectAllow(decide(policy, act({ actionType: 'payment', refundAgeDays: 400 }), ctx()));
  });
});

describe('velocity_limit', () => {
  for (const window of ['daily', 'weekly', 'monthly'] as const) {
    for (const c of CURRENCIES) {
      const policy = policyOf([{ rule_id: 'vel', rule_type: 'velocity_limit', parameters: { limit: c.limit, currency: c.code, window } }]);
      const amount = 7;
      const cases: [string, number, number, boolean][] = [
        ['nothing is used and the amount is the whole limit', 0, c.minor, true],
        ['nothing is used and the amount is one over', 0, c.minor + 1, false],
        ['the used amount plus this one is exactly the limit', c.minor - amount, amount, true],
        ['the used amount plus this one is one minor unit over', c.minor - amount + 1, amount, false],
        ['the limit is already used up', c.minor, 1, false],
      ];
      for (const [name, used, requested, allowed] of cases) {
        test(`when ${window} ${c.code}: ${name}, then ${allowed ? 'allowed' : 'blocked'}`, () => {
          const action = act({ amount: requested, currency: c.currency });
          const usage = usageFor(policy, [['vel', { amount: used, count: 1 }]], action);
          const d = decide(policy, action, ctx({ usage }));
          if (allowed) expectAllow(d);
          else expectViolation(d, 'block', 'velocity_limit', 'vel');
        });
      }
    }
  }

  test('when usage is recorded under a different action filter, then a filtered limit does not read it', () => {
    const policy = policyOf([
      { rule_id: 'refunds', rule_type: 'velocity_limit', parameters: { limit: 100, currency: 'USD', window: 'daily', action_types: ['refund'] } },
    ]);
    const refund = act({ actionType: 'refund', amount: 1 });
    const usage = usageFor(policy, [['refunds', { amount: 10_000, count: 5 }]], refund);
    expectViolation(decide(policy, refund, ctx({ usage })), 'block', 'velocity_limit', 'refunds');
    expectAllow(decide(policy, act({ actionType: 'payment', amount: 1_000_000 }), ctx({ usage })));
  });
});

describe('rate_limit', () => {
  for (const window of ['hourly', 'daily', 'weekly', 'monthly'] as const) {
    const policy = policyOf([{ rule_id: 'rate', rule_type: 'rate_limit', parameters: { max_count: 3, window } }]);
    const cases: [number, boolean][] = [
      [0, true],
      [2, true],
      [3, false],
      [10, false],
    ];
    for (const [used, allowed] of cases) {
      test(`when ${used} actions were made this ${window} window and 3 are allowed, then the next is ${allowed ? 'allowed' : 'blocked'}`, () => {
        const action = act({ amount: 1 });
        const usage = usageFor(policy, [['rate', { amount: 999_999, count: used }]], action);
        const d = decide(policy, action, ctx({ usage }));
        if (allowed) expectAllow(d);
        else expectViolation(d, 'block', 'rate_limit', 'rate');
      });
    }
  }

  test('when the count counter is shared across currencies, then a JPY action reads the same counter', () => {
    const policy = policyOf([{ rule_id: 'rate', rule_type: 'rate_limit', parameters: { max_count: 1, window: 'daily' } }]);
    const usage = usageFor(policy, [['rate', { amount: 1, count: 1 }]], act());
    expectViolation(decide(policy, act({ currency: 'jpy' }), ctx({ usage })), 'block', 'rate_limit', 'rate');
  });

  test('when max_count is 0, then every action is blocked', () => {
    const policy = policyOf([{ rule_id: 'none', rule_type: 'rate_limit', parameters: { max_count: 0, window: 'day' } }]);
    expectViolation(decide(policy, act(), ctx()), 'block', 'rate_limit', 'none');
  });
});

describe('merchant_allowlist', () => {
  const policy = policyOf([
    { rule_id: 'allow', rule_type: 'merchant_allowlist', parameters: { merchants: ['openai.com', 'Anthropic', '1234567890', 'https://www.Example.org/shop'] } },
  ]);
  const cases: [string, Partial<Action>, boolean][] = [
    ['the merchant domain is listed', { merchant: { url: 'openai.com' } }, true],
    ['the merchant URL is on the listed domain', { merchant: { url: 'https://openai.com/checkout' } }, true],
    ['the merchant is a subdomain of a listed domain', { merchant: { url: 'https://api.openai.com/v1/chat' } }, true],
    ['the merchant domain has www. and upper case', { merchant: { url: 'https://WWW.OpenAI.com' } }, true],
    ['the listed entry was a URL and the merchant is its host', { merchant: { url: 'example.org' } }, true],
    ['the domain only ends with the listed name', { merchant: { url: 'notopenai.com' } }, false],
    ['the listed domain is a prefix of another domain', { merchant: { url: 'openai.com.evil.example' } }, false],
    ['the merchant name is listed', { merchant: { name: 'Anthropic' } }, true],
    ['the merchant name differs only in case', { merchant: { name: 'ANTHROPIC' } }, true],
    ['the merchant name only contains a listed name', { merchant: { name: 'Anthropic Evil Twin' } }, false],
    ['the Stripe merchant network id is listed', { merchant: { networkId: '1234567890' } }, true],
    ['the network id is a different one', { merchant: { networkId: '1234567891' } }, false],
    ['the check names the merchant as its counterparty', { counterparty: 'openai.com' }, true],
    ['the action carries no merchant at all', {}, false],
    ['the merchant is unlisted', { merchant: { name: 'Evil Corp', url: 'evil.example', networkId: '999' } }, false],
  ];
  for (const [name, change, allowed] of cases) {
    test(`when ${name}, then ${allowed ? 'allowed' : 'blocked'}`, () => {
      const d = decide(policy, act(change), ctx());
      if (allowed) expectAllow(d);
      else expectViolation(d, 'block', 'merchant_allowlist', 'allow');
    });
  }

  test('when the allowlist is empty and has no categories, then every merchant is blocked', () => {
    const empty = policyOf([{ rule_id: 'none', rule_type: 'merchant_allowlist', parameters: { merchants: [] } }]);
    for (const change of [{ merchant: { url: 'openai.com' } }, { merchant: { mcc: '5734' } }, {}]) {
      expectViolation(decide(empty, act(change), ctx()), 'block', 'merchant_allowlist', 'none');
    }
  });

  test('when the allowlist is empty with an empty categories list, then every merchant is blocked', () => {
    const empty = policyOf([{ rule_id: 'none', rule_type: 'merchant_allowlist', parameters: { merchants: [], categories: [] } }]);
    expectViolation(decide(empty, act({ merchant: { url: 'openai.com', mcc: '5734' } }), ctx()), 'block', 'merchant_allowlist', 'none');
  });

  const withCategories = policyOf([
    { rule_id: 'allow', rule_type: 'merchant_allowlist', parameters: { merchants: ['openai.com'], categories: ['software_saas'] } },
  ]);
  const categoryCases: [string, Partial<Action>, boolean][] = [
    ['a listed merchant outside the categories', { merchant: { url: 'openai.com', mcc: '7995' } }, true],
    ['an unlisted merchant with an MCC of an allowed group', { merchant: { url: 'github.com', mcc: '5734' } }, true],
    ['an unlisted merchant with a Stripe category of an allowed group', { merchant: { name: 'GitHub', category: 'computer_software_stores' } }, true],
    ['an unlisted merchant in another category', { merchant: { url: 'casino.example', mcc: '7995' } }, false],
    ['an unlisted merchant of unknown category', { merchant: { url: 'unknown.example' } }, false],
  ];
  for (const [name, change, allowed] of categoryCases) {
    test(`when merchants or categories are allowed and ${name}, then ${allowed ? 'allowed' : 'blocked'}`, () => {
      const d = decide(withCategories, act(change), ctx());
      if (allowed) expectAllow(d);
      else expectViolation(d, 'block', 'merchant_allowlist', 'allow');
    });
  }
});

describe('merchant_blocklist', () => {
  const policy = policyOf([{ rule_id: 'deny', rule_type: 'merchant_blocklist', parameters: { merchants: ['evil.example', 'Casino Royale', '999000'] } }]);
  const cases: [string, Partial<Action>, boolean][] = [
    ['the merchant domain is listed', { merchant: { url: 'evil.example' } }, false],
    ['the merchant is a subdomain of a listed domain', { merchant: { url: 'https://shop.evil.example/pay' } }, false],
    ['the merchant name is listed, in another case', { merchant: { name: 'CASINO ROYALE' } }, false],
    ['the network id is listed', { merchant: { networkId: '999000' } }, false],
    ['the counterparty is a listed domain', { counterparty: 'evil.example' }, false],
    ['the domain only ends with the listed text', { merchant: { url: 'notevil.example' } }, true],
    ['the merchant is not listed', { merchant: { url: 'openai.com', name: 'OpenAI' } }, true],
    ['the action carries no merchant', {}, true],
  ];
  for (const [name, change, allowed] of cases) {
    test(`when ${name}, then ${allowed ? 'allowed' : 'blocked'}`, () => {
      const d = decide(policy, act(change), ctx());
      if (allowed) expectAllow(d);
      else expectViolation(d, 'block', 'merchant_blocklist', 'deny');
    });
  }
});

describe('category_allowlist', () => {
  // [list, case, merchant, allowed]
  const cases: [string[], string, Action['merchant'], boolean][] = [
    [['software_saas'], 'an MCC in the friendly group', { mcc: '5734' }, true],
    [['software_saas'], 'a Stripe category in the friendly group', { category: 'computer_software_stores' }, true],
    [['software_saas'], 'an MCC outside the group', { mcc: '7995' }, false],
    [['software_saas'], 'a Stripe category outside the group', { category: 'betting_casino_gambling' }, false],
    [['software_saas'], 'an unknown category on the action', {}, false],
    [['software_saas'], 'an unknown Stripe category name on the action', { category: 'not_a_real_category' }, false],
    [['software_saas'], 'the miscellaneous category', { category: 'miscellaneous' }, false],
    [['bakeries'], 'a Stripe name, matched by its MCC', { mcc: '5462' }, true],
    [['bakeries'], 'a Stripe name, matched by name', { category: 'bakeries' }, true],
    [['bakeries'], 'a Stripe name, another MCC', { mcc: '5734' }, false],
    [['5734'], 'a raw MCC, matched by MCC', { mcc: '5734' }, true],
    [['5734'], 'a raw MCC, matched by the Stripe category for it', { category: 'computer_software_stores' }, true],
    [['5734'], 'a raw MCC, a neighbouring MCC', { mcc: '5735' }, false],
    [['742'], 'a short raw MCC, zero-padded on both sides', { mcc: '0742' }, true],
    [['miscellaneous'], 'miscellaneous, matched by Stripe name', { category: 'miscellaneous' }, true],
    [['miscellaneous'], 'miscellaneous, an MCC with a specific category', { mcc: '5734' }, false],
    [['miscellaneous'], 'miscellaneous, an unknown category', {}, false],
  ];
  for (const [list, name, merchant, allowed] of cases) {
    test(`when only ${JSON.stringify(list)} are allowed and ${name}, then ${allowed ? 'allowed' : 'blocked'}`, () => {
      const policy = policyOf([{ rule_id: 'cats', rule_type: 'category_allowlist', parameters: { categories: list } }]);
      const d = decide(policy, act({ merchant }), ctx());
      if (allowed) expectAllow(d);
      else expectViolation(d, 'block', 'category_allowlist', 'cats');
    });
  }
});

describe('category_blocklist', () => {
  const cases: [string[], string, Action['merchant'], boolean][] = [
    [['gambling'], 'the casino MCC 7995', { mcc: '7995' }, false],
    [['gambling'], 'licensed online gambling (7801)', { mcc: '7801' }, false],
    [['gambling'], 'a non-US government lottery (9406)', { mcc: '9406' }, false],
    [['gambling'], 'the Stripe category betting_casino_gambling', { category: 'betting_casino_gambling' }, false],
    [['gambling'], 'the Stripe category in upper case', { category: 'Betting_Casino_Gambling' }, false],
    [['gambling'], 'a software MCC', { mcc: '5734' }, true],
    [['gambling'], 'an unknown category', {}, true],
    [['gambling'], 'the miscellaneous category', { category: 'miscellaneous' }, true],
    [['cryptocurrency', 'money_transfer'], 'crypto purchases (6051)', { mcc: '6051' }, false],
    [['cryptocurrency', 'money_transfer'], 'wires (4829)', { mcc: '4829' }, false],
    [['cryptocurrency', 'money_transfer'], 'financial institutions (6012)', { mcc: '6012' }, false],
    [['cryptocurrency', 'money_transfer'], 'a bakery', { mcc: '5462' }, true],
    [['betting_casino_gambling'], 'a Stripe name, its MCC', { mcc: '7995' }, false],
    [['betting_casino_gambling'], 'a Stripe name, another gambling MCC', { mcc: '7801' }, true],
    [['0742'], 'a raw MCC given as a short number on the action', { mcc: '742' }, false],
    [['0742'], 'a raw MCC, matched by the Stripe category', { category: 'veterinary_services' }, false],
    [['miscellaneous'], 'miscellaneous, matched by name', { category: 'miscellaneous' }, false],
    [['miscellaneous'], 'miscellaneous, a specific MCC', { mcc: '5734' }, true],
    [['miscellaneous'], 'miscellaneous, an unknown category', {}, true],
  ];
  for (const [list, name, merchant, allowed] of cases) {
    test(`when ${JSON.stringify(list)} are blocked and ${name}, then ${allowed ? 'allowed' : 'blocked'}`, () => {
      const policy = policyOf([{ rule_id: 'cats', rule_type: 'category_blocklist', parameters: { categories: list } }]);
      const d = decide(policy, act({ merchant }), ctx());
      if (allowed) expectAllow(d);
      else expectViolation(d, 'block', 'category_blocklist', 'cats');
    });
  }
});

describe('country_restriction', () => {
  const allowedOnly = policyOf([{ rule_id: 'geo', rule_type: 'country_restriction', parameters: { allowed_countries: ['US', 'ca'] } }]);
  const blockedOnly = policyOf([{ rule_id: 'geo', rule_type: 'country_restriction', parameters: { blocked_countries: ['RU'] } }]);
  const cases: [string, CompiledPolicy, string | undefined, boolean][] = [
    ['allowed [US, ca]', allowedOnly, 'US', true],
    ['allowed [US, ca]', allowedOnly, 'us', true],
    ['allowed [US, ca]', allowedOnly, 'CA', true],
    ['allowed [US, ca]', allowedOnly, 'GB', false],
    ['allowed [US, ca]', allowedOnly, undefined, false],
    ['blocked [RU]', blockedOnly, 'RU', false],
    ['blocked [RU]', blockedOnly, 'ru', false],
    ['blocked [RU]', blockedOnly, 'US', true],
    ['blocked [RU]', blockedOnly, undefined, true],
  ];
  for (const [name, policy, country, allowed] of cases) {
    test(`when ${name} and the merchant country is ${country ?? 'unknown'}, then ${allowed ? 'allowed' : 'blocked'}`, () => {
      const d = decide(policy, act({ merchant: country === undefined ? { name: 'Shop' } : { name: 'Shop', country } }), ctx());
      if (allowed) expectAllow(d);
      else expectViolation(d, 'block', 'country_restriction', 'geo');
    });
  }
});

describe('currency_allowlist', () => {
  const policy = policyOf([{ rule_id: 'cur', rule_type: 'currency_allowlist', parameters: { currencies: ['USD', 'jpy'] } }]);
  const cases: [string, boolean][] = [
    ['usd', true],
    ['jpy', true],
    ['kwd', false],
    ['eur', false],
  ];
  for (const [currency, allowed] of cases) {
    test(`when the currency is ${currency} and USD, JPY are allowed, then ${allowed ? 'allowed' : 'blocked'}`, () => {
      const d = decide(policy, act({ currency }), ctx());
      if (allowed) expectAllow(d);
      else expectViolation(d, 'block', 'currency_allowlist', 'cur');
    });
  }
});

describe('time_window', () => {
  const office = policyOf([{ rule_id: 'hours', rule_type: 'time_window', parameters: { days: ['mon', 'tue', 'wed', 'thu', 'fri'], start: '09:00', end: '17:00' } }]);
  const night = policyOf([{ rule_id: 'hours', rule_type: 'time_window', parameters: { start: '22:00', end: '06:00' } }]);
  const evening = policyOf([{ rule_id: 'hours', rule_type: 'time_window', parameters: { start: '18:00', end: '24:00' } }]);
  const newYork = policyOf([{ rule_id: 'hours', rule_type: 'time_window', parameters: { start: '09:00', end: '17:00' } }]);
  const berlinSunday = policyOf([{ rule_id: 'hours', rule_type: 'time_window', parameters: { days: ['sun'], start: '02:00', end: '04:00' } }]);
  // [case, policy, now, zone, allowed]
  const cases: [string, CompiledPolicy, string, string, boolean][] = [
    ['weekday office hours, Friday 09:00 (start is inclusive)', office, '2026-04-03T09:00:00Z', 'UTC', true],
    ['weekday office hours, Friday 08:59', office, '2026-04-03T08:59:59Z', 'UTC', false],
    ['weekday office hours, Friday 16:59', office, '2026-04-03T16:59:59Z', 'UTC', true],
    ['weekday office hours, Friday 17:00 (end is exclusive)', office, '2026-04-03T17:00:00Z', 'UTC', false],
    ['weekday office hours, Saturday noon', office, '2026-04-04T12:00:00Z', 'UTC', false],
    ['weekday office hours, Monday noon in UTC is still Sunday night in New York', office, '2026-04-06T03:00:00Z', 'America/New_York', false],
    ['overnight 22:00-06:00, at 22:00', night, '2026-04-03T22:00:00Z', 'UTC', true],
    ['overnight 22:00-06:00, at 23:59', night, '2026-04-03T23:59:00Z', 'UTC', true],
    ['overnight 22:00-06:00, at midnight', night, '2026-04-04T00:00:00Z', 'UTC', true],
    ['overnight 22:00-06:00, at 05:59', night, '2026-04-04T05:59:00Z', 'UTC', true],
    ['overnight 22:00-06:00, at 06:00', night, '2026-04-04T06:00:00Z', 'UTC', false],
    ['overnight 22:00-06:00, at 21:59', night, '2026-04-03T21:59:00Z', 'UTC', false],
    ['overnight 22:00-06:00, at noon', night, '2026-04-03T12:00:00Z', 'UTC', false],
    ['overnight 22:00-06:00 in Kolkata, 17:00 UTC is 22:30 local', night, '2026-04-03T17:00:00Z', 'Asia/Kolkata', true],
    ['until 24:00, at 23:59', evening, '2026-04-03T23:59:00Z', 'UTC', true],
    ['until 24:00, at 00:00', evening, '2026-04-04T00:00:00Z', 'UTC', false],
    ['New York 09:00-17:00, the Monday after DST starts at 09:00 EDT', newYork, '2026-03-09T13:00:00Z', 'America/New_York', true],
    ['New York 09:00-17:00, the Friday before DST at 08:00 EST', newYork, '2026-03-06T13:00:00Z', 'America/New_York', false],
    ['New York 09:00-17:00, the Friday before DST at 09:00 EST', newYork, '2026-03-06T14:00:00Z', 'America/New_York', true],
    ['Berlin Sunday 02:00-04:00 on the spring-forward day, 03:30 CEST', berlinSunday, '2026-03-29T01:30:00Z', 'Europe/Berlin', true],
    ['Berlin Sunday 02:00-04:00 on the spring-forward day, 04:00 CEST', berlinSunday, '2026-03-29T02:00:00Z', 'Europe/Berlin', false],
  ];
  for (const [name, policy, now, zone, allowed] of cases) {
    test(`when ${name}, then ${allowed ? 'allowed' : 'blocked'}`, () => {
      const d = decide(policy, act(), ctx({ now: new Date(now), timezone: zone }));
      if (allowed) expectAllow(d);
      else expectViolation(d, 'block', 'time_window', 'hours');
    });
  }

  test('when a time_window names action_types, then other actions are not restricted', () => {
    const policy = policyOf([{ rule_id: 'hours', rule_type: 'time_window', parameters: { start: '09:00', end: '17:00', action_types: ['payout'] } }]);
    const midnight = ctx({ now: new Date('2026-04-03T00:30:00Z') });
    expectViolation(decide(policy, act({ actionType: 'payout' }), midnight), 'block', 'time_window', 'hours');
    expectAllow(decide(policy, act({ actionType: 'payment' }), midnight));
  });
});

describe('counterparty_limit', () => {
  for (const c of CURRENCIES) {
    const policy = policyOf([{ rule_id: 'cp', rule_type: 'counterparty_limit', parameters: { limit: c.limit, currency: c.code, window: 'daily' } }]);
    const cases: [string, number, number, boolean][] = [
      ['exactly the limit with one counterparty', c.minor - 5, 5, true],
      ['one minor unit over with one counterparty', c.minor - 4, 5, false],
      ['the whole limit at once', 0, c.minor, true],
      ['one over the limit at once', 0, c.minor + 1, false],
    ];
    for (const [name, used, amount, allowed] of cases) {
      test(`when ${c.code}: ${name}, then ${allowed ? 'allowed' : 'blocked'}`, () => {
        const action = act({ amount, currency: c.currency, counterparty: 'cus_1' });
        const usage = usageFor(policy, [['cp', { amount: used, count: 1 }]], action);
        const d = decide(policy, action, ctx({ usage }));
        if (allowed) expectAllow(d);
        else expectViolation(d, 'block', 'counterparty_limit', 'cp');
      });
    }
    test(`when ${c.code}: another counterparty used the whole limit, then this counterparty is allowed`, () => {
      const other = act({ amount: 1, currency: c.currency, counterparty: 'cus_2' });
      const usage = usageFor(policy, [['cp', { amount: c.minor, count: 9 }]], other);
      expectViolation(decide(policy, other, ctx({ usage })), 'block', 'counterparty_limit', 'cp');
      expectAllow(decide(policy, act({ amount: c.minor, currency: c.currency, counterparty: 'cus_1' }), ctx({ usage })));
    });
  }

  const byCount = policyOf([{ rule_id: 'cp', rule_type: 'counterparty_limit', parameters: { max_count: 2, window: 'weekly' } }]);
  const countCases: [number, boolean][] = [
    [0, true],
    [1, true],
    [2, false],
  ];
  for (const [used, allowed] of countCases) {
    test(`when ${used} actions with this counterparty this week and 2 are allowed, then ${allowed ? 'allowed' : 'blocked'}`, () => {
      const action = act({ counterparty: 'cus_1', currency: 'jpy' });
      const usage = usageFor(byCount, [['cp', { amount: 0, count: used }]], action);
      const d = decide(byCount, action, ctx({ usage }));
      if (allowed) expectAllow(d);
      else expectViolation(d, 'block', 'counterparty_limit', 'cp');
    });
  }

  test('when both amount and count are limited, then either one blocks', () => {
    const both = policyOf([{ rule_id: 'cp', rule_type: 'counterparty_limit', parameters: { limit: 100, max_count: 2, currency: 'USD', window: 'monthly' } }]);
    const action = act({ amount: 100, counterparty: 'cus_1' });
    const countFull = usageFor(both, [['cp', { amount: 0, count: 2 }]], action);
    expectViolation(decide(both, action, ctx({ usage: countFull })), 'block', 'counterparty_limit', 'cp');
    const amountFull = usageFor(both, [['cp', { amount: 9_901, count: 1 }]], action);
    expectViolation(decide(both, action, ctx({ usage: amountFull })), 'block', 'counterparty_limit', 'cp');
    const fine = usageFor(both, [['cp', { amount: 9_900, count: 1 }]], action);
    expectAllow(decide(both, action, ctx({ usage: fine })));
  });
});

describe('duplicate_window', () => {
  const policy = policyOf([{ rule_id: 'dup', rule_type: 'duplicate_window', parameters: { window_seconds: 60 } }]);
  const action = act({ amount: 4200, counterparty: 'cus_1', actionType: 'refund' });
  const earlier = (ms: number, change: Partial<ReservationFacts> = {}): ReservationFacts => ({
    actionType: 'refund',
    amount: 4200,
    currency: 'usd',
    counterparty: 'cus_1',
    occurredAt: new Date(NOW.getTime() - ms),
    ...change,
  });
  const cases: [string, ReservationFacts[], boolean][] = [
    ['nothing was done recently', [], true],
    ['the same action 1 second ago', [earlier(1_000)], false],
    ['the same action 59.999 seconds ago', [earlier(59_999)], false],
    ['the same action 60.001 seconds ago', [earlier(60_001)], true],
    ['one cent more 1 second ago', [earlier(1_000, { amount: 4201 })], true],
    ['the same amount in another currency', [earlier(1_000, { currency: 'eur' })], true],
    ['the same amount to another counterparty', [earlier(1_000, { counterparty: 'cus_2' })], true],
    ['the same amount as another action type', [earlier(1_000, { actionType: 'payment' })], true],
    ['an old duplicate and a recent different action', [earlier(1_000, { amount: 1 }), earlier(120_000)], true],
  ];
  for (const [name, recent, allowed] of cases) {
    test(`when ${name}, then ${allowed ? 'allowed' : 'blocked'}`, () => {
      const d = decide(policy, action, ctx({ recent }));
      if (allowed) expectAllow(d);
      else expectViolation(d, 'block', 'duplicate_window', 'dup');
    });
  }

  test('when the action has no counterparty, then it matches an earlier one without a counterparty', () => {
    const bare = act({ amount: 4200, actionType: 'refund' });
    expectViolation(decide(policy, bare, ctx({ recent: [earlier(1_000, { counterparty: '' })] })), 'block', 'duplicate_window', 'dup');
  });
});

describe('action_type_allowlist', () => {
  const policy = policyOf([{ rule_id: 'types', rule_type: 'action_type_allowlist', parameters: { action_types: ['payment', 'refund'] } }]);
  const cases: [string, boolean][] = [
    ['payment', true],
    ['refund', true],
    ['payout', false],
    ['transfer', false],
  ];
  for (const [actionType, allowed] of cases) {
    test(`when the action type is ${actionType}, then ${allowed ? 'allowed' : 'blocked'}`, () => {
      const d = decide(policy, act({ actionType }), ctx());
      if (allowed) expectAllow(d);
      else expectViolation(d, 'block', 'action_type_allowlist', 'types');
    });
  }
});

describe('action_types on rules', () => {
  const policy = policyOf([{ rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 10, currency: 'USD', action_types: ['refund', 'payout'] } }]);
  const cases: [string, boolean][] = [
    ['refund', false],
    ['payout', false],
    ['payment', true],
    ['transfer', true],
  ];
  for (const [actionType, allowed] of cases) {
    test(`when a max_amount applies to refunds and payouts and a ${actionType} is over it, then ${allowed ? 'allowed' : 'blocked'}`, () => {
      const d = decide(policy, act({ actionType, amount: 1001 }), ctx());
      if (allowed) expectAllow(d);
      else expectViolation(d, 'block', 'max_amount', 'max');
    });
  }
});

describe('currencies: never compared across currencies', () => {
  const usdOnly = (rule: RuleDocument) => policyOf([rule]);
  const cases: [string, RuleDocument, string, number][] = [
    ['max_amount in USD, a JPY amount that is numerically tiny', { rule_id: 'r', rule_type: 'max_amount', parameters: { limit: 500, currency: 'USD' } }, 'jpy', 500],
    ['max_amount in USD, a KWD amount', { rule_id: 'r', rule_type: 'max_amount', parameters: { limit: 500, currency: 'USD' } }, 'kwd', 1],
    ['max_amount in JPY, a USD amount', { rule_id: 'r', rule_type: 'max_amount', parameters: { limit: 100_000, currency: 'JPY' } }, 'usd', 1],
    ['velocity_limit in USD, a JPY amount', { rule_id: 'r', rule_type: 'velocity_limit', parameters: { limit: 500, currency: 'USD', window: 'daily' } }, 'jpy', 1],
    ['velocity_limit in KWD, a USD amount', { rule_id: 'r', rule_type: 'velocity_limit', parameters: { limit: 500, currency: 'KWD', window: 'monthly' } }, 'usd', 1],
    ['counterparty_limit in USD, a JPY amount', { rule_id: 'r', rule_type: 'counterparty_limit', parameters: { limit: 500, currency: 'USD', window: 'daily' } }, 'jpy', 1],
  ];
  for (const [name, rule, currency, amount] of cases) {
    test(`when ${name}, then it is blocked by that rule`, () => {
      const d = decide(usdOnly(rule), act({ currency, amount, counterparty: 'cus_1' }), ctx());
      expectViolation(d, 'block', rule.rule_type, 'r');
    });
  }

  test('when only an escalation threshold is set in USD, then a JPY amount is not silently allowed', () => {
    const policy = policyOf([{ rule_id: 'esc', rule_type: 'escalate_if', parameters: { amount_above: 200, currency: 'USD' } }]);
    const d = decide(policy, act({ currency: 'jpy', amount: 1 }), ctx());
    assert.notEqual(d.decision, 'allow');
    assert.equal(d.violatedRuleId, 'esc');
  });

  const twoCurrencies = policyOf([
    { rule_id: 'usd-max', rule_type: 'max_amount', parameters: { limit: 500, currency: 'USD' } },
    { rule_id: 'jpy-max', rule_type: 'max_amount', parameters: { limit: 50_000, currency: 'JPY' } },
  ]);
  const twoCases: [string, number, 'allow' | 'block', string | null][] = [
    ['usd', 50_000, 'allow', null],
    ['usd', 50_001, 'block', 'usd-max'],
    ['jpy', 50_000, 'allow', null],
    ['jpy', 50_001, 'block', 'jpy-max'],
    ['kwd', 1, 'block', 'usd-max'],
  ];
  for (const [currency, amount, outcome, ruleId] of twoCases) {
    test(`when max_amount rules exist in USD and JPY and ${amount} ${currency} is requested, then ${outcome}${ruleId ? ` by ${ruleId}` : ''}`, () => {
      const d = decide(twoCurrencies, act({ currency, amount }), ctx());
      if (outcome === 'allow') expectAllow(d);
      else expectViolation(d, 'block', 'max_amount', ruleId ?? '');
    });
  }

  test('when daily limits exist in USD and KWD, then each currency is counted against its own limit', () => {
    const policy = policyOf([
      { rule_id: 'usd-day', rule_type: 'velocity_limit', parameters: { limit: 100, currency: 'USD', window: 'daily' } },
      { rule_id: 'kwd-day', rule_type: 'velocity_limit', parameters: { limit: 30, currency: 'KWD', window: 'daily' } },
    ]);
    const usd = act({ amount: 1, currency: 'usd' });
    const kwd = act({ amount: 30_000, currency: 'kwd' });
    const usage = usageFor(policy, [['usd-day', { amount: 10_000, count: 4 }]], usd);
    expectViolation(decide(policy, usd, ctx({ usage })), 'block', 'velocity_limit', 'usd-day');
    expectAllow(decide(policy, kwd, ctx({ usage })));
    expectViolation(decide(policy, { ...kwd, amount: 30_001 }, ctx({ usage })), 'block', 'velocity_limit', 'kwd-day');
  });
});

describe('precedence: block beats escalate beats allow; the first violated rule in order is reported', () => {
  test('when an escalation rule comes first and a block rule second, then the block is reported', () => {
    const policy = policyOf([
      { rule_id: 'esc', rule_type: 'escalate_if', parameters: { amount_above: 100, currency: 'USD' } },
      { rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 500, currency: 'USD' } },
    ]);
    expectViolation(decide(policy, act({ amount: 50_001 }), ctx()), 'block', 'max_amount', 'max');
    expectViolation(decide(policy, act({ amount: 50_000 }), ctx()), 'escalate', 'escalate_if', 'esc');
    expectAllow(decide(policy, act({ amount: 10_000 }), ctx()));
  });

  test('when two rules block, then the first in policy order is reported', () => {
    const blocklist: RuleDocument = { rule_id: 'deny', rule_type: 'merchant_blocklist', description: 'No evil', parameters: { merchants: ['evil.example'] } };
    const max: RuleDocument = { rule_id: 'max', rule_type: 'max_amount', description: 'Max 5', parameters: { limit: 5, currency: 'USD' } };
    const action = act({ amount: 501, merchant: { url: 'evil.example' } });
    const a = decide(policyOf([blocklist, max]), action, ctx());
    expectViolation(a, 'block', 'merchant_blocklist', 'deny');
    assert.equal(a.violatedRuleDescription, 'No evil');
    const b = decide(policyOf([max, blocklist]), action, ctx());
    expectViolation(b, 'block', 'max_amount', 'max');
    assert.equal(b.violatedRuleDescription, 'Max 5');
  });

  test('when two rules escalate, then the first in policy order is reported', () => {
    const policy = policyOf([
      { rule_id: 'esc-1', rule_type: 'escalate_if', parameters: { amount_above: 10, currency: 'USD' } },
      { rule_id: 'esc-2', rule_type: 'refund_age_limit', parameters: { max_days: 30 } },
    ]);
    expectViolation(decide(policy, act({ actionType: 'refund', amount: 1001 }), ctx()), 'escalate', 'escalate_if', 'esc-1');
    expectViolation(decide(policy, act({ actionType: 'refund', amount: 1000 }), ctx()), 'escalate', 'refund_age_limit', 'esc-2');
  });

  test('when an allowed action falls in a notify band and a later rule escalates, then it escalates without notify', () => {
    const policy = policyOf([
      { rule_id: 'band', rule_type: 'escalate_if', parameters: { notify_at_or_above: 1, currency: 'USD' } },
      { rule_id: 'payouts', rule_type: 'escalate_if', parameters: { action_types: ['payout'] } },
    ]);
    expectAllow(decide(policy, act({ amount: 100 }), ctx()), true);
    expectViolation(decide(policy, act({ actionType: 'payout', amount: 100 }), ctx()), 'escalate', 'escalate_if', 'payouts');
  });

  test('when a rule has no description, then violated_rule_description is null', () => {
    const policy = policyOf([{ rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 1, currency: 'USD' } }]);
    const d = decide(policy, act({ amount: 101 }), ctx());
    expectViolation(d, 'block', 'max_amount', 'max');
    assert.equal(d.violatedRuleDescription, null);
  });

  test('when the policy has no rules, then everything valid is allowed', () => {
    expectAllow(decide(policyOf([]), act({ amount: 1_000_000_000 }), ctx()), false);
  });
});

describe('policy_version and policy_id are carried', () => {
  for (const version of [1, 7, 42]) {
    test(`when the policy is version ${version}, then allow, block and invalid decisions name it`, () => {
      const policy = policyOf([{ rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 1, currency: 'USD' } }], version);
      for (const action of [act({ amount: 1 }), act({ amount: 101 }), act({ amount: -1 })]) {
        const d = decide(policy, action, ctx());
        assert.equal(d.policyVersion, version);
        assert.equal(d.policyId, 'test-policy');
      }
    });
  }
});

describe('malformed actions are blocked with invalid_action', () => {
  const policy = policyOf([{ rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 1000, currency: 'USD' } }], 3);
  const cases: [string, Partial<Action>][] = [
    ['a negative amount', { amount: -1 }],
    ['a fractional amount', { amount: 1.5 }],
    ['a NaN amount', { amount: Number.NaN }],
    ['an infinite amount', { amount: Number.POSITIVE_INFINITY }],
    ['an amount beyond safe integers', { amount: 2 ** 53 }],
    ['an unknown currency', { currency: 'xyz' }],
    ['an empty currency', { currency: '' }],
    ['a two-letter currency', { currency: 'us' }],
    ['an empty action type', { actionType: '' }],
    ['an upper-case action type', { actionType: 'Refund' }],
    ['an action type with punctuation', { actionType: 'refund!' }],
    ['an action type with spaces', { actionType: 'big refund' }],
  ];
  for (const [name, change] of cases) {
    test(`when the action has ${name}, then it is blocked as invalid_action`, () => {
      const d = decide(policy, act(change), ctx());
      assert.equal(d.decision, 'block');
      assert.equal(d.reasonCode, 'invalid_action');
      assert.equal(d.violatedRuleId, null);
      assert.equal(d.policyVersion, 3);
      assert.ok((d.message ?? '').length > 0);
    });
  }

  test('when the policy has no rules, then a malformed action is still blocked', () => {
    assert.equal(decide(policyOf([]), act({ amount: -5 }), ctx()).reasonCode, 'invalid_action');
  });
});

describe('seed 002: the refund policy walkthrough', () => {
  const policy = compilePolicy(
    seedRefundPolicy(),
    1,
  );
  // [case, action, decision, violated rule, description]
  const cases: [string, Partial<Action>, 'allow' | 'block' | 'escalate', string | null, string | null][] = [
    ['a $50 refund of a 5-day-old purchase', { amount: 5000, refundAgeDays: 5 }, 'allow', null, null],
    ['a $750 refund', { amount: 75_000, refundAgeDays: 5 }, 'block', 'r1', 'Block refunds over $500'],
    ['a $500.00 refund', { amount: 50_000, refundAgeDays: 5 }, 'escalate', 'r2', 'Escalate refunds over $200'],
    ['a $200.00 refund', { amount: 20_000, refundAgeDays: 5 }, 'allow', null, null],
    ['a $200.01 refund', { amount: 20_001, refundAgeDays: 5 }, 'escalate', 'r2', 'Escalate refunds over $200'],
    ['a $50 refund of a 31-day-old purchase', { amount: 5000, refundAgeDays: 31 }, 'block', 'r3', 'Block refunds older than 30 days'],
    ['a $250 refund of a 40-day-old purchase (block beats the earlier escalation)', { amount: 25_000, refundAgeDays: 40 }, 'block', 'r3', 'Block refunds older than 30 days'],
    ['a $50 refund without a purchase date', { amount: 5000 }, 'escalate', 'r3', 'Block refunds older than 30 days'],
    ['a $300 payment (r2 and r3 are for refunds)', { actionType: 'payment', amount: 30_000 }, 'allow', null, null],
    ['a ¥500 refund (no JPY limits)', { amount: 500, currency: 'jpy', refundAgeDays: 1 }, 'block', 'r1', 'Block refunds over $500'],
  ];
  for (const [name, change, outcome, ruleId, description] of cases) {
    test(`when ${name}, then ${outcome}${ruleId ? ` by ${ruleId}` : ''}`, () => {
      const d = decide(policy, act({ actionType: 'refund', counterparty: 'customer_123', ...change }), ctx());
      assert.equal(d.decision, outcome);
      assert.equal(d.violatedRuleId, ruleId);
      assert.equal(d.violatedRuleDescription, description);
      assert.equal(d.policyVersion, 1);
      assert.equal(d.policyId, 'my_refund_policy');
      if (ruleId) assert.equal(d.reasonCode, policy.rules.find((r) => r.id === ruleId)?.type);
    });
  }

  test('when the $750 refund is blocked, then the message states the amount and the limit', () => {
    const d = decide(policy, act({ actionType: 'refund', amount: 75_000, refundAgeDays: 5 }), ctx());
    assert.match(d.message ?? '', /750(\.00)? USD/);
    assert.match(d.message ?? '', /500(\.00)? USD/);
  });
});

function toMajor(minor: number, currency: string): string {
  const exponent = { usd: 2, jpy: 0, kwd: 3 }[currency] ?? 2;
  if (exponent === 0) return String(minor);
  const digits = String(minor).padStart(exponent + 1, '0');
  return `${digits.slice(0, -exponent)}.${digits.slice(-exponent)}`;
}
