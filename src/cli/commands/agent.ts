// `spend agent freeze|unfreeze ID`: the kill switch. Freezing refuses the agent's keys at once
// and freezes every card it has; unfreezing gives its keys back and leaves its cards frozen.
import type { Command } from 'commander';
import type { CommandContext } from '../context.js';
import { followJob, printJob } from '../freeze-job.js';
import type { JobReport } from '../freeze-job.js';

interface AgentState {
  id: string;
  status: string;
  frozen_at: string | null;
}

export function registerAgentCommands(program: Command, ctx: CommandContext): void {
  const agent = program.command('agent').description("freeze an agent (the kill switch) or unfreeze it");
  agent
    .command('freeze')
    .description("refuse the agent's keys everywhere at once and freeze all its cards")
    .argument('<id>', 'the agent id')
    .option('--reason <text>', 'why (recorded with the freeze)')
    .option('--no-wait', "return once frozen locally; do not follow the processor's confirmations")
    .action(async (id: string, opts: { reason?: string; wait: boolean }, cmd: Command) => {
      const out = ctx.output(cmd);
      const client = await ctx.client(cmd);
      const body = { ...(opts.reason ? { reason: opts.reason } : {}), ...(opts.wait ? {} : { wait_ms: 0 }) };
      const first = await client.request<JobReport & { agent: AgentState }>('POST', `/agents/${encodeURIComponent(id)}/freeze`, { body });
      if (!out.json) out.line(`Agent ${first.agent.id} is frozen (since ${first.agent.frozen_at ?? 'now'}): its API keys are refused.`);
      const report = await followJob(client, ctx.io, first, opts.wait);
      printJob(out, out.json ? { ...report, agent: first.agent } as JobReport : report, `agent ${id}'s cards`);
    });
  agent
    .command('unfreeze')
    .description("accept the agent's keys again (its cards stay frozen until unfrozen one by one or with spend card unfreeze --agent)")
    .argument('<id>', 'the agent id')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const out = ctx.output(cmd);
      const result = await (await ctx.client(cmd)).request<{ agent: AgentState; frozen_cards: number }>('POST', `/agents/${encodeURIComponent(id)}/unfreeze`, { body: {} });
      if (out.json) return out.printJson(result);
      out.line(`Agent ${result.agent.id} is active again: its API keys work.`);
      if (result.frozen_cards > 0) out.line(`${result.frozen_cards} card${result.frozen_cards === 1 ? '' : 's'} stay frozen: spend card unfreeze --agent ${id}`);
    });
}
