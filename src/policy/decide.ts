// decide(): may this agent do this now? A pure function of the policy, the action, the clock value
// it is given and what has been spent so far. Block beats escalate beats allow; within a level the
// first rule in policy order is the one reported.
import { formatMoney, isCurrency } from '../money.js';
import type { Money } from '../money.js';
import { mccsOfCategory, normalizeMcc } from './categories.js';
import { normalizeMerchant } from './compile.js';
import type { Action, CategorySet, CompiledPolicy, CompiledRule, Window } from './model.js';
import { usageKey, usageSpecFor } from './usage.js';
import type { ReservationFacts, Usage } from './usage.js';
import { localClock } from './windows.js';

export type Outcome = 'allow' | 'block' | 'escalate';

export interface Decision {
  decision: Outcome;
  reasonCode: string | null;
  violatedRuleId: string | null;
  violatedRuleDescription: string | null;
  message: string | null;
  policyId: string;
  policyVersion: number;
  /** 'medium' when the verdict rests on a fact the action did not carry (e.g. a refund's age). */
  confidence: 'high' | 'medium';
  /** Allowed, but inside an approval band that asks for a notification. */
  notify: boolean;
}

export interface DecisionContext {
  now: Date;
  /** IANA zone of the agent; calendar windows and time_window rules use it. */
  timezone: string;
  /** Counters by usageKey(); a missing counter means nothing used yet. */
  usage: ReadonlyMap<string, Usage>;
  /** Reservations still counted, newest first, as far back as duplicate_window rules look. */
  recent: readonly ReservationFacts[];
}

type Verdict =
  | { outcome: 'pass' }
  | { outcome: 'notify' }
  | { outcome: 'block' | 'escalate'; message: string; confidence?: 'medium' };

const PASS: Verdict = { outcome: 'pass' };

export function decide(policy: CompiledPolicy, action: Action, ctx: DecisionContext): Decision {
  const base = { policyId: policy.policyId, policyVersion: policy.version };
  const invalid = invalidAction(action);
  if (invalid) {
    return { ...base, decision: 'block', reasonCode: 'invalid_action', violatedRuleId: null, violatedRuleDescription: null, message: invalid, confidence: 'high', notify: false };
  }
  let escalation: Decision | undefined;
  let notify = false;
  const facts = new ActionFacts(action);
  for (const rule of policy.rules) {
    if (rule.actionTypes && !rule.actionTypes.includes(action.actionType)) continue;
    const verdict = evaluate(rule, facts, ctx, policy);
    if (verdict.outcome === 'pass') continue;
    if (verdict.outcome === 'notify') {
      notify = true;
      continue;
    }
    const decision: Decision = {
      ...base,
      decision: verdict.outcome,
      reasonCode: rule.type,
      violatedRuleId: rule.id,
      violatedRuleDescription: rule.description || null,
      message: verdict.message,
      confidence: verdict.confidence ?? 'high',
      notify: false,
    };
    if (verdict.outcome === 'block') return decision;
    escalation ??= decision;
  }
  return escalation ?? { ...base, decision: 'allow', reasonCode: null, violatedRuleId: null, violatedRuleDescription: null, message: null, confidence: 'high', notify };
}

function invalidAction(action: Action): string | undefined {
  if (typeof action.actionType !== 'string' || !/^[a-z][a-z0-9_.]{0,63}$/.test(action.actionType)) return 'action_type is missing or malformed';
  if (!Number.isSafeInteger(action.amount) || action.amount < 0) return 'amount must be a non-negative integer of minor units';
  if (typeof action.currency !== 'string' || !isCurrency(action.currency)) return `unknown currency "${String(action.currency)}"`;
  return undefined;
}

/** What rules ask of an action, worked out once per decision. */
class ActionFacts {
  private mccSet?: Set<string>;
  private ids?: string[];
  constructor(readonly action: Action) {}

  get mccs(): Set<string> {
    return (this.mccSet ??= actionMccs(this.action));
  }

  get merchantIds(): string[] {
    return (this.ids ??= merchantIdentifiers(this.action));
  }
}

/** A rule in another currency: skipped if a sibling rule covers the action's currency, else it blocks. */
function uncoveredCurrency(rule: CompiledRule, ruleCurrency: string, action: Action, policy: CompiledPolicy, outcome: 'block' | 'escalate' = 'block'): Verdict | undefined {
  if (ruleCurrency === action.currency || coveredElsewhere(policy, rule, action.currency)) return undefined;
  return {
    outcome,
    message: `${rule.type} is set in ${ruleCurrency.toUpperCase()}; a ${action.currency.toUpperCase()} amount is not compared across currencies`,
  };
}

