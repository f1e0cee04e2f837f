// Forwarding to Stripe over one keep-alive connection pool (undici), plus the mirror's header
// rules. The agent's key is swapped for the real one of the same mode, its Idempotency-Key is
// namespaced per agent upstream and restored on the way back, hop-by-hop headers stay on their own
// hop; everything else (method, path, query, body bytes, Stripe headers and their case, status,
// body, Request-Id) passes unchanged. Passthrough calls stream both ways; checked calls hand the
// buffered answer to `onAnswer`, which decides whether the ledger settles it before or after the
// agent sees it.
//
// This used to be http-proxy-middleware (http-proxy underneath): per request it ran its event
// plumbing, copied the headers into an object and back out one setHeader at a time, went through
// `on.proxyReq` hooks, and piped the (already read) request into the upstream one; the gateway spent
// ~1.8× the minimal proxy's CPU per passthrough GET. Then node:http with a keep-alive http.Agent, the
// minimal proxy's own way (~1.1–1.6×). undici's client costs less per request than node's
// (ClientRequest, the agent's socket bookkeeping, a parser and an IncomingMessage per answer): a
// minimal proxy built on it used ~93 µs of CPU per GET against ~131 µs for node's, alternated on
// this machine, and the gateway now spends less than the node:http floor (`npm run bench -- mirror`).
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Pool } from 'undici';
import type { Dispatcher } from 'undici';

export interface ForwardContext {
  /** The real Stripe key of the agent key's mode. */
  upstreamKey: string;
  /** The agent's own Idempotency-Key (or one the gateway made), and the one Stripe sees. */
  idempotencyKey?: string;
  upstreamIdempotencyKey?: string;
  /** Bytes already read from the agent (every non-multipart POST); forwarded exactly. */
  rawBody?: Buffer;
  /** The agent's request as the gateway knows it: its id, and its line in the log. */
  request?: RequestRecord;
  onAnswer?: (answer: UpstreamAnswer) => Promise<void> | void;
  onFailure?: (failure: { error: Error; sent: boolean }) => Promise<void> | void;
}

/** One agent request's id and log line (routes.ts's RequestContext). */
export interface RequestRecord {
  /** The gateway's id: the agent gets it when Stripe's answer carries none. */
  readonly requestId: string;
  /** Logs the status the agent got, once per request however often it is told. */
  answered(status: number): void;
}

export interface UpstreamAnswer {
  status: number;
  /** Stripe's headers as relayed (name, value, …): case, order and duplicates kept, its hop's left out. */
  headers: string[];
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
const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);
/** undici's timeouts: Stripe sent nothing (headers, or the next piece of the body) in time. */
const TIMEOUTS = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

type Failure = Error & { code?: string };

