// How the `spend` CLI prints: human tables by default, the raw JSON response with --json.
import Table from 'cli-table3';

export interface Writer {
  write(chunk: string): unknown;
}

/** Where a CLI run reads and writes; the real process or a test's capture. */
export interface CliIO {
  stdout: Writer;
  stderr: Writer;
  env: Record<string, string | undefined>;
  cwd: string;
}

// One rule under the header only, so long lists stay compact.
const ROWS_WITHOUT_RULES = { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' };

export type Cell = string | number | boolean | null | undefined;

export class Output {
  constructor(
    private readonly io: CliIO,
    readonly json: boolean,
  ) {}

  line(text = ''): void {
    this.io.stdout.write(`${text}\n`);
  }

  printJson(value: unknown): void {
    this.line(JSON.stringify(value, null, 2));
  }

  table(head: string[], rows: Cell[][]): void {
    // No colours: output is often piped or captured, and must read the same there.
    const table = new Table({ head, style: { head: [], border: [] }, chars: ROWS_WITHOUT_RULES });
    for (const row of rows) table.push(row.map(cell));
    this.line(table.toString());
  }
}

export function cell(value: Cell): string {
  if (value === null || value === undefined || value === '') return '-';
  return String(value);
}

/** ISO timestamps without milliseconds, "-" for none. */
export function when(value: string | null | undefined): string {
  if (!value) return '-';
  return value.replace(/\.\d+Z$/, 'Z');
}

export function truncate(text: string | null | undefined, max: number): string {
  if (!text) return '-';
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** A rule's parameters on one line: `limit=10.00 currency=USD merchants=a.com,b.com`. */
export function formatParameters(parameters: unknown): string {
  if (!parameters || typeof parameters !== 'object') return '-';
  const parts = Object.entries(parameters as Record<string, unknown>).map(([name, value]) => {
    const shown = Array.isArray(value) ? value.map((v) => (typeof v === 'object' ? JSON.stringify(v) : String(v))).join(',') : typeof value === 'object' && value !== null ? JSON.stringify(value) : String(value);
    return `${name}=${shown === '' ? '[]' : shown}`;
  });
  return parts.length > 0 ? parts.join(' ') : '-';
}
