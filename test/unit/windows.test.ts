import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { compilePolicy } from '../../src/policy/compile.js';
import { decide } from '../../src/policy/decide.js';
import type { Action, CompiledRule, Window } from '../../src/policy/model.js';
import { counts, usageKey, usageSpecFor, usageSpecs } from '../../src/policy/usage.js';
import type { ReservationFacts, Usage } from '../../src/policy/usage.js';
import { isTimeZone, localClock, windowBounds } from '../../src/policy/windows.js';

const HOUR = 3600_000;
const at = (iso: string) => new Date(iso);

describe('windowBounds: calendar windows in the agent time zone', () => {
  // [case, window, zone, now, start, end]
  const cases: [string, Window, string, string, string, string][] = [
    ['UTC day', 'daily', 'UTC', '2026-04-03T12:00:00Z', '2026-04-03T00:00:00.000Z', '2026-04-04T00:00:00.000Z'],
    ['New York ordinary day (EDT)', 'daily', 'America/New_York', '2026-06-15T12:00:00Z', '2026-06-15T04:00:00.000Z', '2026-06-16T04:00:00.000Z'],
    ['New York, 23h day (DST starts 2026-03-08)', 'daily', 'America/New_York', '2026-03-08T17:00:00Z', '2026-03-08T05:00:00.000Z', '2026-03-09T04:00:00.000Z'],
    ['New York, 25h day (DST ends 2026-11-01)', 'daily', 'America/New_York', '2026-11-01T17:00:00Z', '2026-11-01T04:00:00.000Z', '2026-11-02T05:00:00.000Z'],
    ['Berlin, 23h day (DST starts 2026-03-29)', 'daily', 'Europe/Berlin', '2026-03-29T12:00:00Z', '2026-03-28T23:00:00.000Z', '2026-03-29T22:00:00.000Z'],
    ['Berlin, 25h day (DST ends 2026-10-25)', 'daily', 'Europe/Berlin', '2026-10-25T12:00:00Z', '2026-10-24T22:00:00.000Z', '2026-10-25T23:00:00.000Z'],
    ['Kolkata day (+05:30), UTC evening already tomorrow', 'daily', 'Asia/Kolkata', '2026-04-03T20:00:00Z', '2026-04-03T18:30:00.000Z', '2026-04-04T18:30:00.000Z'],
    ['Kolkata hour starts at half past in UTC', 'hourly', 'Asia/Kolkata', '2026-04-03T10:10:00Z', '2026-04-03T09:30:00.000Z', '2026-04-03T10:30:00.000Z'],
    // 2026-03-08 is a Sunday: its ISO week started on Monday 2026-03-02 (EST) and the next starts on
    // Monday 2026-03-09 (EDT), so that week is 167 hours.
    ['New York ISO week containing the DST Sunday', 'weekly', 'America/New_York', '2026-03-08T17:00:00Z', '2026-03-02T05:00:00.000Z', '2026-03-09T04:00:00.000Z'],
    ['UTC ISO week from a Monday', 'weekly', 'UTC', '2026-04-06T00:00:00Z', '2026-04-06T00:00:00.000Z', '2026-04-13T00:00:00.000Z'],
    ['UTC ISO week from a Sunday belongs to the previous Monday', 'weekly', 'UTC', '2026-04-05T23:59:59.999Z', '2026-03-30T00:00:00.000Z', '2026-04-06T00:00:00.000Z'],
    ['Berlin ISO week across the October change', 'weekly', 'Europe/Berlin', '2026-10-25T12:00:00Z', '2026-10-18T22:00:00.000Z', '2026-10-25T23:00:00.000Z'],
    ['New York month of March (starts EST, ends EDT)', 'monthly', 'America/New_York', '2026-03-15T12:00:00Z', '2026-03-01T05:00:00.000Z', '2026-04-01T04:00:00.000Z'],
    ['UTC February 2026', 'monthly', 'UTC', '2026-02-28T23:59:59.999Z', '2026-02-01T00:00:00.000Z', '2026-03-01T00:00:00.000Z'],
    ['Kolkata month: 31 March 19:00 UTC is already April', 'monthly', 'Asia/Kolkata', '2026-03-31T19:00:00Z', '2026-03-31T18:30:00.000Z', '2026-04-30T18:30:00.000Z'],
    ['Berlin month of October (25h day inside)', 'monthly', 'Europe/Berlin', '2026-10-10T12:00:00Z', '2026-09-30T22:00:00.000Z', '2026-10-31T23:00:00.000Z'],
  ];
  for (const [name, window, zone, now, start, end] of cases) {
    test(`when ${name}, then the ${window} window is [${start}, ${end})`, () => {
      const bounds = windowBounds(window, at(now), zone);
      assert.equal(bounds.start.toISOString(), start);
      assert.equal(bounds.end.toISOString(), end);
      assert.ok(bounds.start <= at(now) && at(now) < bounds.end, 'now lies inside its window');
    });
  }

  const lengths: [string, string, string, number][] = [
    ['US spring-forward day', 'America/New_York', '2026-03-08T12:00:00Z', 23],
    ['US fall-back day', 'America/New_York', '2026-11-01T12:00:00Z', 25],
    ['EU spring-forward day', 'Europe/Berlin', '2026-03-29T12:00:00Z', 23],
    ['EU fall-back day', 'Europe/Berlin', '2026-10-25T12:00:00Z', 25],
    ['Kolkata (no DST)', 'Asia/Kolkata', '2026-03-29T12:00:00Z', 24],
  ];
  for (const [name, zone, now, hours] of lengths) {
    test(`when the day is the ${name}, then the daily window is ${hours} hours long`, () => {
      const { start, end } = windowBounds('daily', at(now), zone);
      assert.equal((end.getTime() - start.getTime()) / HOUR, hours);
    });
  }

  test('when the time zone is not an IANA zone, then windowBounds throws', () => {
    assert.equal(isTimeZone('Mars/Olympus'), false);
    assert.equal(isTimeZone('Europe/Berlin'), true);
    assert.throws(() => windowBounds('daily', at('2026-04-03T12:00:00Z'), 'Mars/Olympus'), /time zone/);
  });
});

