// Money: integer minor units with an ISO 4217 currency. Converted from major units exactly once, at
// the boundary (JSON policies, SPEND.md, the check API); never a float inside.
import { z } from 'zod';

export interface Money {
  /** Integer minor units (cents for USD, yen for JPY, fils for KWD). */
  amount: number;
  /** Lower-case ISO 4217 code, as Stripe writes it. */
  currency: string;
}

const knownCurrencies = new Set(Intl.supportedValuesOf('currency').map((c) => c.toLowerCase()));

export function isCurrency(code: string): boolean {
  return /^[a-z]{3}$/i.test(code) && knownCurrencies.has(code.toLowerCase());
}

export function normalizeCurrency(code: string): string {
  if (!isCurrency(code)) throw new MoneyError(`unknown currency "${code}"`);
  return code.toLowerCase();
}

/** Digits after the decimal point (USD 2, JPY 0, KWD 3), from the ISO data in Node's ICU. */
export function currencyExponent(currency: string): number {
  const code = normalizeCurrency(currency).toUpperCase();
  return new Intl.NumberFormat('en', { style: 'currency', currency: code }).resolvedOptions()
    .maximumFractionDigits ?? 2;
}

export class MoneyError extends Error {}

/**
 * Major units ("12.5", 12.5, "1000") → integer minor units, exactly. More decimals than the
 * currency has, negatives, exponents and non-numbers are errors, never rounded.
 */
export function toMinorUnits(major: number | string, currency: string): number {
  const exponent = currencyExponent(currency);
  const text = typeof major === 'number' ? numberToPlainString(major) : major.trim();
  const match = /^(\d+)(?:\.(\d+))?$/.exec(text);
  if (!match) throw new MoneyError(`"${String(major)}" is not a non-negative decimal amount`);
  const whole = match[1] ?? '0';
  const fraction = (match[2] ?? '').replace(/0+$/, '');
  if (fraction.length > exponent) {
    throw new MoneyError(
      `${text} ${currency.toUpperCase()} has more than ${exponent} decimal place${exponent === 1 ? '' : 's'}`,
    );
  }
  const minor = Number(whole + fraction.padEnd(exponent, '0'));
  if (!Number.isSafeInteger(minor)) throw new MoneyError(`${text} is too large`);
  return minor;
}

function numberToPlainString(value: number): string {
  if (!Number.isFinite(value)) return 'NaN';
  const text = String(value);
  return /e/i.test(text) ? 'NaN' : text;
}

/** Minor units → "750.00" (the currency's own number of decimals). */
export function toMajorString(minor: number, currency: string): string {
  const exponent = currencyExponent(currency);
  const sign = minor < 0 ? '-' : '';
  const digits = String(Math.abs(minor)).padStart(exponent + 1, '0');
  if (exponent === 0) return sign + digits;
  return `${sign}${digits.slice(0, -exponent)}.${digits.slice(-exponent)}`;
}

/** Minor units → a JSON number in major units (750.0 for the seed-002 wire format). */
export function toMajorNumber(minor: number, currency: string): number {
  return Number(toMajorString(minor, currency));
}

export function formatMoney(money: Money): string {
  return `${toMajorString(money.amount, money.currency)} ${money.currency.toUpperCase()}`;
}

/** "50 USD", "12.50 eur" → Money. The form SPEND.md uses for every amount. */
export function parseAmountWithCurrency(text: string): Money {
  const match = /^\s*(\S+)\s+([A-Za-z]{3})\s*$/.exec(text);
  if (!match) throw new MoneyError(`"${text}" is not an amount like "50 USD"`);
  const currency = normalizeCurrency(match[2] ?? '');
  return { amount: toMinorUnits((match[1] ?? '').replace(/_/g, ''), currency), currency };
}

/** zod helper: a currency code, normalized to lower case. */
export const currencySchema = z
  .string()
  .refine(isCurrency, { message: 'must be an ISO 4217 currency code such as "USD"' })
  .transform((c) => c.toLowerCase());
