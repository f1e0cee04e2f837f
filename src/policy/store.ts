// Policies in PostgreSQL: every change is a new immutable version. A version is validated and
// compiled before it is stored, so an invalid document never replaces the policy in force.
import type { Knex } from 'knex';
import { publishInvalidation } from '../db/invalidation.js';
import { AppError } from '../errors.js';
import { upsertAgent } from '../agents/agents.js';
import type { AgentRecord } from '../agents/agents.js';
import { PolicyError, compilePolicy, parsePolicyDocument } from './compile.js';
import type { CompiledPolicy, PolicyDocument } from './model.js';
import { SpendMdError, parseSpendMd } from './spendmd.js';
import type { Setting } from './spendmd.js';

export interface PolicyVersion {
  policy_id: string;
  name: string | null;
  description: string | null;
  version: number;
  format: 'json' | 'spend_md';
  rules: PolicyDocument['rules'];
  default_currency?: string;
  unenforced: Setting[];
  inactive: Setting[];
  created_at: Date;
  updated_at: Date;
}

/** Compiled versions never change, so every process may cache them forever. */
const compiledCache = new Map<string, CompiledPolicy>();

export async function compiledPolicy(knex: Knex, policyId: string, version: number): Promise<CompiledPolicy> {
  const key = `${policyId}@${version}`;
  const cached = compiledCache.get(key);
  if (cached) return cached;
  const row = await knex('policy_versions').where({ policy_id: policyId, version }).first();
  if (!row) throw new AppError('not_found', `No version ${version} of policy "${policyId}"`);
  const compiled = compilePolicy(row.document, version);
  compiledCache.set(key, compiled);
  return compiled;
}

function toInvalidPolicy(error: unknown): never {
  if (error instanceof PolicyError) {
    throw new AppError('invalid_policy', `Invalid policy: ${error.message}`, error.issues.map((i) => ({ field: i.path, message: i.message })));
  }
  throw error;
}

/** Creates the policy (create = true) or adds a version; returns the stored version. */
export async function savePolicy(
  knex: Knex,
  input: unknown,
  opts: { create?: boolean; id?: string; format?: 'json' | 'spend_md'; source?: string; unenforced?: Setting[]; inactive?: Setting[]; createdBy?: string } = {},
): Promise<PolicyVersion> {
  let document: PolicyDocument;
  try {
    document = parsePolicyDocument(opts.id && typeof input === 'object' && input !== null && !('policy_id' in input) ? { ...input, policy_id: opts.id } : input);
    if (opts.id && document.policy_id !== opts.id) throw new AppError('invalid_request', `policy_id "${document.policy_id}" does not match the URL ("${opts.id}")`);
    compilePolicy(document, 1);
  } catch (error) {
    return toInvalidPolicy(error);
  }
  return knex.transaction(async (trx) => {
    // Serializes writers of one policy id, including two creating it at once.
    await trx.raw('select pg_advisory_xact_lock(hashtextextended(?, 0))', [`policy:${document.policy_id}`]);
    const existing = await trx('policies').where({ id: document.policy_id }).first();
    if (existing && opts.create) throw new AppError('conflict', `Policy "${document.policy_id}" already exists; PUT /admin/v1/policies/${document.policy_id} adds a version`);
    if (!existing && opts.create === false) throw new AppError('not_found', `No policy "${document.policy_id}"`);
    const version = (existing?.current_version ?? 0) + 1;
    if (existing) {
      await trx('policies').where({ id: document.policy_id }).update({ name: document.name ?? null, description: document.description ?? null, current_version: version, updated_at: trx.fn.now() });
    } else {
      await trx('policies').insert({ id: document.policy_id, name: document.name ?? null, description: document.description ?? null, current_version: version });
    }
    await publishInvalidation(trx, 'policies');
    await trx('policy_versions').insert({
      policy_id: document.policy_id, version, format: opts.format ?? 'json', document: JSON.stringify(document), source: opts.source ?? null,
      unenforced: JSON.stringify(opts.unenforced ?? []), inactive: JSON.stringify(opts.inactive ?? []), created_by: opts.createdBy ?? null,
    });
    return (await loadVersion(trx, document.policy_id, version)) as PolicyVersion;
  });
}

