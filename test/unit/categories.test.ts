import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  CATEGORY_GROUPS,
  STRIPE_CATEGORY_MCCS,
  isKnownCategoryName,
  mccsForStripeCategory,
  normalizeMcc,
  resolveCategories,
  stripeCategoryForMcc,
} from '../../src/policy/categories.js';

/** Codes newer than the greggles list, appended at the end of data/mcc_codes.csv. */
const NEWER_MCCS = ['5262', '5552', '6540', '9406'];

/** The first column of data/mcc_codes.csv (MCC is never quoted), header skipped. */
function csvMccs(): string[] {
  const text = readFileSync(new URL('../../data/mcc_codes.csv', import.meta.url), 'utf8');
  return text
    .split('\n')
    .slice(1)
    .filter((line) => line.trim() !== '')
    .map((line) => line.slice(0, line.indexOf(',')));
}

const allTableMccs = () => Object.values(STRIPE_CATEGORY_MCCS).flat();
const allGroupMccs = () =>
  Object.values(CATEGORY_GROUPS).flatMap((g) => [
    ...g.extraMccs,
    ...g.stripeCategories.flatMap((c) => STRIPE_CATEGORY_MCCS[c] ?? []),
  ]);

test('the table has exactly the 295 Stripe Issuing category names', () => {
  const names = Object.keys(STRIPE_CATEGORY_MCCS);
  assert.equal(names.length, 295);
  assert.equal(new Set(names).size, 295);
  assert.ok(names.includes('government_licensed_online_casions_online_gambling_us_region_only'));
  assert.ok(names.includes('miscellaneous'));
  for (const name of names) assert.match(name, /^[a-z][a-z0-9_]*$/);
});

test('every category except miscellaneous has an MCC, and every MCC is 4 digits', () => {
  for (const [name, mccs] of Object.entries(STRIPE_CATEGORY_MCCS)) {
    if (name === 'miscellaneous') assert.deepEqual(mccs, []);
    else assert.ok(mccs.length > 0, name);
  }
  for (const mcc of [...allTableMccs(), ...allGroupMccs()]) assert.match(mcc, /^[0-9]{4}$/);
});

test('no MCC belongs to two Stripe categories', () => {
  const mccs = allTableMccs();
  assert.equal(new Set(mccs).size, mccs.length);
});

test('known category → MCC pairs', () => {
  const expected: Record<string, string> = {
    ac_refrigeration_repair: '7623',
    agricultural_cooperative: '0763',
    automated_cash_disburse: '6011',
    betting_casino_gambling: '7995',
    computer_software_stores: '5734',
    veterinary_services: '0742',
    wires_money_orders: '4829',
    non_fi_money_orders: '6051',
    non_fi_stored_value_card_purchase_load: '6540',
    marketplaces: '5262',
    electric_vehicle_charging: '5552',
    government_owned_lotteries_non_us_region: '9406',
  };
  for (const [name, mcc] of Object.entries(expected)) {
    assert.deepEqual(STRIPE_CATEGORY_MCCS[name], [mcc], name);
    assert.deepEqual(mccsForStripeCategory(name), [mcc], name);
  }
});

test('the required groups exist and only reference known Stripe names', () => {
  const required = [
    'gambling',
    'cryptocurrency',
    'money_transfer',
    'cash',
    'securities',
    'travel',
    'transport',
    'adult',
    'alcohol_tobacco',
    'government',
    'pawn_secondhand',
    'software_saas',
  ];
  for (const name of required) assert.ok(CATEGORY_GROUPS[name], name);
  for (const [name, group] of Object.entries(CATEGORY_GROUPS)) {
    assert.ok(group.description.length > 0, name);
    for (const c of group.stripeCategories) assert.ok(STRIPE_CATEGORY_MCCS[c], `${name}: ${c}`);
  }
});

test('group names and Stripe names do not collide', () => {
  for (const name of Object.keys(CATEGORY_GROUPS)) assert.equal(STRIPE_CATEGORY_MCCS[name], undefined, name);
});

test('gambling resolves 7995 and the licensed-gambling and lottery codes', () => {
  const { resolved, unknown } = resolveCategories(['gambling']);
  assert.deepEqual(unknown, []);
  for (const mcc of ['7995', '7800', '7801', '7802', '9406']) assert.ok(resolved.mccs.has(mcc), mcc);
  assert.ok(resolved.stripeCategories.includes('betting_casino_gambling'));
});

test('cryptocurrency resolves 6051, 4829, 6211 and 6540', () => {
  const { resolved } = resolveCategories(['cryptocurrency']);
  assert.deepEqual([...resolved.mccs].sort(), ['4829', '6051', '6211', '6540']);
});

