// `spend approvals list`: approval requests opened by escalations, newest first. Approving and
// denying are not built yet; the command says so rather than pretend.
import type { Command } from 'commander';
import { Option } from 'commander';
import type { CommandContext } from '../context.js';
import { fetchPages, nextPageHint, withPaging } from '../pages.js';
import { when } from '../output.js';
import { formatMoney } from '../../money.js';

interface Approval {
  id: string;
  agent_id: string;
  check_id: string;
  source: string;
  status: string;
  action_type: string;
  amount: number;
  currency: string;
  counterparty: string | null;
  created_at: string;
}

interface Filters {
  agent?: string;
  status?: string;
  limit?: number;
  cursor?: string;
  all?: boolean;
}

export function registerApprovalCommands(program: Command, ctx: CommandContext): void {
  const approvals = program.command('approvals').description('approval requests opened by escalations');
  const list = approvals
    .command('list')
    .description('list approval requests, newest first')
    .option('--agent <id>', 'only this agent')
    .addOption(new Option('--status <status>', 'only this status').choices(['pending', 'approved', 'denied', 'expired']));
  withPaging(list).action(async (opts: Filters, cmd: Command) => {
    const out = ctx.output(cmd);
    const client = await ctx.client(cmd);
    const { data, pagination } = await fetchPages<Approval>(client, '/approvals', { agent_id: opts.agent, status: opts.status }, { limit: opts.limit, cursor: opts.cursor, all: opts.all, noun: 'approvals' });
    if (out.json) return out.printJson({ data, pagination });
    if (data.length === 0) return out.line('No approval requests match.');
    out.table(
      ['Time', 'Approval', 'Agent', 'Source', 'Action', 'Amount', 'Counterparty', 'Status', 'Check'],
      data.map((a) => [when(a.created_at), a.id, a.agent_id, a.source, a.action_type, formatMoney({ amount: a.amount, currency: a.currency.toLowerCase() }), a.counterparty, a.status, a.check_id]),
    );
    out.line(`${data.length} of ${pagination.total_count} approval request${pagination.total_count === 1 ? '' : 's'}. Approving and denying are not built yet: escalated card authorizations were declined.`);
    nextPageHint(out, pagination);
  });
}
