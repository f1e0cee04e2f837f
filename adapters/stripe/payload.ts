// Reading Stripe's signed JSON defensively: every field the gateway relies on is checked here, and
// a missing or mistyped one is a PayloadError naming its path (never a TypeError deep inside).
import { PayloadError } from '../processor.js';
import type { Headers } from '../processor.js';

export type Json = Record<string, unknown>;

export function parseObject(rawBody: Buffer): Json {
  let parsed: unknown;
  try {
    parsed = JSON.parse(rawBody.toString('utf8'));
  } catch {
    throw new PayloadError('stripe webhook body is not JSON');
  }
  return object(parsed, 'body');
}

export function object(value: unknown, path: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new PayloadError(`stripe ${path} is not an object`);
  return value as Json;
}

export function string(o: Json, key: string, path: string): string {
  const value = o[key];
  if (typeof value !== 'string' || value === '') throw new PayloadError(`stripe ${path}.${key} is not a string`);
  return value;
}

export function optionalString(o: Json, key: string): string | null {
  const value = o[key];
  return typeof value === 'string' && value !== '' ? value : null;
}

export function integer(o: Json, key: string, path: string): number {
  const value = o[key];
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw new PayloadError(`stripe ${path}.${key} is not an integer`);
  return value;
}

export function boolean(o: Json, key: string, path: string): boolean {
  const value = o[key];
  if (typeof value !== 'boolean') throw new PayloadError(`stripe ${path}.${key} is not a boolean`);
  return value;
}

/** Unix seconds → Date. */
export function timestamp(o: Json, key: string, path: string): Date {
  return new Date(integer(o, key, path) * 1000);
}

/** An id field that Stripe may send as a string or as the expanded object. */
export function idOf(value: unknown): string | null {
  if (typeof value === 'string' && value !== '') return value;
  if (typeof value === 'object' && value !== null && typeof (value as Json).id === 'string') return (value as Json).id as string;
  return null;
}

/** Stripe metadata is a string map; anything else is dropped rather than trusted. */
export function stringMap(value: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return out;
  for (const [k, v] of Object.entries(value)) if (typeof v === 'string') out[k] = v;
  return out;
}

/** One header, case-insensitively; a repeated header is ambiguous and reads as absent. */
export function header(headers: Headers, name: string): string | undefined {
  const wanted = name.toLowerCase();
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== wanted) continue;
    if (Array.isArray(value)) return value.length === 1 ? value[0] : undefined;
    return value;
  }
  return undefined;
}
