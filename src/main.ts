// Composition root: read the environment (only here), start the gateway, stop it cleanly on
// SIGINT/SIGTERM/SIGHUP — also when the signal arrives while it is still starting.
import './runtime.js';
import { ConfigError, loadConfig } from './config.js';
import type { Config } from './config.js';
import { startGateway } from './gateway.js';
import type { Gateway } from './gateway.js';
import { createLogger } from './http/logging.js';

let config: Config;
try {
  config = loadConfig(process.env);
} catch (error) {
  if (error instanceof ConfigError) {
    console.error(`spendgate: ${error.message}`);
    process.exit(1);
  }
  throw error;
}

const logger = createLogger(config.LOG_LEVEL);
let gateway: Gateway | undefined;
let stopSignal: string | undefined;

function stop(signal: string): void {
  logger.info({ signal }, 'shutting down');
  const running = gateway;
  if (!running) return; // still starting: stopped as soon as the start finishes
  running.stop().then(
    () => process.exit(0),
    (error: unknown) => {
      logger.error({ err: error }, 'shutdown failed');
      process.exit(1);
    },
  );
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    if (stopSignal) return;
    stopSignal = signal;
    stop(signal);
  });
}

try {
  gateway = await startGateway(config, logger);
  if (stopSignal) stop(stopSignal);
} catch (error) {
  logger.fatal({ err: error }, `spendgate did not start: ${(error as Error).message}`);
  process.exitCode = 1;
}