export async function loadVersion(knex: Knex, policyId: string, version?: number): Promise<PolicyVersion | undefined> {
  const policy = await knex('policies').where({ id: policyId }).first();
  if (!policy) return undefined;
  const row = await knex('policy_versions').where({ policy_id: policyId, version: version ?? policy.current_version }).first();
  if (!row) return undefined;
  return presentVersion(policy, row);
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function presentVersion(policy: any, row: any): PolicyVersion {
  const doc = row.document as PolicyDocument;
  return {
    policy_id: policy.id, name: doc.name ?? null, description: doc.description ?? null, version: row.version, format: row.format,
    rules: doc.rules, ...(doc.default_currency ? { default_currency: doc.default_currency } : {}),
    unenforced: row.unenforced, inactive: row.inactive, created_at: row.created_at, updated_at: policy.updated_at,
  };
}

export async function listPolicies(knex: Knex): Promise<PolicyVersion[]> {
  const rows = await knex('policies as p').join('policy_versions as v', function join() {
    this.on('v.policy_id', 'p.id').andOn('v.version', 'p.current_version');
  }).select('p.id', 'p.updated_at', 'v.*').orderBy('p.id');
  return rows.map((r) => presentVersion({ id: r.id, updated_at: r.updated_at }, r));
}

export async function listVersions(knex: Knex, policyId: string): Promise<PolicyVersion[]> {
  const policy = await knex('policies').where({ id: policyId }).first();
  if (!policy) throw new AppError('not_found', `No policy "${policyId}"`);
  const rows = await knex('policy_versions').where({ policy_id: policyId }).orderBy('version', 'desc');
  return rows.map((r) => presentVersion(policy, r));
}

export interface ApplyResult {
  agent: AgentRecord;
  policy: PolicyVersion;
  unenforced: Setting[];
  inactive: Setting[];
  /** The file was already the version in force; no new version was made. */
  unchanged?: boolean;
}

/**
 * Applies a SPEND.md: validates everything first, refuses controls we cannot enforce unless the
 * operator overrides, then creates or updates the agent and binds the new policy version.
 */
export async function applySpendMd(knex: Knex, text: string, opts: { file?: string; allowUnenforced?: boolean; createdBy?: string }): Promise<ApplyResult> {
  const file = opts.file ?? 'SPEND.md';
  const parsed = validateSpendMd(text, file);
  if (parsed.unenforced.length > 0 && !opts.allowUnenforced) {
    throw new AppError(
      'unenforced_controls',
      `${file} asks for controls spendgate cannot enforce yet: ${parsed.unenforced.map((s) => `${s.key} (line ${s.line})`).join(', ')}. Remove them, or apply with the override (allow_unenforced) to accept that they are NOT enforced.`,
      parsed.unenforced.map((s) => ({ line: s.line, key: s.key, message: s.note })),
    );
  }
  return knex.transaction(async (trx) => {
    await trx.raw('select pg_advisory_xact_lock(hashtextextended(?, 0))', [`policy:${parsed.document.policy_id}`]);
    const current = await loadVersion(trx, parsed.document.policy_id);
    const currentSource = current && (await trx('policy_versions').where({ policy_id: current.policy_id, version: current.version }).first('source'))?.source;
    if (current && currentSource === text) {
      // Re-applying the same file (e.g. SPEND_FILES at every start) makes no new version.
      const agent = await upsertAgent(trx, { ...parsed.agent, policy_id: current.policy_id });
      return { agent, policy: current, unenforced: parsed.unenforced, inactive: parsed.inactive, unchanged: true };
    }
    const policy = await savePolicy(trx, parsed.document, { format: 'spend_md', source: text, unenforced: parsed.unenforced, inactive: parsed.inactive, createdBy: opts.createdBy });
    const agent = await upsertAgent(trx, { ...parsed.agent, policy_id: policy.policy_id });
    return { agent, policy, unenforced: parsed.unenforced, inactive: parsed.inactive };
  });
}

/** Parses and compiles a SPEND.md; errors name file, line and key. */
export function validateSpendMd(text: string, file = 'SPEND.md') {
  let parsed;
  try {
    parsed = parseSpendMd(text, file);
  } catch (error) {
    if (error instanceof SpendMdError) throw spendMdAppError(error.issues);
    throw error;
  }
  try {
    compilePolicy(parsed.document, 1);
  } catch (error) {
    if (!(error instanceof PolicyError)) throw error;
    throw spendMdAppError(error.issues.map((issue) => {
      const ruleIndex = Number(/^rules\[(\d+)\]/.exec(issue.path)?.[1] ?? -1);
      const ruleId = parsed.document.rules[ruleIndex]?.rule_id ?? '';
      const origin = parsed.origins[ruleId] ?? { line: 1, key: issue.path };
      return { file, line: origin.line, key: origin.key, message: issue.message };
    }));
  }
  return parsed;
}

function spendMdAppError(unsorted: { file: string; line: number; key: string; message: string }[]): AppError {
  const issues = [...unsorted].sort((a, b) => a.line - b.line);
  const first = issues[0];
  const summary = first ? `${first.file}: line ${first.line}: ${first.key ? `${first.key}: ` : ''}${first.message}` : 'invalid SPEND.md';
  return new AppError('invalid_policy', issues.length > 1 ? `${summary} (and ${issues.length - 1} more)` : summary, issues.map(({ line, key, message }) => ({ line, key, message })));
}

export interface AgentPolicy {
  timezone: string;
  status: string;
  boundPolicyId: string | null;
  policy: CompiledPolicy;
}

/**
 * The agent and the current version of the policy a decision will use (its bound one, or
 * `policyId` when the caller may choose), in one round trip plus a cached compile.
 */
export async function agentPolicy(knex: Knex, agentId: string, policyId?: string): Promise<AgentPolicy> {
  const agent = await knex('agents as a')
    .leftJoin('policies as p', 'p.id', knex.raw('coalesce(?, a.policy_id)', [policyId ?? null]))
    .where('a.id', agentId)
    .first('a.timezone', 'a.status', 'a.policy_id', 'p.id as resolved_policy', 'p.current_version');
  if (!agent) throw new AppError('not_found', `No agent "${agentId}"`);
  const id = policyId ?? agent.policy_id;
  if (!id) throw new AppError('invalid_request', `Agent "${agentId}" has no policy: bind one (PATCH /admin/v1/agents/${agentId})`);
  if (!agent.resolved_policy) throw new AppError('not_found', `No policy "${id}"`, [{ field: 'policy_id', message: 'unknown policy' }]);
  return { timezone: agent.timezone, status: agent.status, boundPolicyId: agent.policy_id, policy: await compiledPolicy(knex, id, agent.current_version) };
}
