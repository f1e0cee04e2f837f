// Credentials on both ports. Agents: `X-API-Key`, `Authorization: Bearer`, or HTTP basic with the
// key as user name (as Stripe's SDKs and curl -u send it). Operators: Bearer sga_… or the
// bootstrap SPEND_ADMIN_TOKEN.
import type { RequestHandler } from 'express';
import { matchesToken } from '../agents/keys.js';
import type { Lookups } from '../agents/lookup-cache.js';
import type { Principal } from '../agents/keys.js';
import { AppError } from '../errors.js';

declare module 'express-serve-static-core' {
  interface Request {
    principal?: Principal;
  }
}

export function presentedKey(headers: Record<string, string | string[] | undefined>): string | undefined {
  const apiKey = headers['x-api-key'];
  if (typeof apiKey === 'string' && apiKey.trim()) return apiKey.trim();
  const authorization = headers.authorization;
  if (typeof authorization !== 'string') return undefined;
  const [scheme, value = ''] = authorization.trim().split(/\s+/, 2);
  if (/^bearer$/i.test(scheme ?? '')) return value || undefined;
  if (/^basic$/i.test(scheme ?? '')) {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const user = decoded.split(':', 1)[0];
    return user || undefined;
  }
  return undefined;
}

export function requireAgentKey(lookups: Lookups): RequestHandler {
  return async (req, _res, next) => {
    const key = presentedKey(req.headers);
    if (!key) throw new AppError('authentication_required', 'No API key provided. Send it as X-API-Key, as a Bearer token, or as the basic-auth user name.');
    const principal = await lookups.principal(key);
    if (!principal || principal.kind !== 'agent') throw new AppError('authentication_required', 'Invalid API key provided (unknown, revoked, expired, or its agent is frozen).');
    req.principal = principal;
    next();
  };
}

export function requireAdmin(lookups: Lookups, adminToken: string | undefined): RequestHandler {
  return async (req, _res, next) => {
    const key = presentedKey(req.headers);
    if (!key) throw new AppError('authentication_required', 'Admin credentials required: Authorization: Bearer sga_… (or SPEND_ADMIN_TOKEN).');
    if (matchesToken(key, adminToken)) {
      req.principal = { keyId: 'SPEND_ADMIN_TOKEN', kind: 'admin', agentId: null, mode: null };
      return next();
    }
    const principal = await lookups.principal(key);
    if (!principal) throw new AppError('authentication_required', 'Invalid admin credentials (unknown, revoked or expired key).');
    if (principal.kind !== 'admin') throw new AppError('forbidden', 'Agent keys cannot use the admin API.');
    req.principal = principal;
    next();
  };
}
