// Cache invalidation across gateway processes through PostgreSQL LISTEN/NOTIFY. Writers publish a
// topic ("key:key_…", "agent:…", "policies") in the same transaction as the change, so every
// process hears it when it commits. While the listening connection is down, `healthy()` is false
// and callers must not trust their caches.
import pg from 'pg';
import type { Knex } from 'knex';

const CHANNEL = 'spendgate_invalidate';

export interface Invalidation {
  subscribe(listener: (topic: string) => void): void;
  healthy(): boolean;
  stop(): Promise<void>;
}

export async function publishInvalidation(knex: Knex, topic: string): Promise<void> {
  await knex.raw('select pg_notify(?, ?)', [CHANNEL, topic]);
}

export async function startInvalidation(url: string, log: { warn(obj: object, msg: string): void }): Promise<Invalidation> {
  const listeners: ((topic: string) => void)[] = [];
  let client: pg.Client | undefined;
  let connected = false;
  let stopped = false;
  let retry: NodeJS.Timeout | undefined;
  const emit = (topic: string) => {
    for (const listener of listeners) listener(topic);
  };

  async function connect(): Promise<void> {
    const next = new pg.Client({ connectionString: url, application_name: 'spendgate-invalidation' });
    next.on('notification', (message) => emit(message.payload ?? 'all'));
    next.on('error', (error) => lost(error));
    next.on('end', () => lost(new Error('connection ended')));
    await next.connect();
    await next.query(`LISTEN ${CHANNEL}`);
    client = next;
    connected = true;
    // Anything may have changed while nobody was listening.
    emit('all');
  }

  function lost(error: Error): void {
    if (!connected || stopped) return;
    connected = false;
    emit('all');
    log.warn({ err: error }, 'cache invalidation channel lost; caches bypassed until it is back');
    void client?.end().catch(() => undefined);
    scheduleReconnect(500);
  }

  function scheduleReconnect(delay: number): void {
    if (stopped) return;
    retry = setTimeout(() => {
      connect().catch(() => scheduleReconnect(Math.min(delay * 2, 10_000)));
    }, delay);
    retry.unref();
  }

  await connect().catch((error: unknown) => {
    log.warn({ err: error }, 'cache invalidation channel not available yet; caches bypassed');
    scheduleReconnect(500);
  });

  return {
    subscribe: (listener) => void listeners.push(listener),
    healthy: () => connected,
    async stop() {
      stopped = true;
      if (retry) clearTimeout(retry);
      connected = false;
      await client?.end().catch(() => undefined);
    },
  };
}
