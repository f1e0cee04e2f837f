// Usage counters: which sums of past reservations a policy needs to judge an action ("spent today
// in USD on refunds"), named so the ledger can keep each one as a counter row. Pure.
import type { Action, CompiledPolicy, CompiledRule, Window } from './model.js';
import { windowBounds } from './windows.js';

export interface UsageSpec {
  window: Window;
  start: Date;
  end: Date;
  /** '' = every currency (a count). */
  currency: string;
  /** '' = every action type, else the sorted, comma-joined list. */
  actionFilter: string;
  /** '' = every counterparty; otherwise '=' + the counterparty ('=' alone: actions with none). */
  counterparty: string;
}

export interface Usage {
  /** Minor units reserved or spent in the window. */
  amount: number;
  count: number;
}

export interface ReservationFacts {
  actionType: string;
  amount: number;
  currency: string;
  counterparty: string;
  occurredAt: Date;
}

export function usageKey(spec: Omit<UsageSpec, 'end'>): string {
  return `${spec.window}|${spec.start.getTime()}|${spec.currency}|${spec.actionFilter}|${spec.counterparty}`;
}

export function actionFilterOf(actionTypes: readonly string[] | undefined): string {
  return actionTypes ? [...new Set(actionTypes)].sort().join(',') : '';
}

/** Does a reservation count towards a counter? The one definition shared by reserve and settle. */
export function counts(spec: UsageSpec, r: ReservationFacts): boolean {
  return (
    r.occurredAt >= spec.start &&
    r.occurredAt < spec.end &&
    (spec.currency === '' || spec.currency === r.currency) &&
    (spec.actionFilter === '' || spec.actionFilter.split(',').includes(r.actionType)) &&
    (spec.counterparty === '' || spec.counterparty === `=${r.counterparty}`)
  );
}

/** The counter a stateful rule reads for this action, or undefined for a stateless rule. */
export function usageSpecFor(rule: CompiledRule, action: Action, now: Date, timezone: string): UsageSpec | undefined {
  const actionFilter = actionFilterOf(rule.actionTypes);
  switch (rule.type) {
    case 'velocity_limit':
      return { window: rule.window, ...windowBounds(rule.window, now, timezone), currency: rule.limit.currency, actionFilter, counterparty: '' };
    case 'rate_limit':
      return { window: rule.window, ...windowBounds(rule.window, now, timezone), currency: '', actionFilter, counterparty: '' };
    case 'counterparty_limit':
      return {
        window: rule.window,
        ...windowBounds(rule.window, now, timezone),
        currency: rule.limit?.currency ?? '',
        actionFilter,
        counterparty: `=${action.counterparty ?? ''}`,
      };
    default:
      return undefined;
  }
}

/** Every counter the policy may read for this action (the ledger loads or creates them). */
export function usageSpecs(policy: CompiledPolicy, action: Action, now: Date, timezone: string): UsageSpec[] {
  const specs = new Map<string, UsageSpec>();
  for (const rule of policy.rules) {
    const spec = usageSpecFor(rule, action, now, timezone);
    if (spec) specs.set(usageKey(spec), spec);
  }
  return [...specs.values()];
}

/** How far back duplicate_window rules look, in seconds (0 = none). */
export function duplicateLookbackSeconds(policy: CompiledPolicy): number {
  return Math.max(0, ...policy.rules.map((r) => (r.type === 'duplicate_window' ? r.windowSeconds : 0)));
}
