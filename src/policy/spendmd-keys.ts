// What each SPEND.md key means: a rule of the model, a control we cannot enforce yet, or a stored
// setting of a feature not built yet. One table, so every key is accounted for.
import { parseEndpointPattern } from './endpoints.js';
import { MoneyError, parseAmountWithCurrency, toMajorString } from '../money.js';
import type { Money } from '../money.js';
import type { PolicyDocument, RuleDocument } from './model.js';
import type { Setting, SpendMdPolicy } from './spendmd.js';
import { isTimeZone } from './windows.js';

export interface Entry {
  key: string;
  value: unknown;
  line: number;
}

type Fail = (line: number, key: string, message: string) => void;

/** Keys that only carry a setting: stored, listed as inactive, never silently "on". */
const INACTIVE: Record<string, string> = {
  'approval.notify_on_all': 'notifications are not sent yet',
  'approval.timeout_action': 'approvals do not time out yet',
  'approval.timeout_minutes': 'approvals do not time out yet',
  'approval.approval_channels': 'approval requests are not sent to channels yet',
  'notifications.email': 'notifications are not sent yet',
  'notifications.slack': 'notifications are not sent yet',
  'notifications.webhook': 'notifications are not sent yet',
  'notifications.events': 'notifications are not sent yet',
  'security.audit_retention_days': 'audit retention is not applied yet; records are kept forever',
};

/** Protective controls the gateway cannot enforce yet: refused unless the operator overrides. */
const UNENFORCEABLE: Record<string, string> = {
  'spend.require_https': 'HTTPS-only merchants are not enforced yet',
  'security.ip_allowlist': 'IP allowlists are not enforced yet',
  'security.require_signed_requests': 'signed requests are not verified yet',
  'security.api_key_rotation_days': 'automatic key rotation is not enforced yet',
};

const RULE_KEYS = [
  'spend.per_transaction', 'spend.daily_limit', 'spend.weekly_limit', 'spend.monthly_limit',
  'spend.allowlist', 'spend.allowed_categories', 'spend.blocked_categories', 'spend.blocklist',
  'spend.geographic_restrictions', 'spend.blocked_countries', 'spend.allowed_currencies',
  'approval.auto_approve_under', 'approval.require_confirmation_over', 'spend.partial_approval',
  'security.allowed_endpoints',
];
const IDENTITY_KEYS = ['agent_name', 'owner', 'timezone', 'policy_id'];