/** Whatever the client's wording, a timeout reads the same to the agent and in the log. */
function failure(error: Failure, timeoutMs: number): Failure {
  const code = error.code;
  if (code && TIMEOUTS.has(code)) return Object.assign(new Error(`Stripe did not answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT', cause: error });
  return error;
}

/** An answer's headers as sent (names, case, order, duplicates), minus those of Stripe's hop. */
function relayedHeaders(raw: Buffer[], ctx: ForwardContext): { headers: string[]; requestId: boolean } {
  const headers: string[] = [];
  let requestId = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as Buffer).toString('latin1');
    const lower = name.toLowerCase();
    if (NOT_RELAYED.has(lower)) continue;
    if (lower === 'request-id') requestId = true;
    headers.push(name, lower === 'idempotency-key' && ctx.idempotencyKey ? ctx.idempotencyKey : (raw[i + 1] as Buffer).toString('latin1'));
  }
  return { headers, requestId };
}

export function createForwarder(apiBase: string, options: { timeoutMs: number }) {
  const target = new URL(apiBase);
  const basePath = target.pathname === '/' ? '' : target.pathname.replace(/\/$/, '');
  // Stripe must send something within the timeout: its headers once the request is sent, then
  // each piece of the body. One request per connection at a time (no pipelining).
  const pool = new Pool(target.origin, {
    connections: 256, pipelining: 1, headersTimeout: options.timeoutMs, bodyTimeout: options.timeoutMs, connectTimeout: options.timeoutMs,
  });

  /** The agent's headers as it sent them (names, case, order, duplicates), minus ours and the hop's. */
  function upstreamHeaders(req: IncomingMessage, ctx: ForwardContext): string[] {
    const raw = req.rawHeaders;
    const out: string[] = [];
    let length = false;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i] as string;
      const lower = name.toLowerCase();
      if (NOT_FORWARDED.has(lower)) continue;
      // The client frames the body itself, from one length that must be the body's: none for a
      // body read whole (given below), the agent's first for a stream.
      if (lower === 'transfer-encoding') continue;
      if (lower === 'content-length') {
        if (ctx.rawBody || length) continue;
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
  function send(req: IncomingMessage, ctx: ForwardContext, handler: Dispatcher.DispatchHandler): void {
    const body = ctx.rawBody ?? (req.complete ? null : req); // GET/DELETE: nothing left to read
    pool.dispatch({ method: (req.method ?? 'GET') as Dispatcher.HttpMethod, path: basePath + (req.url ?? '/'), headers: upstreamHeaders(req, ctx), body }, handler);
  }

  /** Streams the call to Stripe and its answer back; the agent's going away cancels it. */
  function passthrough(req: IncomingMessage, res: ServerResponse, ctx: ForwardContext): void {
    let abort: ((reason?: Error) => void) | undefined;
    let paused = false;
    let resume: (() => void) | undefined;
    const drained = () => {
      paused = false;
      resume?.();
    };
    send(req, ctx, {
      onConnect(abortRequest) {
        abort = abortRequest;
      },
      onHeaders(statusCode, raw, resumeReading, statusText) {
        resume = resumeReading;
        const { headers, requestId } = relayedHeaders(raw, ctx);
        if (!requestId && ctx.request && !res.hasHeader('request-id')) headers.push('Request-Id', ctx.request.requestId);
        res.writeHead(statusCode, statusText, headers);
        ctx.request?.answered(statusCode);
        return true;
      },
      onData(chunk) {
        if (res.write(chunk)) return true;
        if (!paused) {
          paused = true;
          res.once('drain', drained);
        }
        return false;
      },
      onComplete() {
        res.end();
      },
      onError(raw) {
        const error = failure(raw, options.timeoutMs);
        if (res.writableFinished || res.destroyed) return; // the agent went away, or a late error after the answer
        if (!res.headersSent) {
          const payload = JSON.stringify({ error: { type: 'api_error', message: `spendgate could not reach Stripe (${error.code ?? error.message})` } });
          res.writeHead(502, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), ...(ctx.request ? { 'request-id': ctx.request.requestId } : {}) });
          res.end(payload);
          ctx.request?.answered(502);
        } else res.destroy();
      },
    });
    // The agent went away: stop reading for it.
    res.on('close', () => {
      if (!res.writableFinished) abort?.(new Error('the agent closed the connection'));
    });
  }

  /**
   * A checked call: the whole answer is buffered and given to `onAnswer`, which relays and
   * settles it (see checkedCall for the order). An agent that disconnects meanwhile does not
   * cancel it: Stripe's answer still settles the reservation.
   */
  function checked(req: IncomingMessage, ctx: ForwardContext): Promise<void> {
    return new Promise<void>((resolve) => {
      // One outcome per call: an error after the answer arrived changes nothing.
      let decided = false;
      const decide = () => {
        if (decided) return false;
        decided = true;
        resolve();
        return true;
      };
      let status = 502;
      let headers: string[] = [];
      let received = false;
      const chunks: Buffer[] = [];
      send(req, ctx, {
        onConnect() {},
        onHeaders(statusCode, raw) {
          status = statusCode;
          headers = relayedHeaders(raw, ctx).headers;
          received = true;
          return true;
        },
        onData(chunk) {
          chunks.push(chunk);
          return true;
        },
        onComplete() {
          if (decide()) void ctx.onAnswer?.({ status, headers, body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks) });
        },
        onError(raw) {
          const error = failure(raw, options.timeoutMs);
          if (decide()) void ctx.onFailure?.({ error, sent: received || !NOT_SENT.has(error.code ?? '') });
        },
      });
    });
  }

  return { passthrough, checked, close: () => pool.destroy() };
}

/** Stripe's answer to the agent, as buffered: its headers (Stripe's Request-Id over ours), the body's length. */
export function relay(res: ServerResponse, answer: UpstreamAnswer): void {
  if (res.headersSent) return;
  const headers: string[] = [];
  for (let i = 0; i < answer.headers.length; i += 2) {
    if ((answer.headers[i] as string).toLowerCase() !== 'content-length') headers.push(answer.headers[i] as string, answer.headers[i + 1] as string);
  }
  headers.push('Content-Length', String(answer.body.length));
  res.writeHead(answer.status, headers);
  res.end(answer.body);
}
