// One error type. Handlers throw AppError with a code; the boundary picks the wire shape: admin
// `{error: {code, message, request_id, details?}}`, agent port Stripe-like `{error: {type, code,
// message, request_id}}`. Anything else is logged with its request id and becomes a bare 500.
import type { ErrorRequestHandler, Request, Response } from 'express';

const STATUS = {
  invalid_request: 400,
  invalid_policy: 422,
  unenforced_controls: 422,
  authentication_required: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  idempotency_error: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  unavailable: 503,
  internal: 500,
} as const;

export type ErrorCode = keyof typeof STATUS;

/** Stripe's error `type` for each code, for answers on the agent port. */
const STRIPE_TYPE: Record<ErrorCode, string> = {
  invalid_request: 'invalid_request_error',
  invalid_policy: 'invalid_request_error',
  unenforced_controls: 'invalid_request_error',
  authentication_required: 'authentication_error',
  forbidden: 'invalid_request_error',
  not_found: 'invalid_request_error',
  conflict: 'invalid_request_error',
  idempotency_error: 'idempotency_error',
  payload_too_large: 'invalid_request_error',
  unsupported_media_type: 'invalid_request_error',
  unavailable: 'api_error',
  internal: 'api_error',
};

export class AppError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }

  get status(): number {
    return STATUS[this.code];
  }
}

/** The database is unreachable, restarting or too slow to hand out a connection. */
export function isDatabaseUnavailable(error: unknown): boolean {
  const e = error as { name?: string; code?: string; message?: string } | undefined;
  if (!e) return false;
  if (e.name === 'KnexTimeoutError') return true;
  if (typeof e.code === 'string' && (/^(08|57P)/.test(e.code) || ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND'].includes(e.code))) return true;
  // node-postgres: 'timeout expired' is its connectionTimeoutMillis passing while connecting (a
  // frozen server accepts the TCP connection and never answers).
  return /Connection terminated|connect ECONNREFUSED|timeout exceeded when trying to connect|^timeout expired$/i.test(e.message ?? '');
}

/** body-parser and friends signal with `status`/`type`; map them to our codes. */
function normalize(error: unknown): AppError | undefined {
  if (error instanceof AppError) return error;
  if (isDatabaseUnavailable(error)) return new AppError('unavailable', 'spendgate cannot reach its database right now; nothing was decided or recorded. Retry later.');
  const e = error as { status?: number; type?: string; message?: string; code?: string } | undefined;
  if (e?.code === '23505') return new AppError('conflict', 'A concurrent request created the same object; retry to see the current state');
  if (e?.type === 'entity.parse.failed') return new AppError('invalid_request', 'The request body is not valid JSON');
  if (e?.type === 'entity.too.large') return new AppError('payload_too_large', 'The request body is too large');
  if (e?.type === 'charset.unsupported' || e?.type === 'encoding.unsupported') return new AppError('unsupported_media_type', e.message ?? 'Unsupported encoding');
  if (e?.status === 400) return new AppError('invalid_request', e.message ?? 'Bad request');
  return undefined;
}

export type ErrorShape = 'admin' | 'agent';

export function errorHandler(shape: ErrorShape): ErrorRequestHandler {
  return (error, req, res, _next) => {
    if (res.locals.deadline?.passed) {
      // Answered 503 by its deadline (src/http/deadline.ts): this is the handler finishing late.
      // Its dropped answer is expected; a failure is still reported as one.
      const dropped = (error as { code?: string } | undefined)?.code === 'ERR_HTTP_HEADERS_SENT';
      if (dropped) req.log?.warn('a request answered 503 by its deadline finished later; its answer was dropped');
      else req.log?.[normalize(error) ? 'warn' : 'error']({ err: error }, 'a request answered 503 by its deadline failed later');
      return;
    }
    const known = normalize(error);
    if (!known) req.log?.error({ err: error }, 'unhandled error');
    else if (known.code === 'unavailable') req.log?.error({ err: error }, 'database unavailable');
    if (res.headersSent) return;
    sendError(shape, req, res, known ?? new AppError('internal', 'An internal error occurred'));
  };
}

/** `appError` as `shape`'s error body, with the request's id. */
export function sendError(shape: ErrorShape, req: Request, res: Response, appError: AppError): void {
  const requestId = String(req.id ?? '');
  const body =
    shape === 'admin'
      ? { code: appError.code, message: appError.message, request_id: requestId, ...(appError.details === undefined ? {} : { details: appError.details }) }
      : { type: STRIPE_TYPE[appError.code], code: appError.code, message: appError.message, request_id: requestId, ...(appError.details === undefined ? {} : { details: appError.details }) };
  res.status(appError.status).json({ error: body });
}
