// API keys: `sg_test_`/`sg_live_` for agents, `sga_` for operators; 40 random base62 characters.
// Shown once at creation, stored only as a SHA-256 hash (the keys are random, so a slow hash adds
// nothing), compared in constant time, with optional expiry and revocation.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Knex } from 'knex';
import { base62, newId } from '../ids.js';
import { publishInvalidation } from '../db/invalidation.js';
import { AppError } from '../errors.js';

export type KeyMode = 'test' | 'live';
export const KEY_PATTERN = /^(sg_test_|sg_live_|sga_)[0-9A-Za-z]{32,}$/;

export interface KeyRecord {
  id: string;
  kind: 'agent' | 'admin';
  agent_id: string | null;
  mode: KeyMode | null;
  /** The first characters, to recognise a key without revealing it. */
  prefix: string;
  description: string | null;
  created_at: Date;
  expires_at: Date | null;
  revoked_at: Date | null;
}

export interface Principal {
  keyId: string;
  kind: 'agent' | 'admin';
  agentId: string | null;
  mode: KeyMode | null;
  expiresAt?: Date | null;
}

function hashKey(key: string): Buffer {
  return createHash('sha256').update(key).digest();
}

const COLUMNS = ['id', 'kind', 'agent_id', 'mode', 'prefix', 'description', 'created_at', 'expires_at', 'revoked_at'];

export async function createKey(
  knex: Knex,
  spec: { kind: 'agent'; agentId: string; mode: KeyMode; expiresInDays?: number; description?: string } | { kind: 'admin'; expiresInDays?: number; description?: string },
): Promise<{ record: KeyRecord; key: string }> {
  const key = spec.kind === 'admin' ? `sga_${base62(40)}` : `sg_${spec.mode}_${base62(40)}`;
  const now = new Date();
  const row = {
    id: newId('key'),
    kind: spec.kind,
    agent_id: spec.kind === 'agent' ? spec.agentId : null,
    mode: spec.kind === 'agent' ? spec.mode : null,
    prefix: `${key.slice(0, key.lastIndexOf('_') + 1)}…${key.slice(-4)}`,
    hash: hashKey(key),
    description: spec.description ?? null,
    created_at: now,
    expires_at: spec.expiresInDays === undefined ? null : new Date(now.getTime() + spec.expiresInDays * 86_400_000),
  };
  const [record] = await knex('api_keys').insert(row).returning(COLUMNS);
  return { record: record as KeyRecord, key };
}

/** The principal a presented key belongs to, or undefined (unknown, revoked, expired, or its agent frozen). */
export async function authenticateKey(knex: Knex, presented: string, now = new Date()): Promise<Principal | undefined> {
  if (!KEY_PATTERN.test(presented)) return undefined;
  const hash = hashKey(presented);
  // A frozen agent's keys stop working (the kill switch); caches drop them on its invalidation.
  const row = await knex('api_keys as k').leftJoin('agents as a', 'a.id', 'k.agent_id').where('k.hash', hash).first('k.*', 'a.status as agent_status');
  if (!row || !timingSafeEqual(row.hash as Buffer, hash)) return undefined;
  if (row.revoked_at || (row.expires_at && row.expires_at <= now)) return undefined;
  if (row.agent_status === 'frozen') return undefined;
  return { keyId: row.id, kind: row.kind, agentId: row.agent_id, mode: row.mode, expiresAt: row.expires_at };
}

/** SPEND_ADMIN_TOKEN, compared in constant time. */
export function matchesToken(presented: string, token: string | undefined): boolean {
  if (!token) return false;
  return timingSafeEqual(hashKey(presented), hashKey(token));
}

export async function listKeys(knex: Knex, filter: { agentId?: string; kind?: 'agent' | 'admin' }): Promise<KeyRecord[]> {
  const query = knex('api_keys').select(COLUMNS).orderBy('created_at', 'desc');
  if (filter.agentId) query.where({ agent_id: filter.agentId });
  if (filter.kind) query.where({ kind: filter.kind });
  return query;
}

export async function revokeKey(knex: Knex, id: string, kind: 'agent' | 'admin'): Promise<KeyRecord> {
  const [row] = await knex('api_keys').where({ id, kind }).update({ revoked_at: knex.raw('coalesce(revoked_at, now())') }).returning(COLUMNS);
  if (!row) throw new AppError('not_found', `No ${kind} key "${id}"`);
  await publishInvalidation(knex, `key:${id}`);
  return row as KeyRecord;
}

/** Revokes every live agent key (of one agent, or all agents). Admin keys are kept. */
export async function revokeAgentKeys(knex: Knex, agentId?: string): Promise<KeyRecord[]> {
  const query = knex('api_keys').where({ kind: 'agent' }).whereNull('revoked_at');
  if (agentId) query.where({ agent_id: agentId });
  const revoked = (await query.update({ revoked_at: knex.fn.now() }).returning(COLUMNS)) as KeyRecord[];
  await publishInvalidation(knex, agentId ? `agent:${agentId}` : 'all');
  return revoked;
}

/** A new key of the same kind and mode; the old one keeps working for `graceHours`, then expires. */
export async function rotateKey(knex: Knex, id: string, kind: 'agent' | 'admin', graceHours: number, expiresInDays?: number): Promise<{ record: KeyRecord; key: string; previous: KeyRecord }> {
  return knex.transaction(async (trx) => {
    const old = await trx('api_keys').where({ id, kind }).forUpdate().first();
    if (!old) throw new AppError('not_found', `No ${kind} key "${id}"`);
    if (old.revoked_at) throw new AppError('conflict', `API key "${id}" is revoked and cannot be rotated`);
    const created = old.kind === 'admin'
      ? await createKey(trx, { kind: 'admin', expiresInDays, description: old.description ?? undefined })
      : await createKey(trx, { kind: 'agent', agentId: old.agent_id, mode: old.mode, expiresInDays, description: old.description ?? undefined });
    const graceEnd = new Date(Date.now() + graceHours * 3_600_000);
    const expiresAt = old.expires_at && old.expires_at < graceEnd ? old.expires_at : graceEnd;
    const [previous] = await trx('api_keys').where({ id }).update({ expires_at: expiresAt, ...(graceHours === 0 ? { revoked_at: trx.fn.now() } : {}) }).returning(COLUMNS);
    await publishInvalidation(trx, `key:${id}`);
    return { ...created, previous: previous as KeyRecord };
  });
}

export function presentKey(record: KeyRecord) {
  const now = new Date();
  const status = record.revoked_at ? 'revoked' : record.expires_at && record.expires_at <= now ? 'expired' : 'active';
  return { ...record, status };
}
