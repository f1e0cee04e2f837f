// `spend violations`: the log of blocked and escalated actions, newest first, one page at a time
// (--cursor) or every page (--all).
import type { Command } from 'commander';
import { Option } from 'commander';
import type { CommandContext } from '../context.js';
import { fetchPages, nextPageHint, withPaging } from '../pages.js';
import { truncate, when } from '../output.js';
import { formatMoney } from '../../money.js';

interface Violation {
  violation_id: string;
  agent_id: string;
  policy_id: string | null;
  policy_version: number | null;
  action_type: string;
  amount: number;
  amount_minor?: number;
  currency: string;
  counterparty: string | null;
  decision: string;
  reason_code: string | null;
  message: string | null;
  violated_rule_id: string | null;
  timestamp: string;
}
interface Filters {
  agent?: string;
  policy?: string;
  decision?: string;
  reason?: string;
  from?: string;
  to?: string;
  limit?: number;
  cursor?: string;
  all?: boolean;
}

export function registerViolationCommands(program: Command, ctx: CommandContext): void {
  const list = program
    .command('violations')
    .description('list blocked and escalated actions, newest first')
    .option('--agent <id>', 'only this agent')
    .option('--policy <id>', 'only this policy')
    .addOption(new Option('--decision <decision>', 'only this decision').choices(['block', 'escalate']))
    .option('--reason <code>', 'only this reason code (rule type), e.g. max_amount')
    .option('--from <iso>', 'at or after this time (ISO 8601)')
    .option('--to <iso>', 'before this time (ISO 8601)');
  withPaging(list).action(async (opts: Filters, cmd: Command) => {
    const out = ctx.output(cmd);
    const client = await ctx.client(cmd);
    const query = { agent_id: opts.agent, policy_id: opts.policy, decision: opts.decision, reason_code: opts.reason, from: opts.from, to: opts.to };
    const { data, pagination } = await fetchPages<Violation>(client, '/violations', query, { limit: opts.limit, cursor: opts.cursor, all: opts.all, noun: 'violations' });
    if (out.json) return out.printJson({ data, pagination });
    if (data.length === 0) return out.line('No violations match.');
    out.table(
      ['Time', 'Agent', 'Action', 'Amount', 'Counterparty', 'Decision', 'Reason', 'Rule', 'Policy', 'Message'],
      data.map((v) => [when(v.timestamp), v.agent_id, v.action_type, typeof v.amount_minor === 'number' ? formatMoney({ amount: v.amount_minor, currency: v.currency.toLowerCase() }) : `${v.amount} ${v.currency}`, v.counterparty, v.decision, v.reason_code, v.violated_rule_id, v.policy_id ? `${v.policy_id} v${v.policy_version ?? '?'}` : null, truncate(v.message, 60)]),
    );
    out.line(`${data.length} of ${pagination.total_count} violation${pagination.total_count === 1 ? '' : 's'}.`);
    nextPageHint(out, pagination);
  });
}
