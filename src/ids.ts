// Random identifiers and secrets in base62 (Stripe-like: "chk_3kTq…").
import { randomInt } from 'node:crypto';

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

export function base62(length: number): string {
  let out = '';
  for (let i = 0; i < length; i++) out += ALPHABET[randomInt(62)];
  return out;
}

export function newId(prefix: 'chk' | 'viol' | 'res' | 'key' | 'req' | 'cjob'): string {
  return `${prefix}_${base62(24)}`;
}
