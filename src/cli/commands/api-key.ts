// `spend api-key create|list|revoke|rotate`: agent API keys through the admin API. A new key is
// printed exactly once; everything else shows only its id and prefix.
import type { Command } from 'commander';
import { Option } from 'commander';
import { CliError } from '../client.js';
import type { CommandContext } from '../context.js';
import { nonNegativeNumber, positiveInteger } from '../options.js';
import { when } from '../output.js';
import type { Output } from '../output.js';

interface KeyRecord {
  id: string;
  kind: string;
  agent_id: string | null;
  mode: string | null;
  prefix: string;
  status: string;
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
}
interface NewKey extends KeyRecord {
  key: string;
  previous?: KeyRecord;
}

export function registerApiKeyCommands(program: Command, ctx: CommandContext): void {
  const apiKey = program.command('api-key').description("create, list, revoke and rotate agents' API keys");
  apiKey
    .command('create')
    .description('create an API key for an agent (shown once)')
    .requiredOption('--agent <id>', 'the agent the key belongs to')
    .addOption(new Option('--mode <mode>', 'test keys reach Stripe test mode only, live keys live mode only').choices(['test', 'live']).default('test'))
    .option('--expires-in-days <n>', 'the key stops working after N days', positiveInteger)
    .action(async (opts: { agent: string; mode: string; expiresInDays?: number }, cmd: Command) => {
      const out = ctx.output(cmd);
      const client = await ctx.client(cmd);
      const body = { mode: opts.mode, ...(opts.expiresInDays === undefined ? {} : { expires_in_days: opts.expiresInDays }) };
      const created = await client.request<NewKey>('POST', `/agents/${encodeURIComponent(opts.agent)}/api-keys`, { body });
      if (out.json) return out.printJson(created);
      out.line(`Created ${created.mode} key ${created.id} for agent ${created.agent_id ?? opts.agent} (expires ${created.expires_at ? when(created.expires_at) : 'never'}).`);
      printSecret(out, created.key);
    });
  apiKey
    .command('list')
    .description('list agent API keys (never the keys themselves)')
    .option('--agent <id>', 'only this agent')
    .action(async (opts: { agent?: string }, cmd: Command) => {
      const out = ctx.output(cmd);
      const result = await (await ctx.client(cmd)).request<{ data: KeyRecord[] }>('GET', '/api-keys', { query: { agent_id: opts.agent } });
      if (out.json) return out.printJson(result);
      if (result.data.length === 0) return out.line(opts.agent ? `Agent ${opts.agent} has no API keys.` : 'No API keys.');
      printKeys(out, result.data);
    });
  apiKey
    .command('revoke')
    .description('revoke one key by id, or every agent key with --all (of one agent with --agent)')
    .argument('[id]', 'the key id (key_…)')
    .option('--all', 'revoke every live agent key (admin keys are kept)')
    .option('--agent <id>', 'with --all: only this agent')
    .action(async (id: string | undefined, opts: { all?: boolean; agent?: string }, cmd: Command) => {
      const out = ctx.output(cmd);
      if (id && (opts.all || opts.agent)) throw new CliError('give a key id or --all [--agent ID], not both');
      if (!id && !opts.all) throw new CliError(opts.agent ? '--agent needs --all: spend api-key revoke --all --agent ID' : 'give a key id, or --all [--agent ID]');
      const client = await ctx.client(cmd);
      if (id) {
        const revoked = await client.request<KeyRecord>('POST', `/api-keys/${encodeURIComponent(id)}/revoke`);
        if (out.json) return out.printJson(revoked);
        return out.line(`Revoked key ${revoked.id} (${revoked.prefix}, agent ${revoked.agent_id ?? '-'}).`);
      }
      const body = opts.agent ? { agent_id: opts.agent } : { all: true };
      const result = await client.request<{ revoked: number; data: KeyRecord[] }>('POST', '/api-keys/revoke', { body });
      if (out.json) return out.printJson(result);
      out.line(`Revoked ${result.revoked} agent key${result.revoked === 1 ? '' : 's'} ${opts.agent ? `of agent ${opts.agent}` : 'of all agents'}.`);
      if (result.data.length > 0) printKeys(out, result.data);
    });
  apiKey
    .command('rotate')
    .description('replace a key with a new one; the old one keeps working for a grace period')
    .argument('<id>', 'the key id (key_…)')
    .option('--grace-hours <h>', 'hours the old key keeps working (gateway default 24; 0 revokes it now)', nonNegativeNumber)
    .option('--expires-in-days <n>', 'the new key stops working after N days', positiveInteger)
    .action(async (id: string, opts: { graceHours?: number; expiresInDays?: number }, cmd: Command) => {
      const out = ctx.output(cmd);
      const body = { ...(opts.graceHours === undefined ? {} : { grace_hours: opts.graceHours }), ...(opts.expiresInDays === undefined ? {} : { expires_in_days: opts.expiresInDays }) };
      const rotated = await (await ctx.client(cmd)).request<NewKey>('POST', `/api-keys/${encodeURIComponent(id)}/rotate`, { body });
      if (out.json) return out.printJson(rotated);
      out.line(`Created ${rotated.mode ?? rotated.kind} key ${rotated.id}${rotated.agent_id ? ` for agent ${rotated.agent_id}` : ''} (expires ${rotated.expires_at ? when(rotated.expires_at) : 'never'}).`);
      const previous = rotated.previous;
      if (previous) {
        out.line(previous.revoked_at ? `The previous key ${previous.id} is revoked.` : `The previous key ${previous.id} keeps working until ${when(previous.expires_at)}.`);
      }
      printSecret(out, rotated.key);
    });
}

function printSecret(out: Output, key: string): void {
  out.line();
  out.line(`  ${key}`);
  out.line();
  out.line('Store this key now: it will not be shown again.');
}

function printKeys(out: Output, keys: KeyRecord[]): void {
  out.table(
    ['ID', 'Agent', 'Mode', 'Prefix', 'Status', 'Created', 'Expires', 'Revoked'],
    keys.map((k) => [k.id, k.agent_id, k.mode, k.prefix, k.status, when(k.created_at), when(k.expires_at), when(k.revoked_at)]),
  );
}
