// The two reads every agent request starts with — who is this key, and what is this agent's policy
// — cached per process for a few seconds and dropped the moment any process changes a key, an
// agent or a policy (LISTEN/NOTIFY). With the invalidation channel down, every read goes to
// PostgreSQL: a revoked key never works because of a cache.
import { hash as oneShotHash } from 'node:crypto';
import type { Knex } from 'knex';
import type { Invalidation } from '../db/invalidation.js';
import { agentPolicy } from '../policy/store.js';
import type { AgentPolicy } from '../policy/store.js';
import { authenticateKey } from './keys.js';
import type { Principal } from './keys.js';

export interface Lookups {
  principal(presented: string): Promise<Principal | undefined>;
  agentPolicy(agentId: string): Promise<AgentPolicy>;
  /** The agent a registry card belongs to (undefined: not registered). Invalidated by `card:<processor>:<id>`. */
  registeredCard(processor: string, cardId: string): Promise<string | undefined>;
  /**
   * A fresh cached answer, without a promise or a wait; undefined when there is none (then the
   * asynchronous look-up decides). Every proxied call starts with both, and they are almost always cached.
   */
  cached?: {
    principal(presented: string): Principal | undefined;
    agentPolicy(agentId: string): AgentPolicy | undefined;
  };
  /**
   * Drops this process's cached entries for a topic at once, without waiting for its own
   * NOTIFY to come back (the kill switch: the answer must not race the notification).
   */
  forget?(topic: string): void;
}

async function registeredCard(knex: Knex, processor: string, cardId: string): Promise<string | undefined> {
  const row = await knex('cards').where({ processor, id: cardId }).first('agent_id');
  return row?.agent_id as string | undefined;
}

const TTL_MS = 30_000;
const MAX_ENTRIES = 50_000;

interface Entry<T> {
  value: T;
  at: number;
}

/** Straight to the database: for tests and for processes without an invalidation channel. */
export function uncachedLookups(knex: Knex): Lookups {
  return { principal: (key) => authenticateKey(knex, key), agentPolicy: (id) => agentPolicy(knex, id), registeredCard: (p, id) => registeredCard(knex, p, id) };
}

const sha256 = (text: string) => oneShotHash('sha256', text, 'hex');

export function cachedLookups(knex: Knex, invalidation: Invalidation): Lookups {
  const principals = new Map<string, Entry<{ principal: Principal; expiresAt: Date | null } | undefined>>();
  const policies = new Map<string, Entry<AgentPolicy>>();
  const cards = new Map<string, Entry<string | undefined>>();
  const forget = (topic: string) => {
    if (topic.startsWith('card:')) {
      cards.delete(topic.slice(5));
      return;
    }
    if (topic.startsWith('key:')) {
      const keyId = topic.slice(4);
      for (const [hash, entry] of principals) if (entry.value?.principal.keyId === keyId) principals.delete(hash);
    } else if (topic.startsWith('agent:')) {
      const agentId = topic.slice(6);
      policies.delete(agentId);
      for (const [hash, entry] of principals) if (entry.value?.principal.agentId === agentId) principals.delete(hash);
    } else if (topic === 'policies') {
      policies.clear();
    } else {
      principals.clear();
      policies.clear();
      cards.clear();
    }
  };
  invalidation.subscribe(forget);
  const fresh = (entry: Entry<unknown> | undefined) => entry !== undefined && Date.now() - entry.at < TTL_MS && invalidation.healthy();
  const bound = <T>(map: Map<string, T>) => {
    if (map.size >= MAX_ENTRIES) map.clear();
  };

  /** The cached entry of a key, if fresh: `{ principal }` (undefined for an expired key), else undefined. */
  const cachedPrincipal = (presented: string): { principal: Principal | undefined } | undefined => {
    const cached = principals.get(sha256(presented)); // one-shot: no Hash object per request
    if (!fresh(cached) || !cached?.value) return undefined;
    const { principal, expiresAt } = cached.value;
    return { principal: expiresAt && expiresAt.getTime() <= Date.now() ? undefined : principal };
  };
  const cachedPolicy = (agentId: string): AgentPolicy | undefined => {
    const cached = policies.get(agentId);
    return fresh(cached) ? cached?.value : undefined;
  };

  return {
    forget,
    cached: { principal: (presented) => cachedPrincipal(presented)?.principal, agentPolicy: cachedPolicy },
    async principal(presented) {
      const cached = cachedPrincipal(presented);
      if (cached) return cached.principal;
      const hash = sha256(presented);
      const principal = await authenticateKey(knex, presented);
      const expiresAt = principal?.expiresAt ?? null;
      bound(principals);
      // Unknown keys are not cached: a key created a moment ago must work at once.
      if (principal) principals.set(hash, { value: { principal, expiresAt }, at: Date.now() });
      return principal;
    },
    async agentPolicy(agentId) {
      const cached = cachedPolicy(agentId);
      if (cached) return cached;
      const value = await agentPolicy(knex, agentId);
      bound(policies);
      policies.set(agentId, { value, at: Date.now() });
      return value;
    },
    // Unregistered cards are cached too (most Stripe cards carry their agent in metadata): a
    // registration publishes `card:…` and every process forgets the miss.
    async registeredCard(processor, cardId) {
      const key = `${processor}:${cardId}`;
      const cached = cards.get(key);
      if (fresh(cached) && cached) return cached.value;
      const value = await registeredCard(knex, processor, cardId);
      bound(cards);
      cards.set(key, { value, at: Date.now() });
      return value;
    },
  };
}
