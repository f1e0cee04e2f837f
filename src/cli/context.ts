// What every command handler gets: the global flags (--url, --token, --json) turned into an
// Output and, on demand, an admin client. Commands that never call the gateway never need a token.
import type { Command } from 'commander';
import { AdminClient } from './client.js';
import { Output } from './output.js';
import type { CliIO } from './output.js';

export type GlobalOptions = {
  url?: string;
  token?: string;
  json?: boolean;
};

export class CommandContext {
  constructor(readonly io: CliIO) {}

  output(command: Command): Output {
    return new Output(this.io, command.optsWithGlobals<GlobalOptions>().json === true);
  }

  client(command: Command): Promise<AdminClient> {
    const { url, token } = command.optsWithGlobals<GlobalOptions>();
    return AdminClient.connect({ url, token, env: this.io.env, cwd: this.io.cwd });
  }
}
