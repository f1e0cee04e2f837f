// The mirror answers within its deadline whatever the database does (SPEC §5: a gateway fault,
// the database down included, answers 503 within 2 s). A stalled database — a lock wait, a
// stopped server whose connections stay open — never answers with an error; these put a clock
// on the waits that could hang on it.

/** MIRROR_DEADLINE_MS's default: under SPEC's 2 s with room for a busy event loop and the network. */
export const DEFAULT_DEADLINE_MS = 1500;

/** The result of `beforeDeadline` when the deadline passed first. */
export const LATE = Symbol('late');

/**
 * `work`'s result, or LATE once `deadline` (performance.now() time) passes first; `work` goes on.
 * Only real database waits come here: cached look-ups are read without a promise (Lookups.cached).
 */
export async function beforeDeadline<T>(work: Promise<T>, deadline: number): Promise<T | typeof LATE> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<typeof LATE>((resolve) => {
    timer = setTimeout(() => resolve(LATE), Math.max(0, deadline - performance.now()));
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The database did not answer before the mirror's deadline: 503, nothing forwarded. */
export class MirrorDeadlineExceeded extends Error {
  constructor(readonly deadlineMs: number) {
    super(`spendgate could not decide within ${deadlineMs} ms (its database is slow or busy); nothing was forwarded. Retrying with the same Idempotency-Key is safe.`);
  }
}

/** `work`'s result, or MirrorDeadlineExceeded once `deadline` passes first. */
export async function withinDeadline<T>(work: Promise<T>, deadline: number, deadlineMs: number): Promise<T> {
  const result = await beforeDeadline(work, deadline);
  if (result === LATE) throw new MirrorDeadlineExceeded(deadlineMs);
  return result;
}
