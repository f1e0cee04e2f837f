// The check API over HTTP, in-process gateway, keep-alive client: checks per second and latency.
import { Agent } from 'node:http';
import { loadConfig } from '../src/config.js';
import { startGateway } from '../src/gateway.js';
import { createLogger } from '../src/http/logging.js';
import { percentiles, post } from './http.js';

const ADMIN = 'bench-admin-token-0123456789';

export async function benchChecks(databaseUrl: string, total: number, concurrency: number) {
  const config = loadConfig({ DATABASE_URL: databaseUrl, PORT: '0', ADMIN_PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', SPEND_ADMIN_TOKEN: ADMIN });
  const gateway = await startGateway(config, createLogger('silent'));
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  try {
    const tag = `bench-http-${Date.now()}`;
    const admin = { authorization: `Bearer ${ADMIN}` };
    await post(agent, gateway.adminPort, '/admin/v1/policies', admin, JSON.stringify({ policy_id: tag, rules: [
      { rule_id: 'max', rule_type: 'max_amount', parameters: { limit: 500, currency: 'USD' } },
      { rule_id: 'day', rule_type: 'velocity_limit', parameters: { limit: 100_000_000, currency: 'USD', window: 'daily' } },
    ] }));
    await post(agent, gateway.adminPort, '/admin/v1/agents', admin, JSON.stringify({ id: tag, owner: 'bench@example.com', policy_id: tag }));
    const key = JSON.parse((await post(agent, gateway.adminPort, `/admin/v1/agents/${tag}/api-keys`, admin, '{"mode":"test"}')).body).key as string;
    const body = JSON.stringify({ action_type: 'payment', amount: 1, currency: 'USD', counterparty: 'openai.com' });
    for (let i = 0; i < 200; i++) await post(agent, gateway.agentPort, '/v1/checks', { 'x-api-key': key }, body);
    const latencies: number[] = [];
    let next = 0;
    const started = performance.now();
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (next++ < total) {
        const t0 = performance.now();
        const res = await post(agent, gateway.agentPort, '/v1/checks', { 'x-api-key': key }, body);
        latencies.push(performance.now() - t0);
        if (res.status !== 200) throw new Error(`check answered ${res.status}: ${res.body}`);
      }
    }));
    const seconds = (performance.now() - started) / 1000;
    const pct = percentiles(latencies);
    return { total, concurrency, perSecond: Math.round(total / seconds), p50Ms: pct(0.5), p99Ms: pct(0.99) };
  } finally {
    agent.destroy();
    await gateway.stop();
  }
}