describe('a reservation at the last millisecond of a local day counts in that day', () => {
  // [zone, the local day's last millisecond as an instant, the next local midnight as an instant]
  const cases: [string, string, string][] = [
    ['UTC', '2026-04-03T23:59:59.999Z', '2026-04-04T00:00:00.000Z'],
    ['America/New_York, DST start day', '2026-03-09T03:59:59.999Z', '2026-03-09T04:00:00.000Z'],
    ['America/New_York, DST end day', '2026-11-02T04:59:59.999Z', '2026-11-02T05:00:00.000Z'],
    ['America/New_York, day before DST start', '2026-03-08T04:59:59.999Z', '2026-03-08T05:00:00.000Z'],
    ['Europe/Berlin, DST start day', '2026-03-29T21:59:59.999Z', '2026-03-29T22:00:00.000Z'],
    ['Europe/Berlin, DST end day', '2026-10-25T22:59:59.999Z', '2026-10-25T23:00:00.000Z'],
    ['Asia/Kolkata', '2026-04-04T18:29:59.999Z', '2026-04-04T18:30:00.000Z'],
  ];
  for (const [label, lastMs, midnight] of cases) {
    const zone = label.split(',')[0] ?? label;
    test(`when the zone is ${label}, then 23:59:59.999 local is in the day and 00:00 local starts the next`, () => {
      const last = at(lastMs);
      const next = at(midnight);
      const dayOfLast = windowBounds('daily', last, zone);
      const dayOfNext = windowBounds('daily', next, zone);
      assert.equal(dayOfLast.end.getTime(), next.getTime(), 'the day ends exactly at the next local midnight');
      assert.equal(dayOfNext.start.getTime(), next.getTime(), 'the next day starts at local midnight');
      assert.equal(localClock(last, zone).minute, 23 * 60 + 59);
      assert.equal(localClock(next, zone).minute, 0);

      const rule = dailyRule();
      const spec = usageSpecFor(rule, usdAction(100), last, zone);
      const nextSpec = usageSpecFor(rule, usdAction(100), next, zone);
      assert.ok(spec && nextSpec);
      assert.equal(counts(spec, facts(last)), true, 'last millisecond counts in its day');
      assert.equal(counts(spec, facts(next)), false, 'midnight does not count in the previous day');
      assert.equal(counts(nextSpec, facts(next)), true, 'midnight counts in the next day');
      assert.equal(counts(nextSpec, facts(last)), false, 'the previous day does not count in the next');
      assert.notEqual(usageKey(spec), usageKey(nextSpec), 'the two days are separate counters');
    });
  }
});

