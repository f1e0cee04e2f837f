// `spend card list|register|freeze|unfreeze|job`: the card registry and freezing through the
// admin API. A freeze answers once the cards are frozen locally; the command then follows the
// processor's confirmations (unless --no-wait) and exits 1 if any card failed.
import type { Command } from 'commander';
import { Option } from 'commander';
import { CliError } from '../client.js';
import type { CommandContext } from '../context.js';
import { followJob, printJob } from '../freeze-job.js';
import type { JobReport } from '../freeze-job.js';
import { when } from '../output.js';
import { fetchPages, nextPageHint, withPaging } from '../pages.js';

interface CardView {
  id: string;
  processor: string;
  agent_id: string;
  status: string;
  processor_status: string | null;
  confirmed: boolean;
  source: string;
  last4: string | null;
  frozen_at: string | null;
}

const processorOption = () => new Option('--processor <name>', 'the card\'s processor').choices(['stripe', 'lithic']);

export function registerCardCommands(program: Command, ctx: CommandContext): void {
  const card = program.command('card').description('list, register, freeze and unfreeze cards');
  const list = card
    .command('list')
    .description('cards known to the gateway, with their local and processor status')
    .option('--agent <id>', 'only this agent\'s cards')
    .addOption(new Option('--status <status>', 'only cards in this local status').choices(['active', 'frozen', 'canceled']))
    .addOption(processorOption());
  withPaging(list, 'cards').action(async (opts: { agent?: string; status?: string; processor?: string; limit?: number; cursor?: string; all?: boolean }, cmd: Command) => {
    const out = ctx.output(cmd);
    const client = await ctx.client(cmd);
    const { data, pagination } = await fetchPages<CardView>(client, '/cards', { agent_id: opts.agent, status: opts.status, processor: opts.processor }, { limit: opts.limit, cursor: opts.cursor, all: opts.all, noun: 'cards' });
    if (out.json) return out.printJson({ data, pagination });
    if (data.length === 0) return out.line('No cards match.');
    out.table(
      ['Card', 'Processor', 'Agent', 'Status', 'At processor', 'Confirmed', 'Last4', 'Source', 'Frozen at'],
      data.map((c) => [c.id, c.processor, c.agent_id, c.status, c.processor_status, c.confirmed ? 'yes' : 'no', c.last4, c.source, when(c.frozen_at)]),
    );
    out.line(`${data.length} of ${pagination.total_count} card${pagination.total_count === 1 ? '' : 's'}.`);
    nextPageHint(out, pagination);
  });
  card
    .command('register')
    .description('tell the gateway a card belongs to an agent')
    .argument('<id>', 'the processor\'s card id (Stripe ic_…, Lithic token)')
    .requiredOption('--agent <id>', 'the agent the card belongs to')
    .addOption(processorOption().default('stripe'))
    .action(async (id: string, opts: { agent: string; processor: string }, cmd: Command) => {
      const out = ctx.output(cmd);
      const registered = await (await ctx.client(cmd)).request<CardView>('POST', '/cards', { body: { card_id: id, agent_id: opts.agent, processor: opts.processor } });
      if (out.json) return out.printJson(registered);
      out.line(`Card ${registered.id} (${registered.processor}) belongs to agent ${registered.agent_id}; status ${registered.status}, at the processor ${registered.processor_status ?? 'unknown'}.`);
    });
  for (const action of ['freeze', 'unfreeze'] as const) {
    const command = card
      .command(action)
      .description(action === 'freeze' ? 'freeze one card, an agent\'s cards (--agent) or every card (--all)' : 'unfreeze one card, or an agent\'s cards (--agent)')
      .argument('[id]', 'the card id')
      .option('--agent <id>', `${action} every card of this agent`);
    // Unfreezing everything at once is deliberately not offered.
    if (action === 'freeze') command.option('--all', 'freeze every card the gateway knows');
    command
      .addOption(processorOption())
      .option('--reason <text>', 'why (recorded with the freeze)')
      .option('--no-wait', 'return once frozen locally; do not follow the processor\'s confirmations')
      .action(async (id: string | undefined, opts: { agent?: string; all?: boolean; processor?: string; reason?: string; wait: boolean }, cmd: Command) => {
        const out = ctx.output(cmd);
        const targets = [id !== undefined, opts.agent !== undefined, opts.all === true].filter(Boolean).length;
        if (targets !== 1) throw new CliError(`give exactly one of: a card id, --agent ID${action === 'freeze' ? ', --all' : ''}`);
        const client = await ctx.client(cmd);
        const body = { ...(opts.reason ? { reason: opts.reason } : {}), ...(opts.wait ? {} : { wait_ms: 0 }) };
        const first = id
          ? await client.request<JobReport>('POST', `/cards/${encodeURIComponent(id)}/${action}`, { body, query: { processor: opts.processor } })
          : await client.request<JobReport>('POST', `/cards/${action}`, { body: { ...body, ...(opts.agent ? { agent_id: opts.agent } : { all: true }) } });
        const report = await followJob(client, ctx.io, first, opts.wait);
        printJob(out, report, id ? `card ${id}` : opts.agent ? `agent ${opts.agent}'s cards` : 'every card');
      });
  }
  card
    .command('job')
    .description('where a freeze or unfreeze stands')
    .argument('<job-id>', 'the job id (cjob_…) a freeze printed')
    .option('--wait', 'follow it until the processor has answered for every card')
    .action(async (jobId: string, opts: { wait?: boolean }, cmd: Command) => {
      const out = ctx.output(cmd);
      const client = await ctx.client(cmd);
      const first = await client.request<JobReport>('GET', `/cards/jobs/${encodeURIComponent(jobId)}`);
      printJob(out, await followJob(client, ctx.io, first, opts.wait === true), `job ${jobId}`);
    });
}
