// A gateway in a process of its own (`src/main.ts`), for multi-process tests and benchmarks:
// started on free ports with the given environment, ready once /readyz answers 200.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { freePort } from '../../src/db/embedded.js';

const main = path.join(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'src', 'main.ts');

export interface GatewayProcess {
  child: ChildProcess;
  port: number;
  adminPort: number;
  /** SIGTERM, then wait for the exit. */
  stop(): Promise<void>;
}

export async function startGatewayProcess(env: Record<string, string>, options: { nodeArgs?: string[] } = {}): Promise<GatewayProcess> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), '--import', 'tsx', main], {
    env: { ...process.env, PORT: String(port), ADMIN_PORT: String(adminPort), HOST: '127.0.0.1', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let errors = '';
  child.stderr?.on('data', (d) => (errors += d));
  const exited = new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', () => resolve())));
  const stop = async () => {
    if (child.exitCode === null) child.kill('SIGTERM');
    await exited;
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/readyz`)).ok) return { child, port, adminPort, stop };
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline || child.exitCode !== null) {
      await stop();
      throw new Error(`gateway did not start: ${errors}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
