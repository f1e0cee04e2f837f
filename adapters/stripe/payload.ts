// Reading Stripe's signed JSON defensively (see ../payload.ts), plus its own shapes: unix times,
// ids that may come expanded, metadata maps.
import { header, payloadReaders } from '../payload.js';
import type { Json } from '../payload.js';

export type { Json };
export { header };
export const { parseObject, object, string, optionalString, integer, boolean } = payloadReaders('stripe');

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
