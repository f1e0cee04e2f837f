// Stripe's form encoding → a nested object, for reading amounts and flags. The bytes forwarded to
// Stripe are the agent's own; this parse is only ever read. Limits are far above qs's defaults:
// Stripe bodies nest deeply (line_items[25][price_data][product_data][metadata][k]) and are long.
import qs from 'qs';

/** Thrown when a body is too deep or has too many parameters to read the way Stripe would. */
export class UnreadableForm extends Error {}

export function parseForm(body: string): Record<string, unknown> {
  try {
    // Beyond the limits qs would silently drop or flatten what follows; Stripe would not.
    return qs.parse(body, { depth: 20, arrayLimit: 10_000, parameterLimit: 100_000, allowPrototypes: false, plainObjects: true, strictDepth: true, throwOnLimitExceeded: true });
  } catch (error) {
    throw new UnreadableForm((error as Error).message);
  }
}

/**
 * A parameter given twice (`confirm=false&confirm=true`), or in both the query string and the
 * body, could be read one way here and another way by Stripe. Such requests are refused.
 * Returns the first such parameter, or undefined. `a[]` lists are fine.
 */
export function ambiguousParameter(query: string, body: string): string | undefined {
  const seen = new Set<string>();
  for (const part of [query, body]) {
    // Some form parsers also split on ';': a raw one could hide a parameter from this one.
    if (part.includes(';')) return ';';
    for (const pair of part.split('&')) {
      if (pair === '') continue;
      const rawKey = pair.split('=', 1)[0] ?? '';
      let key: string;
      try {
        key = decodeURIComponent(rawKey.replace(/\+/g, ' '));
      } catch {
        return rawKey;
      }
      if (key.endsWith('[]')) continue;
      if (seen.has(key)) return key;
      seen.add(key);
    }
  }
  return undefined;
}
