// The `spend` command: builds the commander program and runs it. `run()` is the whole CLI as a
// function of argv and io (tests call it in-process); executed directly, it drives the process.
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { registerAgentCommands } from './commands/agent.js';
import { registerApiKeyCommands } from './commands/api-key.js';
import { registerApprovalCommands } from './commands/approvals.js';
import { registerCardCommands } from './commands/card.js';
import { registerPolicyCommands } from './commands/policy.js';
import { registerTransactionCommands } from './commands/transactions.js';
import { registerViolationCommands } from './commands/violations.js';
import { CliError, DEFAULT_ADMIN_URL } from './client.js';
import { CommandContext } from './context.js';
import type { CliIO } from './output.js';

export type { CliIO } from './output.js';

function version(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function buildProgram(ctx: CommandContext): Command {
  const program = new Command('spend')
    .description('Operate a spendgate gateway through its admin API.')
    .version(version())
    .option('--url <url>', `admin API base URL (env SPEND_ADMIN_URL, default ${DEFAULT_ADMIN_URL})`)
    .option('--token <token>', 'admin key or token (env SPEND_ADMIN_TOKEN, else DATA_DIR/admin.key)')
    .option('--json', 'print the raw JSON response, for scripts')
    .showSuggestionAfterError()
    // Set before the subcommands are added, which inherit it: errors come back here, not exit().
    .exitOverride()
    .configureOutput({
      writeOut: (text) => ctx.io.stdout.write(text),
      writeErr: (text) => ctx.io.stderr.write(text),
      // One line, as every other failure: "spend: unknown command 'polcy' (Did you mean policy?)".
      outputError: (text, write) => write(`spend: ${text.replace(/^error: /, '').trim().replace(/\s*\n\s*/g, ' ')}\n`),
    });
  registerPolicyCommands(program, ctx);
  registerApiKeyCommands(program, ctx);
  registerViolationCommands(program, ctx);
  registerApprovalCommands(program, ctx);
  registerTransactionCommands(program, ctx);
  registerCardCommands(program, ctx);
  registerAgentCommands(program, ctx);
  return program;
}

/** Runs the CLI on `argv` (the arguments after `spend`) and returns the exit code. */
export async function run(argv: string[], io: CliIO): Promise<number> {
  try {
    await buildProgram(new CommandContext(io)).parseAsync(argv, { from: 'user' });
    return 0;
  } catch (error) {
    // commander has already printed its own message (or the help / version).
    if (error instanceof CommanderError) return error.exitCode;
    if (error instanceof CliError) {
      io.stderr.write(`spend: ${error.message}\n`);
      for (const line of error.details) io.stderr.write(`  ${line}\n`);
      return 1;
    }
    io.stderr.write(`spend: unexpected error: ${(error as Error)?.message ?? String(error)}\n`);
    return 1;
  }
}

/** The real process: its arguments, streams, environment and directory. */
export async function main(): Promise<void> {
  // `spend api-key list | head`: the reader left; stop quietly as other command-line tools do.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    process.exit(0);
  });
  process.exitCode = await run(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd() });
}

function executedDirectly(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (executedDirectly()) await main();
