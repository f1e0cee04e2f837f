// security.allowed_endpoints: which Stripe API calls an agent may make through the mirror at all.
// A pattern is an optional method and a path: "GET /v1/customers", "/v1/payment_intents/*",
// "POST /v1/refunds", "/v1/issuing/**". `*` is one path segment, a final `**` any number (one or
// more); without a method any method matches. Queries never matter.

export interface EndpointPattern {
  /** As written, for messages. */
  source: string;
  method: 'GET' | 'POST' | 'DELETE' | null;
  segments: string[];
}

const PATTERN = /^(?:(GET|POST|DELETE)\s+)?(\/v[12](?:\/[A-Za-z0-9_.*-]+)+)\/?$/;

export function parseEndpointPattern(text: string): EndpointPattern | string {
  const match = PATTERN.exec(text.trim());
  if (!match) return `"${text}" is not an endpoint like "GET /v1/customers" or "/v1/payment_intents/*" (method optional: GET, POST or DELETE)`;
  const segments = (match[2] ?? '').split('/').slice(1);
  const deep = segments.indexOf('**');
  if (deep !== -1 && deep !== segments.length - 1) return `"${text}": "**" may only end a pattern`;
  if (segments.some((s) => s.includes('*') && s !== '*' && s !== '**')) return `"${text}": "*" must be a whole path segment`;
  return { source: text.trim(), method: (match[1] as EndpointPattern['method']) ?? null, segments };
}

export function endpointAllowed(patterns: readonly EndpointPattern[], method: string, path: string): boolean {
  const segments = path.split('?')[0]?.split('/').slice(1).filter((s) => s !== '') ?? [];
  return patterns.some((p) => (p.method === null || p.method === method.toUpperCase()) && matches(p.segments, segments));
}

function matches(pattern: readonly string[], path: readonly string[]): boolean {
  for (let i = 0; i < pattern.length; i++) {
    const want = pattern[i];
    if (want === '**') return path.length > i;
    if (i >= path.length || (want !== '*' && want !== path[i])) return false;
  }
  return pattern.length === path.length;
}
