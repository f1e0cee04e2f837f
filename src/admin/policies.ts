// /admin/v1/policies: JSON rule documents (seed 002) with a version history, and SPEND.md apply /
// validate. An invalid document never replaces the version in force.
import { Router, text } from 'express';
import type { Knex } from 'knex';
import { AppError } from '../errors.js';
import { applySpendMd, listPolicies, listVersions, loadVersion, savePolicy, validateSpendMd } from '../policy/store.js';
import { compilePolicy, PolicyError } from '../policy/compile.js';

const markdown = text({ type: ['text/markdown', 'text/x-markdown', 'text/plain'], limit: '256kb' });

function flag(value: unknown): boolean {
  return value === 'true' || value === '1';
}

function markdownBody(body: unknown): string {
  if (typeof body !== 'string' || body.trim() === '') {
    throw new AppError('unsupported_media_type', 'Send the SPEND.md text itself with Content-Type: text/markdown');
  }
  return body;
}

/**
 * `forget` drops this process's cached agent policies as soon as a change commits, so the answer
 * never races the change's own notification; other processes drop theirs when it arrives.
 */
export function policyRoutes(knex: Knex, forget: (topic: string) => void = () => undefined): Router {
  const router = Router();
  router.post('/policies/apply', markdown, async (req, res) => {
    const file = typeof req.query.file === 'string' ? req.query.file.slice(0, 200) : 'SPEND.md';
    const result = await applySpendMd(knex, markdownBody(req.body), { file, allowUnenforced: flag(req.query.allow_unenforced), createdBy: req.principal?.keyId });
    forget('policies');
    req.log.info({ agent_id: result.agent.id, policy_id: result.policy.policy_id, version: result.policy.version, unenforced: result.unenforced.map((s) => s.key) }, 'SPEND.md applied');
    res.status(result.unchanged ? 200 : 201).json({
      agent: result.agent,
      policy: result.policy,
      unchanged: result.unchanged ?? false,
      not_enforced: result.unenforced,
      inactive: result.inactive,
    });
  });
  router.post('/policies/validate', markdown, async (req, res) => {
    if (typeof req.body === 'string') {
      const parsed = validateSpendMd(markdownBody(req.body), typeof req.query.file === 'string' ? req.query.file : 'SPEND.md');
      res.json({ valid: true, agent: parsed.agent, policy: parsed.document, not_enforced: parsed.unenforced, inactive: parsed.inactive });
      return;
    }
    try {
      compilePolicy(req.body, 1);
    } catch (error) {
      if (error instanceof PolicyError) throw new AppError('invalid_policy', `Invalid policy: ${error.message}`, error.issues.map((i) => ({ field: i.path, message: i.message })));
      throw error;
    }
    res.json({ valid: true, policy: req.body });
  });
  router.post('/policies', async (req, res) => {
    const saved = await savePolicy(knex, req.body, { create: true, createdBy: req.principal?.keyId });
    forget('policies');
    res.status(201).json(saved);
  });
  router.get('/policies', async (_req, res) => {
    res.json({ data: await listPolicies(knex) });
  });
  router.get('/policies/:id', async (req, res) => {
    const policy = await loadVersion(knex, req.params.id);
    if (!policy) throw new AppError('not_found', `No policy "${req.params.id}"`);
    res.json(policy);
  });
  router.put('/policies/:id', async (req, res) => {
    const saved = await savePolicy(knex, req.body, { create: false, id: req.params.id, createdBy: req.principal?.keyId });
    forget('policies');
    res.json(saved);
  });
  router.get('/policies/:id/versions', async (req, res) => {
    res.json({ data: await listVersions(knex, req.params.id) });
  });
  router.get('/policies/:id/versions/:version', async (req, res) => {
    const version = Number(req.params.version);
    const policy = Number.isInteger(version) && version > 0 ? await loadVersion(knex, req.params.id, version) : undefined;
    if (!policy) throw new AppError('not_found', `No version ${req.params.version} of policy "${req.params.id}"`);
    res.json(policy);
  });
  return router;
}