describe('ISO weeks start on Monday and months on the 1st, in local time', () => {
  test('when Sunday 23:59:59.999 and Monday 00:00 in Berlin, then they are different weeks', () => {
    const sunday = at('2026-04-05T21:59:59.999Z'); // Sun 23:59:59.999 CEST
    const monday = at('2026-04-05T22:00:00.000Z'); // Mon 00:00 CEST
    assert.equal(localClock(sunday, 'Europe/Berlin').day, 'sun');
    assert.equal(localClock(monday, 'Europe/Berlin').day, 'mon');
    const a = windowBounds('weekly', sunday, 'Europe/Berlin');
    const b = windowBounds('weekly', monday, 'Europe/Berlin');
    assert.equal(a.end.getTime(), monday.getTime());
    assert.equal(b.start.getTime(), monday.getTime());
    assert.equal(localClock(b.start, 'Europe/Berlin').day, 'mon');
  });

  test('when the last millisecond of a month in New York, then the next month starts at local midnight', () => {
    const last = at('2026-03-01T04:59:59.999Z'); // Feb 28 23:59:59.999 EST
    const first = at('2026-03-01T05:00:00.000Z');
    assert.equal(windowBounds('monthly', last, 'America/New_York').start.toISOString(), '2026-02-01T05:00:00.000Z');
    assert.equal(windowBounds('monthly', first, 'America/New_York').start.toISOString(), '2026-03-01T05:00:00.000Z');
  });

  const weekdays: [string, string, string][] = [
    ['2026-04-06T12:00:00Z', 'UTC', 'mon'],
    ['2026-04-05T12:00:00Z', 'UTC', 'sun'],
    ['2026-04-05T20:00:00Z', 'Asia/Kolkata', 'mon'],
    ['2026-04-06T02:00:00Z', 'America/New_York', 'sun'],
  ];
  for (const [now, zone, day] of weekdays) {
    test(`when ${now} in ${zone}, then localClock says ${day}`, () => {
      assert.equal(localClock(at(now), zone).day, day);
    });
  }
});

