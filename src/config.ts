// Configuration: one zod schema over the environment. Every bad value is reported at once; the
// gateway refuses to start rather than run with a setting it misunderstood.
import { isIP } from 'node:net';
import cron from 'node-cron';
import { z } from 'zod';
import { parseAmountWithCurrency } from './money.js';

const port = z.coerce.number().int().min(0).max(65535);
const optionalText = z.string().trim().min(1).optional();
const list = z.string().transform((s) => s.split(',').map((v) => v.trim()).filter(Boolean));

const schema = z
  .object({
    NODE_ENV: z.string().default('development'),
    PORT: port.default(4242),
    HOST: z.string().min(1).default('0.0.0.0'),
    ADMIN_PORT: port.default(4243),
    ADMIN_HOST: z.string().min(1).default('127.0.0.1'),
    DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL').optional(),
    DATA_DIR: z.string().min(1).default('./.spendgate'),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    STRIPE_SECRET_KEY: z.string().regex(/^(sk|rk)_(test|live)_[A-Za-z0-9_]+$/, 'must look like sk_test_… or rk_test_…').optional(),
    STRIPE_API_BASE: z.url({ protocol: /^https?$/ }).default('https://api.stripe.com'),
    STRIPE_WEBHOOK_SECRET: list.optional(),
    STRIPE_TIMEOUT_MS: z.coerce.number().int().min(100).max(120_000).default(30_000),
    MIRROR_DEADLINE_MS: z.coerce.number().int().min(50).max(10_000).default(1500),
    CHECK_DEADLINE_MS: z.coerce.number().int().min(50).max(10_000).default(1500),
    ADMIN_DEADLINE_MS: z.coerce.number().int().min(100).max(600_000).default(10_000),
    LITHIC_API_KEY: optionalText,
    LITHIC_API_BASE: z.url({ protocol: /^https?$/ }).optional(),
    LITHIC_WEBHOOK_SECRET: list.optional(),
    SPEND_ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
    SPEND_FILES: list.optional(),
    SPEND_ALLOW_UNENFORCED: z.enum(['0', '1', 'true', 'false']).default('0').transform((v) => v === '1' || v === 'true'),
    SPEND_MASTER_KEY: z
      .string()
      .refine((v) => Buffer.from(v, 'base64').length === 32, 'must be 32 bytes, base64-encoded')
      .optional(),
    AUTH_DEADLINE_MS: z.coerce.number().int().min(50).max(10_000).default(1500),
    AUTH_FAIL_MODE: z
      .string()
      .default('decline')
      .refine((v) => {
        if (v === 'decline') return true;
        const m = /^approve_under:(.+)$/.exec(v);
        if (!m) return false;
        try {
          parseAmountWithCurrency((m[1] ?? '').replace(/^(\d+(?:\.\d+)?)([A-Za-z]{3})$/, '$1 $2'));
          return true;
        } catch {
          return false;
        }
      }, 'must be "decline" or "approve_under:<amount> <CURRENCY>", e.g. approve_under:10 USD'),
    FREEZE_CONCURRENCY: z.coerce.number().int().min(1).max(256).default(16),
    FREEZE_WAIT_MS: z.coerce.number().int().min(0).max(30_000).default(5000),
    FREEZE_RETRY_BASE_MS: z.coerce.number().int().min(10).max(600_000).default(1000),
    FREEZE_RETRY_MAX_MS: z.coerce.number().int().min(10).max(3_600_000).default(300_000),
    RECONCILE_CRON: z
      .string()
      .trim()
      .default('*/5 * * * *')
      .refine((v) => v === 'off' || cron.validate(v), 'must be a cron expression such as "*/5 * * * *", or "off"'),
    MIRROR_RECONCILE_CRON: z
      .string()
      .trim()
      .default('*/5 * * * *')
      .refine((v) => v === 'off' || cron.validate(v), 'must be a cron expression such as "*/5 * * * *", or "off"'),
    TRUST_PROXY: z
      .string()
      .optional()
      .transform((v, ctx) => {
        if (v === undefined || v.trim() === '') return false as const;
        if (/^\d+$/.test(v.trim())) return Number(v.trim());
        const entries = v.split(',').map((e) => e.trim()).filter(Boolean);
        const ok = entries.every((e) => ['loopback', 'linklocal', 'uniquelocal'].includes(e) || isAddressOrCidr(e));
        if (!ok) ctx.addIssue({ code: 'custom', message: 'must be a hop count, or comma-separated IPs/CIDRs (or loopback, linklocal, uniquelocal)' });
        return entries;
      }),
  });

function isAddressOrCidr(entry: string): boolean {
  const [address = '', prefix, extra] = entry.split('/');
  const family = isIP(address);
  if (family === 0 || extra !== undefined) return false;
  if (prefix === undefined) return true;
  return /^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128);
}

/** Checked on the raw environment, so it is reported together with every other problem. */
function liveKeyProblems(env: Record<string, string | undefined>): string[] {
  if (env.NODE_ENV === 'production') return [];
  return ['STRIPE_SECRET_KEY']
    .filter((name) => /^(sk|rk)_live_/.test(env[name] ?? ''))
    .map((name) => `${name} is a live key but NODE_ENV is not "production"; refusing to start`);
}

export type Config = z.output<typeof schema>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

/** Never echoes a value: secrets may be among them. */
export function loadConfig(env: NodeJS.ProcessEnv): Config {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = schema.safeParse(cleaned);
  const problems = [
    ...(parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.join('.') || '(environment)'} ${i.message}`)),
    ...liveKeyProblems(cleaned),
  ];
  if (problems.length > 0 || !parsed.success) throw new ConfigError(problems);
  return parsed.data;
}

/** What will not work with this configuration, said plainly at start. */
export function configWarnings(config: Config): string[] {
  const warnings: string[] = [];
  if (!config.STRIPE_SECRET_KEY) warnings.push('STRIPE_SECRET_KEY is not set: the Stripe mirror cannot forward calls to Stripe');
  if (!config.STRIPE_WEBHOOK_SECRET) warnings.push('STRIPE_WEBHOOK_SECRET is not set: Stripe webhooks will be refused');
  if (!config.SPEND_ADMIN_TOKEN) {
    warnings.push(config.DATABASE_URL
      ? 'SPEND_ADMIN_TOKEN is not set: the admin API accepts only existing sga_ admin keys; set it to bootstrap a fresh database'
      : `SPEND_ADMIN_TOKEN is not set: the admin API accepts sga_ admin keys only (a fresh install gets one in ${config.DATA_DIR}/admin.key)`);
  }
  if (!config.SPEND_MASTER_KEY) warnings.push('SPEND_MASTER_KEY is not set: no secrets can be stored encrypted');
  return warnings;
}
