// `spend policy validate FILE` checks a SPEND.md (or JSON rules) offline with the gateway's own
// compiler; `spend policy apply FILE` sends it to the admin API. Both say loudly which settings
// the gateway stores but does NOT enforce.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { AppError } from '../../errors.js';
import { PolicyError, compilePolicy } from '../../policy/compile.js';
import { validateSpendMd } from '../../policy/store.js';
import { CliError, detailLines, errorFromResponse } from '../client.js';
import type { CommandContext } from '../context.js';
import { formatParameters, truncate } from '../output.js';
import type { Output } from '../output.js';

interface Setting {
  key: string;
  line: number;
  value: unknown;
  note: string;
}
interface Rule {
  rule_id: string;
  rule_type: string;
  parameters?: unknown;
}
interface PolicyVersion {
  policy_id: string;
  version: number;
  rules: Rule[];
}
interface ApplyResponse {
  agent: { id: string; owner: string; timezone?: string; policy_id?: string | null };
  policy: PolicyVersion;
  not_enforced: Setting[];
  inactive: Setting[];
}

export function registerPolicyCommands(program: Command, ctx: CommandContext): void {
  const policy = program.command('policy').description('validate or apply a SPEND.md (or a JSON policy)');
  policy
    .command('validate')
    .description('check a SPEND.md or *.json policy locally, without the gateway')
    .argument('<file>', 'SPEND.md or JSON policy file')
    .action((file: string, _opts: unknown, cmd: Command) => validate(ctx, cmd, file));
  policy
    .command('apply')
    .description('create or update the agent and its policy from a SPEND.md (or save a JSON policy)')
    .argument('<file>', 'SPEND.md or JSON policy file')
    .option('--allow-unenforced', 'apply even if the file asks for controls the gateway cannot enforce yet')
    .action((file: string, opts: { allowUnenforced?: boolean }, cmd: Command) => apply(ctx, cmd, file, opts.allowUnenforced === true));
}

async function validate(ctx: CommandContext, cmd: Command, file: string): Promise<void> {
  const out = ctx.output(cmd);
  const { name, text } = await readPolicyFile(ctx, file);
  if (isJson(file)) {
    const document = parseJson(name, text);
    try {
      compilePolicy(document, 1);
    } catch (error) {
      if (!(error instanceof PolicyError)) throw error;
      const lines = error.issues.map((i) => `${i.path || '(policy)'}: ${i.message}`);
      if (lines.length === 1) throw new CliError(`${name}: ${lines[0]}`);
      throw new CliError(`${name}: invalid policy (${lines.length} problems)`, lines);
    }
    if (out.json) return out.printJson({ valid: true, file: name, policy: document });
    const doc = document as PolicyVersion;
    out.line(`${name} is valid: policy ${doc.policy_id}, ${doc.rules.length} rule${doc.rules.length === 1 ? '' : 's'}.`);
    printRules(out, doc.rules);
    return;
  }
  let parsed: ReturnType<typeof validateSpendMd>;
  try {
    parsed = validateSpendMd(text, name);
  } catch (error) {
    if (error instanceof AppError && error.code === 'invalid_policy') {
      throw new CliError(error.message, detailLines(error.message, Array.isArray(error.details) ? error.details : []));
    }
    throw error;
  }
  const { agent, document, unenforced, inactive } = parsed;
  if (out.json) return out.printJson({ valid: true, file: name, agent, policy: document, not_enforced: unenforced, inactive });
  out.line(`${name} is valid.`);
  out.line(`Agent:  ${agent.id} (owner ${agent.owner}, time zone ${agent.timezone ?? 'UTC'})`);
  out.line(`Policy: ${document.policy_id}, ${document.rules.length} rule${document.rules.length === 1 ? '' : 's'}`);
  printRules(out, document.rules as Rule[]);
  printSettings(out, unenforced, inactive, 'validate');
}

