// Cursor-paginated lists (`{data, pagination}`) as the CLI reads them: one page, or every page
// when --all is given.
import type { Command } from 'commander';
import { CliError } from './client.js';
import type { AdminClient } from './client.js';
import { positiveInteger } from './options.js';

export interface Page<T> {
  data: T[];
  pagination: { next_cursor: string | null; has_more: boolean; total_count: number };
}

export async function fetchPages<T>(
  client: AdminClient,
  path: string,
  query: Record<string, string | number | undefined>,
  opts: { limit?: number; cursor?: string; all?: boolean; noun: string },
): Promise<Page<T>> {
  let page = await client.request<Page<T>>('GET', path, { query: { ...query, limit: opts.limit ?? (opts.all ? 100 : undefined), cursor: opts.cursor } });
  if (!opts.all) return page;
  const data = [...page.data];
  while (page.pagination.has_more) {
    const cursor = page.pagination.next_cursor;
    if (!cursor) throw new CliError(`the gateway said there are more ${opts.noun} but gave no cursor`);
    page = await client.request<Page<T>>('GET', path, { query: { ...query, limit: opts.limit ?? 100, cursor } });
    if (page.data.length === 0) break;
    data.push(...page.data);
  }
  return { data, pagination: { next_cursor: null, has_more: false, total_count: page.pagination.total_count } };
}

/** --limit, --cursor and --all, the same on every list command. */
export function withPaging(command: Command, noun = 'entries'): Command {
  return command
    .option('--limit <n>', `${noun} per page (1-100)`, positiveInteger)
    .option('--cursor <cursor>', 'the next page, as printed by the previous one')
    .option('--all', 'follow the cursor through every page');
}

/** How to get the next page, when there is one. */
export function nextPageHint(out: { line(text: string): void }, pagination: Page<unknown>['pagination']): void {
  if (pagination.has_more && pagination.next_cursor) out.line(`More: repeat with the same filters and --cursor ${pagination.next_cursor}, or use --all.`);
}
