// Prometheus metrics: decisions by outcome and reason, and how long deciding takes.
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  registry: Registry;
  decisions: Counter<'decision' | 'reason' | 'source'>;
  decisionSeconds: Histogram<'source'>;
  webhookRejections: Counter<'processor'>;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'spendgate_' });
  return {
    registry,
    decisions: new Counter({
      name: 'spendgate_decisions_total',
      help: 'Decisions recorded, by outcome and reason code (reason "none" for allow)',
      labelNames: ['decision', 'reason', 'source'],
      registers: [registry],
    }),
    decisionSeconds: new Histogram({
      name: 'spendgate_decision_duration_seconds',
      help: 'Time from receiving a request to its recorded decision',
      labelNames: ['source'],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2],
      registers: [registry],
    }),
    webhookRejections: new Counter({
      name: 'spendgate_webhook_signature_failures_total',
      help: 'Webhooks refused because their signature did not verify',
      labelNames: ['processor'],
      registers: [registry],
    }),
  };
}

/** Counts one new decision (not a replay or a simulation) and how long it took since `startedAt`. */
export function recordDecision(metrics: Metrics, source: string, decision: { decision: string; reasonCode: string | null }, startedAt: number): void {
  metrics.decisions.inc({ decision: decision.decision, reason: decision.reasonCode ?? 'none', source });
  metrics.decisionSeconds.observe({ source }, (performance.now() - startedAt) / 1000);
}
