import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  MoneyError,
  currencyExponent,
  formatMoney,
  isCurrency,
  normalizeCurrency,
  parseAmountWithCurrency,
  toMajorNumber,
  toMajorString,
  toMinorUnits,
} from '../../src/money.js';

describe('currencyExponent', () => {
  const cases: [string, number][] = [
    ['JPY', 0],
    ['jpy', 0],
    ['USD', 2],
    ['usd', 2],
    ['EUR', 2],
    ['KWD', 3],
    ['kwd', 3],
    ['BHD', 3],
  ];
  for (const [code, exponent] of cases) {
    test(`when the currency is ${code}, then it has ${exponent} decimals`, () => {
      assert.equal(currencyExponent(code), exponent);
    });
  }

  for (const bad of ['XYZ', 'US', 'USDD', '', '12A']) {
    test(`when the currency is "${bad}", then it is a MoneyError`, () => {
      assert.throws(() => currencyExponent(bad), MoneyError);
    });
  }
});

describe('isCurrency / normalizeCurrency', () => {
  const cases: [string, boolean][] = [
    ['USD', true],
    ['usd', true],
    ['Jpy', true],
    ['KWD', true],
    ['XYZ', false],
    ['ABC', false],
    ['US', false],
    ['USDX', false],
    ['U$D', false],
    ['', false],
  ];
  for (const [code, known] of cases) {
    test(`when the code is "${code}", then isCurrency is ${known}`, () => {
      assert.equal(isCurrency(code), known);
      if (known) assert.equal(normalizeCurrency(code), code.toLowerCase());
      else assert.throws(() => normalizeCurrency(code), MoneyError);
    });
  }
});

describe('toMinorUnits: exact conversions', () => {
  const cases: [number | string, string, number][] = [
    ['12.345', 'KWD', 12345],
    ['12.3450', 'KWD', 12345],
    ['0.001', 'KWD', 1],
    [8.675, 'KWD', 8675],
    ['12', 'KWD', 12000],
    [19.99, 'USD', 1999],
    ['19.99', 'USD', 1999],
    [0.1, 'USD', 10],
    [0.07, 'USD', 7],
    [1.15, 'USD', 115], // 1.15 * 100 is 114.99999999999999 in floating point
    [4.35, 'USD', 435], // 4.35 * 100 is 434.99999999999994
    ['500', 'USD', 50000],
    [500, 'usd', 50000],
    ['0', 'USD', 0],
    [0, 'USD', 0],
    [' 12.50 ', 'USD', 1250],
    ['1000', 'JPY', 1000],
    [1000, 'JPY', 1000],
    ['1.0', 'JPY', 1],
    [1e3, 'JPY', 1000], // the number 1000, not the text "1e3"
    ['90071992547409.91', 'USD', Number.MAX_SAFE_INTEGER],
  ];
  for (const [major, currency, minor] of cases) {
    test(`when ${typeof major} ${JSON.stringify(major)} ${currency} is converted, then it is ${minor} minor units`, () => {
      const result = toMinorUnits(major, currency);
      assert.equal(result, minor);
      assert.ok(Number.isSafeInteger(result));
    });
  }
});