function evaluate(rule: CompiledRule, facts: ActionFacts, ctx: DecisionContext, policy: CompiledPolicy): Verdict {
  const action = facts.action;
  const requested: Money = { amount: action.amount, currency: action.currency };
  // No closures here: this runs for every rule of every decision.

  switch (rule.type) {
    case 'max_amount': {
      const verdict = uncoveredCurrency(rule, rule.limit.currency, action, policy);
      if (verdict) return verdict;
      if (rule.limit.currency !== action.currency || action.amount <= rule.limit.amount) return PASS;
      return { outcome: 'block', message: `Amount ${formatMoney(requested)} exceeds maximum allowed ${formatMoney(rule.limit)}` };
    }
    case 'escalate_if': {
      if (!rule.above && !rule.notifyAtOrAbove) {
        return { outcome: 'escalate', message: `${action.actionType} requires human approval` };
      }
      const verdict = uncoveredCurrency(rule, rule.currency, action, policy);
      if (verdict) return verdict;
      if (rule.currency !== action.currency) return PASS;
      if (rule.above && action.amount > rule.above.amount) {
        return { outcome: 'escalate', message: `Amount ${formatMoney(requested)} is above ${formatMoney(rule.above)} and needs human approval` };
      }
      return rule.notifyAtOrAbove && action.amount >= rule.notifyAtOrAbove.amount ? { outcome: 'notify' } : PASS;
    }
    case 'refund_age_limit': {
      if (action.refundAgeDays === undefined) {
        return { outcome: rule.ifUnknown, message: `The refund's purchase date is unknown; refunds are limited to ${rule.maxDays} days`, confidence: 'medium' };
      }
      if (action.refundAgeDays <= rule.maxDays) return PASS;
      return { outcome: 'block', message: `Purchase was ${action.refundAgeDays} days ago; refunds are allowed up to ${rule.maxDays} days` };
    }
    case 'velocity_limit': {
      const verdict = uncoveredCurrency(rule, rule.limit.currency, action, policy);
      if (verdict) return verdict;
      if (rule.limit.currency !== action.currency) return PASS;
      const used = usageOf(rule, action, ctx).amount;
      if (used + action.amount <= rule.limit.amount) return PASS;
      return { outcome: 'block', message: `${windowName(rule.window)} limit ${formatMoney(rule.limit)} would be exceeded: ${formatMoney({ amount: used, currency: rule.limit.currency })} already used, ${formatMoney(requested)} requested` };
    }
    case 'rate_limit': {
      const used = usageOf(rule, action, ctx).count;
      if (used + 1 <= rule.maxCount) return PASS;
      return { outcome: 'block', message: `${windowName(rule.window)} limit of ${rule.maxCount} action${rule.maxCount === 1 ? '' : 's'} reached` };
    }
    case 'counterparty_limit': {
      if (rule.limit) {
        const verdict = uncoveredCurrency(rule, rule.limit.currency, action, policy);
        if (verdict) return verdict;
      }
      const used = usageOf(rule, action, ctx);
      const who = action.counterparty ?? '(no counterparty)';
      if (rule.limit && rule.limit.currency === action.currency && used.amount + action.amount > rule.limit.amount) {
        return { outcome: 'block', message: `${windowName(rule.window)} limit ${formatMoney(rule.limit)} for counterparty ${who} would be exceeded: ${formatMoney({ amount: used.amount, currency: rule.limit.currency })} already used` };
      }
      if (rule.maxCount !== undefined && used.count + 1 > rule.maxCount) {
        return { outcome: 'block', message: `${windowName(rule.window)} limit of ${rule.maxCount} actions with counterparty ${who} reached` };
      }
      return PASS;
    }
    case 'merchant_allowlist': {
      if (matchesMerchant(rule.merchants, facts)) return PASS;
      if (rule.categories && withinCategories(rule.categories, facts)) return PASS;
      if (rule.merchants.length === 0 && (!rule.categories || rule.categories.mccs.size + rule.categories.stripeNames.size === 0)) {
        return { outcome: 'block', message: 'The merchant allowlist is empty, so no merchant is allowed' };
      }
      return { outcome: 'block', message: `Merchant ${describeMerchant(action)} is not on the allowlist` };
    }
    case 'merchant_blocklist':
      return matchesMerchant(rule.merchants, facts)
        ? { outcome: 'block', message: `Merchant ${describeMerchant(action)} is blocked` }
        : PASS;
    case 'category_allowlist': {
      if (withinCategories(rule.categories, facts)) return PASS;
      return facts.mccs.size === 0 && !action.merchant?.category
        ? { outcome: 'block', message: 'The merchant category is unknown and only listed categories are allowed' }
        : { outcome: 'block', message: `Merchant category ${describeCategory(action)} is not allowed` };
    }
    case 'category_blocklist':
      return inCategories(rule.categories, facts)
        ? { outcome: 'block', message: `Merchant category ${describeCategory(action)} is blocked` }
        : PASS;
    case 'country_restriction': {
      const country = action.merchant?.country?.toUpperCase();
      if (rule.blocked) {
        return country && rule.blocked.has(country) ? { outcome: 'block', message: `Country ${country} is blocked` } : PASS;
      }
      if (!country) return { outcome: 'block', message: 'The merchant country is unknown and only listed countries are allowed' };
      return rule.allowed?.has(country) ? PASS : { outcome: 'block', message: `Country ${country} is not allowed` };
    }
    case 'currency_allowlist':
      return rule.currencies.has(action.currency)
        ? PASS
        : { outcome: 'block', message: `Currency ${action.currency.toUpperCase()} is not allowed` };
    case 'time_window': {
      const { day, minute } = localClock(ctx.now, ctx.timezone);
      const overnight = rule.startMinute > rule.endMinute;
      const inHours = overnight ? minute >= rule.startMinute || minute < rule.endMinute : minute >= rule.startMinute && minute < rule.endMinute;
      // The early hours of an overnight window (Fri 22:00–06:00) belong to the day it started.
      const windowDay = overnight && minute < rule.endMinute ? previousDay(day) : day;
      if (rule.days.has(windowDay) && inHours) return PASS;
      return { outcome: 'block', message: `Outside the allowed hours (${clock(rule.startMinute)}–${clock(rule.endMinute)} ${[...rule.days].join(',')}, ${ctx.timezone})` };
    }
    case 'duplicate_window': {
      const since = ctx.now.getTime() - rule.windowSeconds * 1000;
      const duplicate = ctx.recent.some(
        (r) =>
          r.occurredAt.getTime() > since &&
          r.actionType === action.actionType &&
          r.amount === action.amount &&
          r.currency === action.currency &&
          r.counterparty === (action.counterparty ?? ''),
      );
      return duplicate
        ? { outcome: 'block', message: `The same ${action.actionType} of ${formatMoney(requested)} was made within the last ${rule.windowSeconds} seconds` }
        : PASS;
    }
    case 'action_type_allowlist':
      return rule.allowed.has(action.actionType)
        ? PASS
        : { outcome: 'block', message: `Action type ${action.actionType} is not allowed` };
  }
}

