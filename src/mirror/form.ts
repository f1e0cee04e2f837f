// Stripe's form encoding → a nested object, for reading amounts and flags. The bytes forwarded to
// Stripe are the agent's own; this parse is only ever read. Limits are far above qs's defaults:
// Stripe bodies nest deeply (line_items[25][price_data][product_data][metadata][k]) and are long.
import qs from 'qs';

export function parseForm(body: string): Record<string, unknown> {
  return qs.parse(body, { depth: 20, arrayLimit: 10_000, parameterLimit: 100_000, allowPrototypes: false, plainObjects: true, strictDepth: false });
}