describe('toMinorUnits: errors, never rounding', () => {
  const cases: [string, number | string, string][] = [
    ['JPY has no decimals', '1.5', 'JPY'],
    ['JPY has no decimals (number)', 1.5, 'JPY'],
    ['USD has two decimals', '1.005', 'USD'],
    ['USD has two decimals (number)', 19.999, 'USD'],
    ['KWD has three decimals', '12.3456', 'KWD'],
    ['a float sum is not silently rounded', 0.1 + 0.2, 'USD'],
    ['a float product is not silently rounded', 1.1 * 3, 'USD'],
    ['negative text', '-1', 'USD'],
    ['negative number', -0.01, 'USD'],
    ['negative zero-ish text', '-0', 'USD'],
    ['an exponent in text', '1e3', 'USD'],
    ['an exponent in text (upper case)', '1E3', 'JPY'],
    ['a huge number printed with an exponent', 1e21, 'USD'],
    ['NaN', Number.NaN, 'USD'],
    ['Infinity', Number.POSITIVE_INFINITY, 'USD'],
    ['too large for a safe integer (text)', '99999999999999999999', 'USD'],
    ['too large for a safe integer (number)', 2 ** 53, 'USD'],
    ['one over the largest safe integer', '90071992547409.92', 'USD'],
    ['empty text', '', 'USD'],
    ['spaces only', '   ', 'USD'],
    ['letters', 'abc', 'USD'],
    ['thousands separator', '1,000', 'USD'],
    ['a currency sign', '$5', 'USD'],
    ['a trailing dot', '12.', 'USD'],
    ['hexadecimal', '0x10', 'USD'],
    ['an unknown currency', '10', 'XYZ'],
  ];
  for (const [name, major, currency] of cases) {
    test(`when ${name} (${String(major)} ${currency}), then it is a MoneyError`, () => {
      assert.throws(() => toMinorUnits(major, currency), MoneyError);
    });
  }
});

describe('toMajorString / toMajorNumber / formatMoney', () => {
  const cases: [number, string, string][] = [
    [1999, 'usd', '19.99'],
    [5, 'usd', '0.05'],
    [0, 'usd', '0.00'],
    [75000, 'usd', '750.00'],
    [-5, 'usd', '-0.05'],
    [500, 'jpy', '500'],
    [0, 'jpy', '0'],
    [12345, 'kwd', '12.345'],
    [5, 'kwd', '0.005'],
    [1000, 'kwd', '1.000'],
  ];
  for (const [minor, currency, text] of cases) {
    test(`when ${minor} minor units of ${currency} are printed, then it reads "${text}"`, () => {
      assert.equal(toMajorString(minor, currency), text);
      assert.equal(toMajorNumber(minor, currency), Number(text));
      assert.equal(formatMoney({ amount: minor, currency }), `${text} ${currency.toUpperCase()}`);
    });
  }

  test('when a minor amount is printed and read back, then it is unchanged', () => {
    for (const currency of ['usd', 'jpy', 'kwd']) {
      for (const minor of [0, 1, 9, 10, 99, 100, 101, 1999, 12345, 50001, 9_007_199_254_740_991]) {
        assert.equal(toMinorUnits(toMajorString(minor, currency), currency), minor, `${minor} ${currency}`);
      }
    }
  });
});

describe('parseAmountWithCurrency', () => {
  const good: [string, number, string][] = [
    ['50 USD', 5000, 'usd'],
    ['12.50 eur', 1250, 'eur'],
    ['  5 USD  ', 500, 'usd'],
    ['1000 JPY', 1000, 'jpy'],
    ['12.345 KWD', 12345, 'kwd'],
    ['1_000 USD', 100000, 'usd'],
    ['0.01 USD', 1, 'usd'],
  ];
  for (const [text, amount, currency] of good) {
    test(`when "${text}" is parsed, then it is ${amount} ${currency}`, () => {
      assert.deepEqual(parseAmountWithCurrency(text), { amount, currency });
    });
  }

  const bad: [string, string][] = [
    ['no currency', '50'],
    ['an unknown currency', '10 ABC'],
    ['currency first', 'USD 50'],
    ['no space', '50USD'],
    ['too many decimals for JPY', '1.5 JPY'],
    ['too many decimals for USD', '0.001 USD'],
    ['a negative amount', '-5 USD'],
    ['an exponent', '1e3 USD'],
    ['empty', ''],
    ['two amounts', '5 10 USD'],
  ];
  for (const [name, text] of bad) {
    test(`when the text has ${name} ("${text}"), then it is a MoneyError`, () => {
      assert.throws(() => parseAmountWithCurrency(text), MoneyError);
    });
  }

  test('when the currency is unknown, then the message names it', () => {
    assert.throws(() => parseAmountWithCurrency('10 ABC'), /ABC/);
  });
});