test('travel includes the brand MCC ranges present in the CSV', () => {
  const { resolved } = resolveCategories(['travel']);
  for (const mcc of ['4511', '7011', '7512', '3000', '3299', '3351', '3441', '3501', '3790', '3816', '3835']) {
    assert.ok(resolved.mccs.has(mcc), mcc);
  }
  for (const mcc of ['3300', '3442', '3791', '3999']) assert.ok(!resolved.mccs.has(mcc), mcc);
  const csv = new Set(csvMccs());
  for (const mcc of CATEGORY_GROUPS.travel?.extraMccs ?? []) assert.ok(csv.has(mcc), mcc);
  assert.equal(CATEGORY_GROUPS.travel?.extraMccs.length, 300 + 91 + 292);
});

test('unknown names come back in unknown, exactly as given, and known ones still resolve', () => {
  const { resolved, unknown } = resolveCategories(['gambling', 'not_a_category', ' Nope ', '', '12345', 'constructor']);
  assert.deepEqual(unknown, ['not_a_category', ' Nope ', '', '12345', 'constructor']);
  assert.ok(resolved.mccs.has('7995'));
});

test('names are case-insensitive and surrounding whitespace is ignored', () => {
  const { resolved, unknown } = resolveCategories(['  Gambling ', 'COMPUTER_SOFTWARE_STORES', 'Cash\t']);
  assert.deepEqual(unknown, []);
  for (const mcc of ['7995', '5734', '6010', '6011']) assert.ok(resolved.mccs.has(mcc), mcc);
  assert.deepEqual(mccsForStripeCategory(' Computer_Software_Stores '), ['5734']);
  assert.ok(isKnownCategoryName('TRAVEL'));
  assert.ok(isKnownCategoryName(' bakeries '));
});

test('raw MCC strings are accepted and map back to their Stripe category', () => {
  const { resolved, unknown } = resolveCategories(['5734', ' 742 ', '3000']);
  assert.deepEqual(unknown, []);
  assert.deepEqual([...resolved.mccs].sort(), ['0742', '3000', '5734']);
  assert.deepEqual(resolved.stripeCategories, ['computer_software_stores', 'veterinary_services']);
});

test('resolution results: empty input, miscellaneous, sorted unique Stripe names', () => {
  assert.deepEqual(resolveCategories([]), { resolved: { mccs: new Set(), stripeCategories: [] }, unknown: [] });
  const misc = resolveCategories(['miscellaneous']).resolved;
  assert.equal(misc.mccs.size, 0);
  assert.deepEqual(misc.stripeCategories, ['miscellaneous']);
  const both = resolveCategories(['cryptocurrency', 'money_transfer', 'wires_money_orders']).resolved;
  assert.deepEqual(both.stripeCategories, [
    'financial_institutions',
    'non_fi_money_orders',
    'non_fi_stored_value_card_purchase_load',
    'security_brokers_dealers',
    'wires_money_orders',
  ]);
});

test('normalizeMcc', () => {
  assert.equal(normalizeMcc('742'), '0742');
  assert.equal(normalizeMcc(742), '0742');
  assert.equal(normalizeMcc('0742'), '0742');
  assert.equal(normalizeMcc(' 5734 '), '5734');
  assert.equal(normalizeMcc(5734), '5734');
  for (const bad of ['12345', 12345, 'abc', '57a4', '', ' ', '-742', -742, 74.2, Number.NaN, null, undefined, {}, ['5734']]) {
    assert.equal(normalizeMcc(bad), undefined, String(bad));
  }
});

test('stripeCategoryForMcc', () => {
  assert.equal(stripeCategoryForMcc('5734'), 'computer_software_stores');
  assert.equal(stripeCategoryForMcc('0763'), 'agricultural_cooperative');
  assert.equal(stripeCategoryForMcc('763'), 'agricultural_cooperative');
  assert.equal(stripeCategoryForMcc('3000'), undefined);
  assert.equal(stripeCategoryForMcc('abc'), undefined);
});

test('lookups ignore inherited object keys', () => {
  for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
    assert.equal(mccsForStripeCategory(name), undefined, name);
    assert.equal(isKnownCategoryName(name), false, name);
  }
  assert.equal(isKnownCategoryName('5734'), false);
});

test('the data is frozen', () => {
  assert.ok(Object.isFrozen(STRIPE_CATEGORY_MCCS));
  assert.ok(Object.isFrozen(STRIPE_CATEGORY_MCCS.bakeries));
  assert.ok(Object.isFrozen(CATEGORY_GROUPS));
  assert.ok(Object.isFrozen(CATEGORY_GROUPS.gambling?.stripeCategories));
});

test('every MCC in the table and the groups is in the CSV or listed as a newer code', () => {
  const rows = csvMccs();
  assert.equal(rows.length, 981 + NEWER_MCCS.length);
  assert.equal(new Set(rows).size, rows.length);
  const original = new Set(rows.slice(0, 981));
  for (const mcc of NEWER_MCCS) {
    assert.ok(!original.has(mcc), `${mcc} is not newer`);
    assert.ok(rows.includes(mcc), `${mcc} missing from data/mcc_codes.csv`);
  }
  const known = new Set([...original, ...NEWER_MCCS]);
  for (const mcc of [...allTableMccs(), ...allGroupMccs()]) assert.ok(known.has(mcc), mcc);
});
