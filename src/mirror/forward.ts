// Forwarding to Stripe with node:http(s) over one keep-alive agent — the same few steps as the
// minimal proxy the benchmark measures against, plus the mirror's header rules. The agent's key
// is swapped for the real one of the same mode, its Idempotency-Key is namespaced per agent
// upstream and restored on the way back, hop-by-hop headers stay on their own hop; everything
// else (method, path, query, body bytes, Stripe headers and their case, status, body, Request-Id)
// passes unchanged. Passthrough calls stream both ways; checked calls hand the buffered answer to
// `onAnswer`, which decides whether the ledger settles it before or after the agent sees it.
//
// This used to be http-proxy-middleware (http-proxy underneath). It worked, but per request it
// ran its event plumbing, copied the headers into an object and back out one setHeader at a time,
// went through `on.proxyReq` hooks, and piped the (already read) request into the upstream one.
// With it the gateway spent ~1.8× the minimal proxy's CPU per passthrough GET; without it (and
// with routes.ts setting up only what a request uses) ~1.1–1.6× (`npm run bench -- mirror`).
import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export interface ForwardContext {
  /** The real Stripe key of the agent key's mode. */
  upstreamKey: string;
  /** The agent's own Idempotency-Key (or one the gateway made), and the one Stripe sees. */
  idempotencyKey?: string;
  upstreamIdempotencyKey?: string;
  /** Bytes already read from the agent (every non-multipart POST); forwarded exactly. */
  rawBody?: Buffer;
  /** The gateway's id for this request: the agent gets it when Stripe's answer carries none. */
  requestId?: () => string;
  /** A passthrough call's status as the agent gets it (Stripe's, or 502 when Stripe was not reached). */
  answered?: (status: number) => void;
  onAnswer?: (answer: UpstreamAnswer) => Promise<void> | void;
  onFailure?: (failure: { error: Error; sent: boolean }) => Promise<void> | void;
}

export interface UpstreamAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** Same agent + same key → same upstream key; different agents never share one. */
export function upstreamIdempotencyKey(agentId: string, key: string): string {
  return `sg_${createHash('sha256').update(`${agentId}\u0000${key}`).digest('base64url').slice(0, 40)}`;
}

/**
 * Request headers never sent upstream: the agent's credentials (replaced by the real key), the
 * gateway's own request headers, and hop-by-hop headers (the keep-alive agent speaks for this
 * hop; an agent's `Connection: close` must not close a pooled upstream socket).
 */
const NOT_FORWARDED = new Set([
  'authorization', 'x-api-key', 'host', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-request-id',
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'trailer', 'upgrade', 'expect',
]);
/** Response headers that describe Stripe's hop, not the agent's: node frames the agent's side itself. */
const NOT_RELAYED = new Set(['connection', 'keep-alive', 'transfer-encoding']);

/** Errors raised before a byte can have reached Stripe. Anything else may have. */
const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

