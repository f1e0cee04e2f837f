// `spend transactions`: money-moving calls the gateway decided, with what happened at Stripe
// (pending, completed, declined, failed, unknown), newest first.
import type { Command } from 'commander';
import { Option } from 'commander';
import type { CommandContext } from '../context.js';
import { fetchPages, nextPageHint, withPaging } from '../pages.js';
import { when } from '../output.js';
import { formatMoney } from '../../money.js';

interface Transaction {
  id: string;
  agent_id: string;
  action: string;
  endpoint: string | null;
  amount_minor: number;
  /** What counts against the agent's budget now (captured, or still held); null when nothing does. */
  counted_minor: number | null;
  currency: string;
  counterparty: string | null;
  stripe_object_id: string | null;
  status: string;
  reason_code: string | null;
  created_at: string;
}
interface Filters {
  status?: string;
  from?: string;
  to?: string;
  agent?: string;
  limit?: number;
  cursor?: string;
  all?: boolean;
}

export function registerTransactionCommands(program: Command, ctx: CommandContext): void {
  const list = program
    .command('transactions')
    .description('list money-moving calls and their outcome, newest first')
    .addOption(new Option('--status <status>', 'only this outcome: pending (counted, not settled yet), completed, declined (by policy), failed (refused by the processor, or a card hold released without a capture), unknown (no answer from Stripe yet)').choices(['pending', 'completed', 'declined', 'failed', 'unknown']))
    .option('--from <date>', 'at or after this time (ISO 8601, e.g. 2026-01-01, a date is midnight UTC)')
    .option('--to <date>', 'before this time (ISO 8601)')
    .option('--agent <id>', 'only this agent');
  withPaging(list).action(async (opts: Filters, cmd: Command) => {
    const out = ctx.output(cmd);
    const client = await ctx.client(cmd);
    const query = { status: opts.status, from: opts.from, to: opts.to, agent_id: opts.agent };
    const { data, pagination } = await fetchPages<Transaction>(client, '/transactions', query, { limit: opts.limit, cursor: opts.cursor, all: opts.all, noun: 'transactions' });
    if (out.json) return out.printJson({ data, pagination });
    if (data.length === 0) return out.line('No transactions match.');
    out.table(
      ['Time', 'Agent', 'Action', 'Amount', 'Counted', 'Counterparty', 'Stripe object', 'Status', 'Reason'],
      data.map((t) => {
        const money = (amount: number) => formatMoney({ amount, currency: t.currency.toLowerCase() });
        return [when(t.created_at), t.agent_id, t.action, money(t.amount_minor), t.counted_minor === null ? null : money(t.counted_minor), t.counterparty, t.stripe_object_id, t.status, t.reason_code];
      }),
    );
    out.line(`${data.length} of ${pagination.total_count} transaction${pagination.total_count === 1 ? '' : 's'}.`);
    nextPageHint(out, pagination);
  });
}
