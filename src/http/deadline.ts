// An answer within a deadline on the check API and the admin API, whatever the database does. A
// stopped or partitioned PostgreSQL keeps its connections open and never answers with an error,
// so without a clock a request would wait for it for good. Past the deadline the request is
// answered 503 (`unavailable`) in its interface's shape; the handler goes on, and what it later
// tries to answer is dropped. The Stripe mirror and the webhooks keep their own deadlines.
import type { RequestHandler, Response } from 'express';
import { AppError, sendError } from '../errors.js';
import type { ErrorShape } from '../errors.js';

declare module 'express-serve-static-core' {
  interface Locals {
    /** Set by answerWithin; errorHandler reads `passed` to tell a late handler's errors apart. */
    deadline?: Deadline;
  }
}

export interface Deadline {
  /** performance.now() by which the request must be answered. */
  at: number;
  /** The time allowed, ms (with extensions). */
  ms: number;
  /** The response finished or its connection closed: nothing is left to answer. */
  closed: boolean;
  timer: NodeJS.Timeout;
  /** Answered 503 by the deadline: later answers and errors are the handler's late ones. */
  passed: boolean;
  fire(): void;
}

/**
 * Answer `unavailable` with `message(ms)` if the request is not answered within `ms` of its
 * arrival (a handler that must wait longer on purpose calls extendDeadline).
 */
export function answerWithin(ms: number, shape: ErrorShape, message: (ms: number) => string): RequestHandler {
  return (req, res, next) => {
    const deadline: Deadline = {
      at: performance.now() + ms,
      ms,
      closed: false,
      passed: false,
      timer: setTimeout(() => deadline.fire(), ms),
      fire: () => {
        if (deadline.closed || res.headersSent || res.writableEnded) return;
        deadline.passed = true;
        const waited = Math.round(deadline.ms + performance.now() - deadline.at);
        req.log?.warn({ deadline_ms: waited }, 'answered 503: the request did not finish within its deadline');
        sendError(shape, req, res, new AppError('unavailable', message(waited)));
      },
    };
    res.locals.deadline = deadline;
    res.once('close', () => {
      deadline.closed = true;
      clearTimeout(deadline.timer);
    });
    next();
  };
}

/** Give this request `ms` more (a freeze asked to wait for the processor). */
export function extendDeadline(res: Response, ms: number): void {
  const { deadline } = res.locals;
  if (!deadline || deadline.passed || deadline.closed) return;
  clearTimeout(deadline.timer);
  deadline.at += ms;
  deadline.ms += ms;
  deadline.timer = setTimeout(() => deadline.fire(), Math.max(0, deadline.at - performance.now()));
}

/** performance.now() by which this request must be answered, if it has a deadline. */
export function deadlineOf(res: Response): number | undefined {
  return res.locals.deadline?.at;
}

/** Was this request already answered 503 by its deadline? */
function answeredByDeadline(res: Response): boolean {
  return res.locals.deadline?.passed === true;
}

/**
 * Will the handler's answer reach no one? Answered 503 by the deadline, or the client went away
 * before the answer was written (its own timeout was shorter than ours).
 */
export function undeliverable(res: Response): boolean {
  return answeredByDeadline(res) || (res.destroyed && !res.writableFinished);
}

/**
 * Placed after authentication and body parsing: a request answered 503 while it waited for them
 * is not started (what it would change, no one would hear about).
 */
export const unlessAnswered: RequestHandler = (req, res, next) => {
  if (!answeredByDeadline(res)) return next();
  req.log?.warn('not started: answered 503 by its deadline while authenticating or reading the body');
};