function usageOf(rule: CompiledRule, action: Action, ctx: DecisionContext) {
  const spec = usageSpecFor(rule, action, ctx.now, ctx.timezone);
  return (spec && ctx.usage.get(usageKey(spec))) ?? { amount: 0, count: 0 };
}

/** Another rule of the same kind, scope and window covers the action's currency. */
function coveredElsewhere(policy: CompiledPolicy, rule: CompiledRule, currency: string): boolean {
  return policy.rules.some((other) => other !== rule && other.type === rule.type && sameScope(rule, other) && ruleCurrency(other) === currency);
}

function sameScope(a: CompiledRule, b: CompiledRule): boolean {
  const window = (r: CompiledRule) => ('window' in r ? r.window : '');
  return window(a) === window(b) && (a.actionTypes ?? []).join(',') === (b.actionTypes ?? []).join(',');
}

function ruleCurrency(rule: CompiledRule): string | undefined {
  switch (rule.type) {
    case 'max_amount':
    case 'velocity_limit':
      return rule.limit.currency;
    case 'counterparty_limit':
      return rule.limit?.currency;
    case 'escalate_if':
      return rule.currency;
    default:
      return undefined;
  }
}

function merchantIdentifiers(action: Action): string[] {
  const m = action.merchant ?? {};
  return [action.counterparty, m.name, m.url, m.networkId].filter((v): v is string => !!v).map(normalizeMerchant);
}

function matchesMerchant(list: readonly string[], facts: ActionFacts): boolean {
  const ids = facts.merchantIds;
  return list.some((entry) => ids.some((id) => id === entry || (entry.includes('.') && id.endsWith(`.${entry}`))));
}

/** The MCCs an action's merchant may have: its MCC, and what its category name (or group) covers. */
function actionMccs(action: Action): Set<string> {
  const mccs = new Set<string>();
  const mcc = normalizeMcc(action.merchant?.mcc);
  if (mcc) mccs.add(mcc);
  const category = action.merchant?.category;
  if (category) for (const code of mccsOfCategory(category)) mccs.add(code);
  return mccs;
}

/** Blocklists: any overlap blocks. */
function inCategories(set: CategorySet, facts: ActionFacts): boolean {
  const name = facts.action.merchant?.category?.toLowerCase();
  return (name !== undefined && set.stripeNames.has(name)) || intersects(set.mccs, facts.mccs);
}

/** Allowlists: the merchant must be inside the list, whatever it turns out to be. */
function withinCategories(set: CategorySet, facts: ActionFacts): boolean {
  const name = facts.action.merchant?.category?.toLowerCase();
  if (name !== undefined && set.stripeNames.has(name)) return true;
  if (facts.mccs.size === 0) return false;
  for (const mcc of facts.mccs) if (!set.mccs.has(mcc)) return false;
  return true;
}

function intersects(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  for (const value of b) if (a.has(value)) return true;
  return false;
}

function describeMerchant(action: Action): string {
  return merchantIdentifiers(action)[0] ?? '(unknown)';
}

function describeCategory(action: Action): string {
  return action.merchant?.category ?? action.merchant?.mcc ?? '(unknown)';
}

function windowName(window: Window): string {
  return { hourly: 'Hourly', daily: 'Daily', weekly: 'Weekly', monthly: 'Monthly' }[window];
}

function previousDay(day: string): string {
  const days = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
  return days[(days.indexOf(day) + 6) % 7] ?? day;
}

function clock(minute: number): string {
  return `${String(Math.floor(minute / 60)).padStart(2, '0')}:${String(minute % 60).padStart(2, '0')}`;
}