export function compileEntries(entries: Map<string, Entry>, fail: Fail): SpendMdPolicy | undefined {
  const rules: RuleDocument[] = [];
  const origins: SpendMdPolicy['origins'] = {};
  const unenforced: Setting[] = [];
  const inactive: Setting[] = [];
  let failed = false;
  const problem: Fail = (line, key, message) => {
    failed = true;
    fail(line, key, message);
  };

  for (const entry of entries.values()) {
    const known = IDENTITY_KEYS.includes(entry.key) || RULE_KEYS.includes(entry.key) || entry.key in INACTIVE || entry.key in UNENFORCEABLE;
    if (!known) problem(entry.line, entry.key, `unknown key "${entry.key}"`);
    if (entry.key in INACTIVE) inactive.push({ key: entry.key, line: entry.line, value: masked(entry.key, entry.value), note: INACTIVE[entry.key] ?? '' });
    if (entry.key in UNENFORCEABLE && isOn(entry.value)) {
      unenforced.push({ key: entry.key, line: entry.line, value: entry.value, note: `not supported yet: ${UNENFORCEABLE[entry.key]}` });
    }
  }

  const get = (key: string) => entries.get(key);
  const text = (key: string, required: boolean): string | undefined => {
    const entry = get(key);
    if (!entry || entry.value === null) {
      if (required) problem(1, key, `${key} is required (in the Identity section)`);
      return undefined;
    }
    if (typeof entry.value !== 'string' || entry.value.trim() === '') problem(entry.line, key, 'must be text');
    return String(entry.value).trim();
  };
  const money = (key: string): Money | undefined => {
    const entry = get(key);
    if (!entry) return undefined;
    if (typeof entry.value !== 'string') {
      problem(entry.line, key, `must be an amount with a currency, like "50 USD"`);
      return undefined;
    }
    try {
      return parseAmountWithCurrency(entry.value);
    } catch (error) {
      problem(entry.line, key, error instanceof MoneyError ? error.message : String(error));
      return undefined;
    }
  };
  const list = (key: string): string[] | undefined => {
    const entry = get(key);
    if (!entry) return undefined;
    if (entry.value === null) return [];
    if (!Array.isArray(entry.value) || entry.value.some((v) => typeof v !== 'string' && typeof v !== 'number')) {
      problem(entry.line, key, 'must be a list of names');
      return undefined;
    }
    return entry.value.map(String);
  };
  const add = (key: string, rule: Omit<RuleDocument, 'rule_id'>) => {
    const id = key.replace(/^spend\./, '');
    rules.push({ rule_id: id, ...rule });
    origins[id] = { line: get(key)?.line ?? 1, key };
  };
  const limit = (m: Money) => ({ limit: toMajorString(m.amount, m.currency), currency: m.currency.toUpperCase() });

  const id = text('agent_name', true);
  const owner = text('owner', true);
  const timezone = text('timezone', false);
  const policyId = text('policy_id', false);
  if (id !== undefined && !/^[A-Za-z0-9_.-]{1,64}$/.test(id)) problem(get('agent_name')?.line ?? 1, 'agent_name', 'letters, digits, _ . - (1-64)');
  if (timezone !== undefined && !isTimeZone(timezone)) problem(get('timezone')?.line ?? 1, 'timezone', `unknown time zone "${timezone}" (an IANA name such as "Europe/Berlin")`);

  const perTransaction = money('spend.per_transaction');
  if (perTransaction) add('spend.per_transaction', { rule_type: 'max_amount', description: 'Per-transaction maximum', parameters: limit(perTransaction) });
  for (const [key, window] of [['spend.daily_limit', 'daily'], ['spend.weekly_limit', 'weekly'], ['spend.monthly_limit', 'monthly']] as const) {
    const m = money(key);
    if (m) add(key, { rule_type: 'velocity_limit', description: `${window[0]?.toUpperCase()}${window.slice(1)} spending limit`, parameters: { ...limit(m), window } });
  }

  const allowlist = list('spend.allowlist');
  const allowedCategories = list('spend.allowed_categories');
  if (allowlist) {
    add('spend.allowlist', {
      rule_type: 'merchant_allowlist',
      description: allowedCategories?.length ? 'Only listed merchants or categories' : 'Only listed merchants',
      parameters: allowedCategories ? { merchants: allowlist, categories: allowedCategories } : { merchants: allowlist },
    });
  } else if (allowedCategories) {
    add('spend.allowed_categories', { rule_type: 'category_allowlist', description: 'Only listed categories', parameters: { categories: allowedCategories } });
  }
  const blockedCategories = list('spend.blocked_categories');
  if (blockedCategories) add('spend.blocked_categories', { rule_type: 'category_blocklist', description: 'Blocked categories', parameters: { categories: blockedCategories } });
  const blocklist = list('spend.blocklist');
  if (blocklist) add('spend.blocklist', { rule_type: 'merchant_blocklist', description: 'Blocked merchants', parameters: { merchants: blocklist } });
  const countries = list('spend.geographic_restrictions');
  if (countries) add('spend.geographic_restrictions', { rule_type: 'country_restriction', description: 'Allowed merchant countries', parameters: { allowed_countries: countries } });
  const blockedCountries = list('spend.blocked_countries');
  if (blockedCountries) add('spend.blocked_countries', { rule_type: 'country_restriction', description: 'Blocked merchant countries', parameters: { blocked_countries: blockedCountries } });
  const currencies = list('spend.allowed_currencies');
  if (currencies) add('spend.allowed_currencies', { rule_type: 'currency_allowlist', description: 'Allowed currencies', parameters: { currencies } });

  const autoUnder = money('approval.auto_approve_under');
  const confirmOver = money('approval.require_confirmation_over');
  if (autoUnder && confirmOver && autoUnder.currency !== confirmOver.currency) {
    problem(get('approval.require_confirmation_over')?.line ?? 1, 'approval.require_confirmation_over', 'must use the same currency as auto_approve_under');
  } else if (autoUnder || confirmOver) {
    const key = confirmOver ? 'approval.require_confirmation_over' : 'approval.auto_approve_under';
    const currency = (confirmOver ?? autoUnder)?.currency ?? 'usd';
    rules.push({
      rule_id: 'approval',
      rule_type: 'escalate_if',
      description: 'Human approval above the confirmation threshold',
      parameters: {
        currency: currency.toUpperCase(),
        ...(confirmOver ? { amount_above: toMajorString(confirmOver.amount, currency) } : {}),
        ...(autoUnder ? { notify_at_or_above: toMajorString(autoUnder.amount, currency) } : {}),
      },
    });
    origins.approval = { line: get(key)?.line ?? 1, key };
  }

  if (failed || id === undefined || owner === undefined) return undefined;
  const partial = get('spend.partial_approval');
  if (partial && typeof partial.value !== 'boolean') problem(partial.line, 'spend.partial_approval', 'must be true or false');
  const endpoints = list('security.allowed_endpoints');
  for (const text of endpoints ?? []) {
    const pattern = parseEndpointPattern(text);
    if (typeof pattern === 'string') problem(get('security.allowed_endpoints')?.line ?? 1, 'security.allowed_endpoints', pattern);
  }
  const document: PolicyDocument = {
    policy_id: policyId ?? id, name: `SPEND.md of ${id}`, rules,
    ...(partial?.value === true ? { partial_approval: true } : {}),
    ...(endpoints ? { allowed_endpoints: endpoints } : {}),
  };
  return { agent: { id, owner, ...(timezone ? { timezone } : {}) }, document, unenforced, inactive, origins };
}

/** Webhook URLs work as credentials: listed by host only (the file itself is stored as written). */
function masked(key: string, value: unknown): unknown {
  if (!['notifications.slack', 'notifications.webhook'].includes(key) || typeof value !== 'string') return value;
  const url = /^([a-z][a-z0-9+.-]*:\/\/[^/?#]+)/i.exec(value.trim());
  return url ? `${url[1]}/…` : '…';
}

/** A control that is switched off or empty asks for nothing. */
function isOn(value: unknown): boolean {
  if (value === null || value === false || value === 0) return false;
  if (Array.isArray(value)) return value.length > 0;
  return true;
}