export function createForwarder(apiBase: string, options: { timeoutMs: number }) {
  const target = new URL(apiBase);
  const secure = target.protocol === 'https:';
  const transport = secure ? https : http;
  // LIFO hands out the most recently used socket: under light load a few warm sockets serve
  // everything, and idle ones time out instead of all being kept half-alive.
  // The timeout is the socket's, set when it is made: Stripe must send something within it, as with
  // a request's own setTimeout, without re-arming a timer for every request. A pooled socket can
  // come back with a shorter one (node times idle sockets out by the server's Keep-Alive hint, and
  // does not reset that for the next request): `withTimeout` puts ours back.
  const agentOptions = { keepAlive: true, maxSockets: 256, maxFreeSockets: 64, scheduling: 'lifo' as const, timeout: options.timeoutMs };
  const agent = secure ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
  const host = target.host;
  const hostname = target.hostname;
  const port = target.port ? Number(target.port) : secure ? 443 : 80;
  const basePath = target.pathname === '/' ? '' : target.pathname.replace(/\/$/, '');

  function withTimeout(socket: Socket): void {
    if (socket.timeout !== options.timeoutMs) socket.setTimeout(options.timeoutMs);
  }

  function timedOut(this: http.ClientRequest): void {
    this.destroy(Object.assign(new Error(`Stripe did not answer within ${options.timeoutMs} ms`), { code: 'ETIMEDOUT' }));
  }

  /** The agent's headers as it sent them (names, case, order, duplicates), minus ours and the hop's. */
  function upstreamHeaders(req: IncomingMessage, ctx: ForwardContext): string[] {
    const raw = req.rawHeaders;
    const out: string[] = ['Host', host];
    let length = false;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i] as string;
      const lower = name.toLowerCase();
      if (NOT_FORWARDED.has(lower)) continue;
      if (lower === 'content-length' || lower === 'transfer-encoding') {
        if (ctx.rawBody) continue; // re-framed below: the body was read whole
        length = true;
      }
      if (lower === 'idempotency-key' && ctx.upstreamIdempotencyKey) continue;
      out.push(name, raw[i + 1] as string);
    }
    out.push('Authorization', `Bearer ${ctx.upstreamKey}`);
    if (ctx.upstreamIdempotencyKey) out.push('Idempotency-Key', ctx.upstreamIdempotencyKey);
    if (ctx.rawBody) out.push('Content-Length', String(ctx.rawBody.length));
    else if (!length && req.method === 'DELETE') out.push('Content-Length', '0');
    return out;
  }

  /** Send the request upstream: the body read already, or the agent's stream (multipart, GET). */
  function send(req: IncomingMessage, ctx: ForwardContext, onResponse: (answer: IncomingMessage) => void, onError: (error: NodeJS.ErrnoException) => void): http.ClientRequest {
    const upstream = transport.request({ agent, hostname, port, method: req.method, path: basePath + (req.url ?? '/'), headers: upstreamHeaders(req, ctx) }, onResponse);
    upstream.on('socket', withTimeout);
    upstream.on('timeout', timedOut);
    upstream.on('error', onError);
    if (ctx.rawBody) upstream.end(ctx.rawBody);
    else if (req.complete) upstream.end(); // GET/DELETE: nothing left to read
    else {
      req.on('error', (error) => upstream.destroy(error));
      req.pipe(upstream);
    }
    return upstream;
  }

  /** Streams the call to Stripe and its answer back; the agent's going away cancels it. */
  function passthrough(req: IncomingMessage, res: ServerResponse, ctx: ForwardContext): void {
    const upstream = send(
      req,
      ctx,
      (answer) => {
        const raw = answer.rawHeaders;
        const headers: string[] = [];
        let requestId = false;
        for (let i = 0; i < raw.length; i += 2) {
          const name = raw[i] as string;
          const lower = name.toLowerCase();
          if (NOT_RELAYED.has(lower)) continue;
          if (lower === 'request-id') requestId = true;
          headers.push(name, lower === 'idempotency-key' && ctx.idempotencyKey ? ctx.idempotencyKey : (raw[i + 1] as string));
        }
        if (!requestId && ctx.requestId && !res.hasHeader('request-id')) headers.push('Request-Id', ctx.requestId());
        const status = answer.statusCode ?? 502;
        res.writeHead(status, answer.statusMessage, headers);
        ctx.answered?.(status);
        answer.on('error', () => res.destroy());
        answer.pipe(res);
      },
      (error) => {
        if (res.writableFinished) return; // a late socket error after the answer was relayed
        if (!res.headersSent) {
          const body = JSON.stringify({ error: { type: 'api_error', message: `spendgate could not reach Stripe (${error.code ?? error.message})` } });
          res.writeHead(502, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...(ctx.requestId ? { 'request-id': ctx.requestId() } : {}) });
          res.end(body);
          ctx.answered?.(502);
        } else res.destroy();
      },
    );
    // The agent went away: stop reading for it.
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
  }

  /**
   * A checked call: the whole answer is buffered and given to `onAnswer`, which relays and
   * settles it (see checkedCall for the order). An agent that disconnects meanwhile does not cancel it: Stripe's answer still
   * settles the reservation.
   */
  function checked(req: IncomingMessage, ctx: ForwardContext): Promise<void> {
    return new Promise<void>((resolve) => {
      // One outcome per call: a socket error after the answer arrived changes nothing.
      let decided = false;
      const decide = () => {
        if (decided) return false;
        decided = true;
        resolve();
        return true;
      };
      send(
        req,
        ctx,
        (answer) => {
          if (ctx.idempotencyKey && answer.headers['idempotency-key']) answer.headers['idempotency-key'] = ctx.idempotencyKey;
          const chunks: Buffer[] = [];
          answer.on('data', (c: Buffer) => chunks.push(c));
          answer.on('end', () => {
            if (decide()) void ctx.onAnswer?.({ status: answer.statusCode ?? 502, headers: answer.headers, body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks) });
          });
          answer.on('error', (error) => {
            if (decide()) void ctx.onFailure?.({ error, sent: true });
          });
        },
        (error) => {
          if (decide()) void ctx.onFailure?.({ error, sent: !NOT_SENT.has(error.code ?? '') });
        },
      );
    });
  }

  return { passthrough, checked, close: () => agent.destroy() };
}
