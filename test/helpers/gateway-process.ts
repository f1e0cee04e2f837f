// Gateways in processes of their own (`src/main.ts`), for multi-process tests and benchmarks:
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

/**
 * Two gateways asking for free ports at once can be handed the same one; a child that exits while
 * starting is started again on fresh ports (its log says why it exited if it does so again).
 */
export async function startGatewayProcess(env: Record<string, string>, options: { nodeArgs?: string[] } = {}): Promise<GatewayProcess> {
  let failure: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    const started = await startOnce(env, options.nodeArgs ?? []);
    if ('child' in started) return started;
    failure = started.error;
    if (!started.exited) break;
  }
  throw failure ?? new Error('gateway did not start');
}

/** Several at once; if one cannot start, the others are stopped before the error is thrown. */
export async function startGatewayProcesses(count: number, env: Record<string, string>): Promise<GatewayProcess[]> {
  const results = await Promise.allSettled(Array.from({ length: count }, () => startGatewayProcess(env)));
  const started = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (!failed) return started;
  await Promise.all(started.map((g) => g.stop()));
  throw failed.reason;
}

async function startOnce(env: Record<string, string>, nodeArgs: string[]): Promise<GatewayProcess | { error: Error; exited: boolean }> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', main], {
    env: { ...process.env, PORT: String(port), ADMIN_PORT: String(adminPort), HOST: '127.0.0.1', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (d) => (output += d));
  child.stderr?.on('data', (d) => (output += d));
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
    if (child.exitCode !== null || Date.now() > deadline) {
      const gone = child.exitCode !== null;
      await stop();
      return { error: new Error(`gateway did not start: ${output.slice(-2000)}`), exited: gone };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