async function apply(ctx: CommandContext, cmd: Command, file: string, allowUnenforced: boolean): Promise<void> {
  const out = ctx.output(cmd);
  const { name, text } = await readPolicyFile(ctx, file);
  const client = await ctx.client(cmd);
  if (isJson(file)) {
    const document = parseJson(name, text);
    const policyId = (document as { policy_id?: unknown } | null)?.policy_id;
    if (typeof policyId !== 'string' || policyId === '') throw new CliError(`${name}: the policy needs a "policy_id"`);
    const created = await client.send<PolicyVersion>('POST', '/policies', { body: document });
    let saved: PolicyVersion;
    if (created.ok) saved = created.body;
    else if (created.error.status === 409) saved = await client.request<PolicyVersion>('PUT', `/policies/${encodeURIComponent(policyId)}`, { body: document });
    else throw errorFromResponse(created.error);
    if (out.json) return out.printJson(saved);
    out.line(`Saved policy ${saved.policy_id} version ${saved.version} (${saved.rules.length} rule${saved.rules.length === 1 ? '' : 's'}).`);
    printRules(out, saved.rules);
    return;
  }
  const result = await client.send<ApplyResponse>('POST', '/policies/apply', { query: { file: name, allow_unenforced: allowUnenforced ? 'true' : undefined }, body: text });
  if (!result.ok) {
    const error = errorFromResponse(result.error);
    if (result.error.code === 'unenforced_controls') error.details.push(`re-run with --allow-unenforced to apply anyway; those controls will NOT be enforced`);
    throw error;
  }
  const { agent, policy, not_enforced: unenforced, inactive } = result.body;
  if (out.json) return out.printJson(result.body);
  out.line(`Applied ${name}.`);
  out.line(`Agent:  ${agent.id} (owner ${agent.owner}, time zone ${agent.timezone ?? 'UTC'})`);
  out.line(`Policy: ${policy.policy_id} version ${policy.version}, ${policy.rules.length} rule${policy.rules.length === 1 ? '' : 's'}`);
  printRules(out, policy.rules);
  printSettings(out, unenforced, inactive, 'apply');
}

async function readPolicyFile(ctx: CommandContext, file: string): Promise<{ name: string; text: string }> {
  try {
    return { name: path.basename(file), text: await readFile(path.resolve(ctx.io.cwd, file), 'utf8') };
  } catch (error) {
    const code = (error as { code?: string }).code;
    throw new CliError(`cannot read ${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (error as Error).message}`);
  }
}

function isJson(file: string): boolean {
  return /\.json$/i.test(file);
}

function parseJson(name: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new CliError(`${name}: not valid JSON: ${(error as Error).message}`);
  }
}

function printRules(out: Output, rules: Rule[]): void {
  if (rules.length === 0) return;
  out.table(['Rule', 'Type', 'Parameters'], rules.map((r) => [r.rule_id, r.rule_type, truncate(formatParameters(r.parameters), 70)]));
}

function printSettings(out: Output, unenforced: Setting[], inactive: Setting[], verb: 'validate' | 'apply'): void {
  const rows = (settings: Setting[]) => settings.map((s) => [s.line, s.key, truncate(JSON.stringify(s.value), 40), s.note]);
  if (unenforced.length > 0) {
    out.line();
    out.line(`WARNING: ${unenforced.length} setting${unenforced.length === 1 ? ' is' : 's are'} NOT ENFORCED: stored, but the gateway does not act on ${unenforced.length === 1 ? 'it' : 'them'}.`);
    if (verb === 'validate') out.line('`spend policy apply` refuses this file unless given --allow-unenforced.');
    out.table(['Line', 'NOT ENFORCED', 'Value', 'Why'], rows(unenforced));
  }
  if (inactive.length > 0) {
    out.line();
    out.line(`Inactive: ${inactive.length} setting${inactive.length === 1 ? '' : 's'} of features not built yet; ${inactive.length === 1 ? 'it protects' : 'they protect'} nothing by ${inactive.length === 1 ? 'itself' : 'themselves'}.`);
    out.table(['Line', 'Inactive', 'Value', 'Why'], rows(inactive));
  }
}
