// A small fake of Lithic's card API for tests and benchmarks: GET/PATCH /v1/cards/{token} and
// GET /v1/cards (cursor pages, memo substring filter), with bodies shaped like Lithic's Card
// object, every request recorded, and per-request overrides (status + body, or a delay).
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface LithicRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  body: unknown;
  authorization: string | undefined;
}

export type LithicOverride = (req: LithicRequest) => { status: number; body: unknown } | undefined;

export interface FakeLithic {
  url: string;
  requests: LithicRequest[];
  cards: Map<string, Record<string, unknown>>;
  addCard(fields?: Record<string, unknown>): Record<string, unknown>;
  override(fn: LithicOverride | undefined): void;
  stop(): Promise<void>;
}

export function lithicCard(fields: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    token: randomUUID(),
    account_token: randomUUID(),
    card_program_token: randomUUID(),
    created: new Date().toISOString(),
    funding: null,
    last_four: String(1000 + Math.floor(Math.random() * 9000)),
    pin_status: 'OK',
    spend_limit: 0,
    spend_limit_duration: 'TRANSACTION',
    state: 'OPEN',
    type: 'VIRTUAL',
    memo: '',
    cardholder_currency: 'USD',
    ...fields,
  };
}

export async function startFakeLithic(): Promise<FakeLithic> {
  const requests: LithicRequest[] = [];
  const cards = new Map<string, Record<string, unknown>>();
  let override: LithicOverride | undefined;

  const send = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const url = new URL(req.url ?? '/', 'http://fake');
    const text = Buffer.concat(chunks).toString('utf8');
    const recorded: LithicRequest = { method: req.method ?? 'GET', path: url.pathname, query: url.searchParams, body: text ? JSON.parse(text) : undefined, authorization: req.headers.authorization };
    requests.push(recorded);
    const forced = override?.(recorded);
    if (forced) return send(res, forced.status, forced.body);
    const one = /^\/v1\/cards\/([^/]+)$/.exec(url.pathname);
    if (one) {
      const card = cards.get(decodeURIComponent(one[1] ?? ''));
      if (!card) return send(res, 404, { debugging_request_id: randomUUID(), message: 'Card not found' });
      if (req.method === 'PATCH') Object.assign(card, recorded.body as object);
      return send(res, 200, card);
    }
    if (url.pathname === '/v1/cards' && req.method === 'GET') {
      const memo = url.searchParams.get('memo');
      const all = [...cards.values()].filter((c) => !memo || String(c.memo ?? '').includes(memo));
      const after = url.searchParams.get('starting_after');
      const start = after ? all.findIndex((c) => c.token === after) + 1 : 0;
      const size = Number(url.searchParams.get('page_size') ?? 50);
      return send(res, 200, { data: all.slice(start, start + size), has_more: start + size < all.length });
    }
    send(res, 404, { message: `no route ${req.method} ${url.pathname}` });
  }

  const server = createServer((req, res) => void handle(req, res).catch(() => send(res, 500, { message: 'fake failed' })));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    cards,
    addCard(fields = {}) {
      const card = lithicCard(fields);
      cards.set(card.token as string, card);
      return card;
    },
    override: (fn) => void (override = fn),
    stop: () => new Promise((r) => { server.close(() => r()); server.closeAllConnections(); }),
  };
}
