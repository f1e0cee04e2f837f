// Composition root: read the environment (only here), start the gateway, stop it cleanly on
// SIGINT/SIGTERM.
import { ConfigError, loadConfig } from './config.js';
import type { Config } from './config.js';
import { startGateway } from './gateway.js';
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
try {
  const gateway = await startGateway(config, logger);
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    gateway.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => shutdown(signal));
} catch (error) {
  logger.fatal({ err: error }, `spendgate did not start: ${(error as Error).message}`);
  process.exitCode = 1;
}
