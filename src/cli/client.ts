// The `spend` CLI's only way to the gateway: the admin HTTP API over fetch. Resolves the base URL
// and the admin credential, and turns every failure into one CliError line. The credential is
// sent, never printed: no message here ever contains it.
import { readFile } from 'node:fs/promises';
import path from 'node:path';

export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:4243';
const TIMEOUT_MS = 30_000;

/** A failure the CLI reports as `spend: <message>` (plus optional detail lines) and exit 1. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly details: string[] = [],
  ) {
    super(message);
  }
}

export interface AdminError {
  status: number;
  code: string;
  message: string;
  details: unknown[];
}

export interface ClientSettings {
  url?: string;
  token?: string;
  env: Record<string, string | undefined>;
  cwd: string;
}

export function resolveBaseUrl(flag: string | undefined, env: Record<string, string | undefined>): string {
  const raw = flag ?? env.SPEND_ADMIN_URL ?? DEFAULT_ADMIN_URL;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CliError(`invalid admin URL "${raw}" (--url or SPEND_ADMIN_URL), expected e.g. ${DEFAULT_ADMIN_URL}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CliError(`invalid admin URL "${raw}": use http:// or https://`);
  // Accept the API root too (".../admin/v1"), as people copy it from the docs.
  return url.href.replace(/\/+$/, '').replace(/\/admin\/v1$/, '');
}

/** --token, else SPEND_ADMIN_TOKEN, else DATA_DIR/admin.key (written by a fresh gateway). */
export async function resolveToken(flag: string | undefined, env: Record<string, string | undefined>, cwd: string): Promise<string> {
  const fromFlag = flag ?? env.SPEND_ADMIN_TOKEN;
  const keyFile = path.resolve(cwd, env.DATA_DIR || './.spendgate', 'admin.key');
  let token = fromFlag?.trim();
  let source = flag !== undefined ? '--token' : 'SPEND_ADMIN_TOKEN';
  if (!token) {
    token = (await readFile(keyFile, 'utf8').catch(() => '')).trim();
    source = keyFile;
  }
  if (!token) throw new CliError(`no admin credential: pass --token, set SPEND_ADMIN_TOKEN, or run the gateway once so it writes ${keyFile}`);
  // fetch would echo an invalid header value (the token itself) in its error; refuse first.
  if (!/^[\x21-\x7e]+$/.test(token)) throw new CliError(`the admin credential from ${source} contains spaces or characters that cannot be sent in a header`);
  return token;
}

interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  /** A string is sent as text/markdown; anything else as JSON. */
  body?: unknown;
}

export class AdminClient {
  private constructor(
    readonly baseUrl: string,
    private readonly token: string,
  ) {}

  static async connect(settings: ClientSettings): Promise<AdminClient> {
    const baseUrl = resolveBaseUrl(settings.url, settings.env);
    return new AdminClient(baseUrl, await resolveToken(settings.token, settings.env, settings.cwd));
  }

  /** The response for a 2xx; throws CliError with the admin error's message otherwise. */
  async request<T>(method: string, apiPath: string, options: RequestOptions = {}): Promise<T> {
    const result = await this.send<T>(method, apiPath, options);
    if (result.ok) return result.body;
    throw errorFromResponse(result.error);
  }

  /** Like request, but hands a non-2xx admin error back for the caller to decide. */
  async send<T>(method: string, apiPath: string, options: RequestOptions = {}): Promise<{ ok: true; body: T } | { ok: false; error: AdminError }> {
    const url = new URL(`${this.baseUrl}/admin/v1${apiPath}`);
    for (const [name, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, String(value));
    }
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}`, accept: 'application/json' };
    let body: string | undefined;
    if (typeof options.body === 'string') {
      headers['content-type'] = 'text/markdown; charset=utf-8';
      body = options.body;
    } else if (options.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(options.body);
    }
    let response: Response;
    try {
      response = await fetch(url, { method, headers, body, signal: AbortSignal.timeout(TIMEOUT_MS) });
    } catch (error) {
      throw this.networkError(error);
    }
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      throw new CliError(`unexpected answer from ${this.baseUrl} (HTTP ${response.status}, not JSON): is this a spendgate admin port?`);
    }
    if (response.ok) return { ok: true, body: parsed as T };
    return { ok: false, error: adminError(response.status, parsed) };
  }

  private networkError(error: unknown): CliError {
    const e = error as { name?: string; message?: string; cause?: { code?: string; message?: string } };
    if (e.name === 'TimeoutError') return new CliError(`the gateway at ${this.baseUrl} did not answer within ${TIMEOUT_MS / 1000} s`);
    const code = e.cause?.code ?? '';
    if (['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET'].includes(code)) {
      return new CliError(`cannot reach the gateway at ${this.baseUrl} (is it running?)`);
    }
    return new CliError(`request to ${this.baseUrl} failed: ${e.cause?.message ?? e.message ?? String(error)}`);
  }
}

function adminError(status: number, body: unknown): AdminError {
  const error = (body as { error?: { code?: unknown; message?: unknown; details?: unknown } } | undefined)?.error;
  return {
    status,
    code: typeof error?.code === 'string' ? error.code : `http_${status}`,
    message: typeof error?.message === 'string' ? error.message : `the gateway answered HTTP ${status}`,
    details: Array.isArray(error?.details) ? error.details : [],
  };
}

/** `line N: key: message` for SPEND.md issues, `field: message` for request fields. */
export function formatDetail(detail: unknown): string {
  const d = (detail ?? {}) as { line?: unknown; key?: unknown; field?: unknown; message?: unknown };
  const message = typeof d.message === 'string' ? d.message : JSON.stringify(detail);
  if (typeof d.line === 'number') return `line ${d.line}: ${d.key ? `${String(d.key)}: ` : ''}${message}`;
  if (typeof d.field === 'string' && d.field) return `${d.field}: ${message}`;
  return message;
}

export function errorFromResponse(error: AdminError): CliError {
  return new CliError(error.message, detailLines(error.message, error.details));
}

/** Every detail as its own line, unless the one-line message already says all of them. */
export function detailLines(message: string, details: unknown[]): string[] {
  const lines = details.map(formatDetail);
  return lines.every((line) => message.includes(line)) ? [] : lines;
}
