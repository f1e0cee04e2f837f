// Forwarding to Stripe through http-proxy-middleware over one keep-alive agent. The agent's key
// is swapped for the real one of the same mode, its Idempotency-Key is namespaced per agent
// upstream and restored on the way back; everything else (method, path, query, body bytes,
// Stripe headers, status, body, Request-Id) passes unchanged. Passthrough calls stream; checked
// calls hand the buffered answer to `onAnswer` so the ledger can settle before the agent sees it.
import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createProxyMiddleware, proxyEventsPlugin } from 'http-proxy-middleware';

export interface ForwardContext {
  /** The real Stripe key of the agent key's mode. */
  upstreamKey: string;
  /** The agent's own Idempotency-Key (or one the gateway made), and the one Stripe sees. */
  idempotencyKey?: string;
  upstreamIdempotencyKey?: string;
  /** Bytes already read from the agent (checked calls); forwarded exactly. */
  rawBody?: Buffer;
  onAnswer?: (answer: UpstreamAnswer) => Promise<void> | void;
  onFailure?: (failure: { error: Error; sent: boolean }) => Promise<void> | void;
}

export interface UpstreamAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

const contexts = new WeakMap<IncomingMessage, ForwardContext>();

/** What the forwarder needs to know about one request (kept beside it, not on it). */
export function setForwardContext(req: IncomingMessage, ctx: ForwardContext): ForwardContext {
  contexts.set(req, ctx);
  return ctx;
}

export function forwardContext(req: IncomingMessage): ForwardContext | undefined {
  return contexts.get(req);
}

/** Same agent + same key → same upstream key; different agents never share one. */
export function upstreamIdempotencyKey(agentId: string, key: string): string {
  return `sg_${createHash('sha256').update(`${agentId}\u0000${key}`).digest('base64url').slice(0, 40)}`;
}

const HOP_BY_HOP = ['x-api-key', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-request-id'];

export function createForwarder(apiBase: string, options: { timeoutMs: number }) {
  const target = new URL(apiBase);
  const agentOptions = { keepAlive: true, maxSockets: 256, maxFreeSockets: 64, scheduling: 'lifo' as const };
  const agent = target.protocol === 'http:' ? new http.Agent(agentOptions) : new https.Agent(agentOptions);

  const common = {
    target: target.origin,
    changeOrigin: true,
    agent,
    xfwd: false,
    proxyTimeout: options.timeoutMs,
    ejectPlugins: true,
    plugins: [proxyEventsPlugin],
  };
  const on = {
    proxyReq(proxyReq: http.ClientRequest, req: IncomingMessage) {
      const ctx = contexts.get(req);
      if (!ctx) return;
      for (const header of HOP_BY_HOP) proxyReq.removeHeader(header);
      proxyReq.setHeader('authorization', `Bearer ${ctx.upstreamKey}`);
      if (ctx.upstreamIdempotencyKey) proxyReq.setHeader('idempotency-key', ctx.upstreamIdempotencyKey);
      if (ctx.rawBody) {
        proxyReq.setHeader('content-length', ctx.rawBody.length);
        proxyReq.write(ctx.rawBody);
      }
    },
    proxyRes(proxyRes: IncomingMessage, req: IncomingMessage) {
      const ctx = contexts.get(req);
      if (ctx?.idempotencyKey && proxyRes.headers['idempotency-key']) proxyRes.headers['idempotency-key'] = ctx.idempotencyKey;
    },
  };

  const passthrough = createProxyMiddleware<IncomingMessage, ServerResponse>({
    ...common,
    on: {
      ...on,
      error(error, _req, res) {
        const response = res as ServerResponse;
        if (!response.headersSent) {
          response.writeHead(502, { 'content-type': 'application/json' });
          response.end(JSON.stringify({ error: { type: 'api_error', message: `spendgate could not reach Stripe (${(error as NodeJS.ErrnoException).code ?? error.message})` } }));
        } else response.destroy();
      },
    },
  });

  const checked = createProxyMiddleware<IncomingMessage, ServerResponse>({
    ...common,
    selfHandleResponse: true,
    on: {
      ...on,
      proxyRes(proxyRes, req) {
        on.proxyRes(proxyRes, req);
        const chunks: Buffer[] = [];
        proxyRes.on('data', (c: Buffer) => chunks.push(c));
        proxyRes.on('end', () => void contexts.get(req)?.onAnswer?.({ status: proxyRes.statusCode ?? 502, headers: proxyRes.headers, body: Buffer.concat(chunks) }));
        proxyRes.on('error', (error) => void contexts.get(req)?.onFailure?.({ error, sent: true }));
      },
      error(error, req) {
        // ECONNREFUSED and friends: the request never reached Stripe. Anything else may have.
        const code = (error as NodeJS.ErrnoException).code ?? '';
        const sent = !['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH'].includes(code);
        void contexts.get(req as IncomingMessage)?.onFailure?.({ error, sent });
      },
    },
  });

  return {
    passthrough: (req: IncomingMessage, res: ServerResponse): Promise<void> => passthrough(req, res, () => undefined),
    checked: (req: IncomingMessage, res: ServerResponse): Promise<void> => checked(req, res, () => undefined),
    close: () => agent.destroy(),
  };
}
