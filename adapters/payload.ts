// Reading a processor's signed JSON defensively: every field the gateway relies on is checked, and
// a missing or mistyped one is a PayloadError naming the processor and the path (never a
// TypeError deep inside a normalizer). Each adapter binds these to its name.
import { PayloadError } from './processor.js';
import type { Headers } from './processor.js';

export type Json = Record<string, unknown>;

export function payloadReaders(processor: string) {
  const fail = (what: string) => new PayloadError(`${processor} ${what}`);
  const object = (value: unknown, path: string): Json => {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw fail(`${path} is not an object`);
    return value as Json;
  };
  const string = (o: Json, key: string, path: string): string => {
    const value = o[key];
    if (typeof value !== 'string' || value === '') throw fail(`${path}.${key} is not a string`);
    return value;
  };
  return {
    object,
    string,
    parseObject(rawBody: Buffer): Json {
      let parsed: unknown;
      try {
        parsed = JSON.parse(rawBody.toString('utf8'));
      } catch {
        throw fail('webhook body is not JSON');
      }
      return object(parsed, 'body');
    },
    optionalString(o: Json, key: string): string | null {
      const value = o[key];
      return typeof value === 'string' && value !== '' ? value : null;
    },
    integer(o: Json, key: string, path: string): number {
      const value = o[key];
      if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw fail(`${path}.${key} is not an integer`);
      return value;
    },
    boolean(o: Json, key: string, path: string): boolean {
      const value = o[key];
      if (typeof value !== 'boolean') throw fail(`${path}.${key} is not a boolean`);
      return value;
    },
    /** An ISO-8601 time → Date. */
    isoTime(o: Json, key: string, path: string): Date {
      const date = new Date(string(o, key, path));
      if (Number.isNaN(date.getTime())) throw fail(`${path}.${key} is not a time`);
      return date;
    },
  };
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