describe('usage counters do not carry over a window boundary', () => {
  const policy = compilePolicy(
    {
      policy_id: 'velocity',
      rules: [
        { rule_id: 'day', rule_type: 'velocity_limit', parameters: { limit: 100, currency: 'USD', window: 'daily' } },
        { rule_id: 'week', rule_type: 'velocity_limit', parameters: { limit: 1000, currency: 'USD', window: 'weekly' } },
        { rule_id: 'month', rule_type: 'velocity_limit', parameters: { limit: 5000, currency: 'USD', window: 'monthly' } },
      ],
    },
    1,
  );
  const rule = (id: string) => policy.rules.find((r) => r.id === id) as CompiledRule;
  const zone = 'America/New_York';

  // [window rule, instant at the end of a window, instant at the start of the next]
  const cases: [string, string, string][] = [
    ['day', '2026-11-02T04:59:59.999Z', '2026-11-02T05:00:00.000Z'],
    ['week', '2026-03-09T03:59:59.999Z', '2026-03-09T04:00:00.000Z'],
    ['month', '2026-04-01T03:59:59.999Z', '2026-04-01T04:00:00.000Z'],
  ];
  for (const [id, before, after] of cases) {
    test(`when the ${id} limit is used up, then it blocks until local ${id} boundary ${after} and allows from then`, () => {
      const r = rule(id);
      if (r.type !== 'velocity_limit') throw new Error('expected a velocity_limit');
      const action = usdAction(1);
      const beforeSpec = usageSpecFor(r, action, at(before), zone);
      const afterSpec = usageSpecFor(r, action, at(after), zone);
      assert.ok(beforeSpec && afterSpec);
      assert.notEqual(usageKey(beforeSpec), usageKey(afterSpec));
      assert.equal(beforeSpec.end.getTime(), afterSpec.start.getTime());

      const usage = new Map<string, Usage>([[usageKey(beforeSpec), { amount: r.limit.amount, count: 3 }]]);
      const blocked = decide(policy, action, { now: at(before), timezone: zone, usage, recent: [] });
      assert.equal(blocked.decision, 'block');
      assert.equal(blocked.violatedRuleId, id);
      const allowed = decide(policy, action, { now: at(after), timezone: zone, usage, recent: [] });
      assert.equal(allowed.decision, 'allow', `${id} spend does not carry into the next window`);
    });
  }

  test('when the policy has several windows, then usageSpecs lists one counter for each', () => {
    const specs = usageSpecs(policy, usdAction(1), at('2026-03-08T17:00:00Z'), zone);
    assert.deepEqual(specs.map((s) => s.window).sort(), ['daily', 'monthly', 'weekly']);
    assert.equal(new Set(specs.map((s) => usageKey(s))).size, 3);
    for (const s of specs) assert.equal(s.currency, 'usd');
  });

  test('when the same instant is judged in two zones, then the daily counters differ', () => {
    const now = at('2026-04-03T23:30:00Z');
    const r = rule('day');
    const utc = usageSpecFor(r, usdAction(1), now, 'UTC');
    const kolkata = usageSpecFor(r, usdAction(1), now, 'Asia/Kolkata');
    assert.ok(utc && kolkata);
    assert.notEqual(usageKey(utc), usageKey(kolkata));
    assert.equal(kolkata.start.toISOString(), '2026-04-03T18:30:00.000Z');
  });
});

describe('counts(): which reservations a counter includes', () => {
  const spec = {
    window: 'daily' as const,
    start: at('2026-04-03T00:00:00Z'),
    end: at('2026-04-04T00:00:00Z'),
    currency: 'usd',
    actionFilter: 'payment,refund',
    counterparty: '=cus_1', // '=' + name: this counterparty only
  };
  const base: ReservationFacts = { actionType: 'refund', amount: 100, currency: 'usd', counterparty: 'cus_1', occurredAt: at('2026-04-03T12:00:00Z') };
  const cases: [string, Partial<ReservationFacts>, boolean][] = [
    ['a matching reservation', {}, true],
    ['the first instant of the window', { occurredAt: spec.start }, true],
    ['the end instant (exclusive)', { occurredAt: spec.end }, false],
    ['one millisecond before the window', { occurredAt: new Date(spec.start.getTime() - 1) }, false],
    ['another currency', { currency: 'eur' }, false],
    ['an action type outside the filter', { actionType: 'payout' }, false],
    ['another listed action type', { actionType: 'payment' }, true],
    ['another counterparty', { counterparty: 'cus_2' }, false],
  ];
  for (const [name, change, expected] of cases) {
    test(`when ${name}, then counts is ${expected}`, () => {
      assert.equal(counts(spec, { ...base, ...change }), expected);
    });
  }

  test('when the counter has no filters, then every currency, action and counterparty counts', () => {
    const open = { ...spec, currency: '', actionFilter: '', counterparty: '' };
    assert.equal(counts(open, { ...base, currency: 'jpy', actionType: 'payout', counterparty: 'x' }), true);
  });
});

function dailyRule(): CompiledRule {
  const policy = compilePolicy(
    { policy_id: 'd', rules: [{ rule_id: 'day', rule_type: 'velocity_limit', parameters: { limit: 10, currency: 'USD', window: 'daily' } }] },
    1,
  );
  const rule = policy.rules[0];
  assert.ok(rule);
  return rule;
}

function usdAction(amount: number): Action {
  return { actionType: 'payment', amount, currency: 'usd' };
}

function facts(occurredAt: Date): ReservationFacts {
  return { actionType: 'payment', amount: 100, currency: 'usd', counterparty: '', occurredAt };
}
