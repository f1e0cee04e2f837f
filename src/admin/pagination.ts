// Cursor pagination for admin lists: `{data, pagination: {next_cursor, has_more, total_count}}`.
// A cursor is the last row's position, base64url-encoded; the routes say what the position is.
import type { Knex } from 'knex';
import { AppError } from '../errors.js';

export interface Pagination {
  next_cursor: string | null;
  has_more: boolean;
  total_count: number;
}

/** The position inside a cursor this API returned, or a 400. */
export function readCursor(cursor: string, valid: (position: string) => boolean): string {
  const position = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!valid(position)) throw new AppError('invalid_request', 'Invalid cursor', [{ field: 'cursor', message: 'not a cursor this API returned' }]);
  return position;
}

/**
 * `page` is `filtered`, ordered and positioned after the cursor; one row more than `limit` is
 * fetched to learn whether another page follows.
 */
export async function cursorPage<Row>(filtered: Knex.QueryBuilder, page: Knex.QueryBuilder, limit: number, positionOf: (row: Row) => string): Promise<{ data: Row[]; pagination: Pagination }> {
  const [rows, counted] = (await Promise.all([page.limit(limit + 1), filtered.clone().count({ count: '*' })])) as [Row[], { count?: string | number }[]];
  const data = rows.slice(0, limit);
  const last = data[data.length - 1];
  const hasMore = rows.length > limit;
  return {
    data,
    pagination: {
      next_cursor: hasMore && last ? Buffer.from(positionOf(last)).toString('base64url') : null,
      has_more: hasMore,
      total_count: Number(counted[0]?.count ?? 0),
    },
  };
}
