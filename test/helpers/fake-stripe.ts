// A fake Stripe API for spendgate's tests and benchmarks: a small node:http server that speaks
// enough of Stripe's v1 wire protocol (form-encoded bodies, Bearer/Basic auth, Request-Id,
// Idempotency-Key replay, Stripe-shaped errors) and keeps enough state in memory (payment intents,
// charges, refunds, issuing cards, ...) that a gateway in front of it can create objects and look
// them up again. Objects are shaped from Stripe's own sample fixtures
// (test/fixtures/stripe/fixtures.json, loaded once). Not a validator: it checks the few parameters
// a gateway test cares about and reflects the rest.
//
// In-process:   const fake = await startFakeStripe(); new Stripe(key, { host: '127.0.0.1', port: fake.port, protocol: 'http' })
// Standalone:   node --import tsx test/helpers/fake-stripe.ts [--port N] [--latency-ms N] [--max-stored N]  → prints {"port":N}
// Benchmarks:   pass { record: false } in-process (the standalone server never records); stored objects
//               and idempotency entries are capped (maxStored, default 20,000 each, oldest dropped first;
//               events count as stored objects: each create or update records one).
// Not modelled: 409 for concurrent requests with one idempotency key (the first result is stored before
//               any latency, so a concurrent twin gets the replay), v2 JSON endpoints, webhooks.
import { randomBytes } from 'node:crypto';
import { readFileSync, realpathSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

export interface RecordedRequest {
  method: string;
  /** URL path without the query string, e.g. '/v1/payment_intents'. */
  path: string;
  /** Raw query string without the '?', '' when absent. */
  query: string;
  headers: Record<string, string | string[] | undefined>;
  /** The request body exactly as received. */
  body: Buffer;
  /**
   * Flat form params, e.g. {'amount': '500', 'metadata[agent_id]': 'a1'}: the body's for POST, the
   * query string's for GET/DELETE. Brackets are decoded and `a[]=` is numbered like `a[0]=`, `a[1]=`.
   */
  form: Record<string, string>;
  /** Date.now() when the request was fully read. */
  at: number;
}

export interface Behaviour {
  /** HTTP status to answer (default 200 when only a body is given). */
  status?: number;
  /** Body to answer: strings and Buffers are sent verbatim (so tests can send broken JSON), anything else as JSON. */
  body?: unknown;
  /** Extra response headers, e.g. {'Stripe-Should-Retry': 'false'}. */
  headers?: Record<string, string>;
  /** Delay before answering, in ms. With neither status nor body nor action, delays the normal answer. */
  delayMs?: number;
  /** 'hang': never answer (the socket stays open until stop()); 'reset': destroy the socket. */
  action?: 'hang' | 'reset';
  /** Apply to the next N matching requests only; unlimited when absent. */
  times?: number;
}

export interface FakeStripe {
  url: string;
  port: number;
  /** Every request, in order (empty when started with record: false). */
  requests: RecordedRequest[];
  /**
   * Override the next or every answer for a route: status + body, a delay (ms), or 'hang' (never
   * answer) or 'reset' (destroy the socket). `method` may be '*'; a string `pathPattern` matches the
   * whole path, with ':name' or '*' standing for one path segment. The newest matching override wins.
   */
  on(method: string, pathPattern: string | RegExp, behaviour: Behaviour): void;
  /** Clear recorded requests, overrides, stored objects and the idempotency cache. */
  reset(): void;
  /** Seed an object the fake will return on GET (e.g. a PaymentIntent created "earlier"). */
  put(object: { id: string; object: string; [k: string]: unknown }): void;
  /** A copy of a stored object. */
  get(id: string): Record<string, unknown> | undefined;
  stop(): Promise<void>;
}

export interface FakeStripeOptions {
  /** Port to listen on (default 0: any free port). */
  port?: number;
  /** Host to listen on (default 127.0.0.1). */
  host?: string;
  /** Fixed delay added to every answer, in ms (for benchmarks). */
  latencyMs?: number;
  /** Record requests in `requests` (default true; the standalone server does not record). */
  record?: boolean;
  /** Most objects (and, separately, idempotency entries) kept, default 20,000; the oldest are dropped beyond it. */
  maxStored?: number;
  /** Accept only these API keys (like a real account); default: any well-formed sk_/rk_ test or live key. */
  apiKeys?: string[];
}

export const DEFAULT_STRIPE_VERSION = '2026-07-29.dahlia';

export async function startFakeStripe(options: FakeStripeOptions = {}): Promise<FakeStripe> {
  const fake = new FakeStripeServer(options);
  await fake.listen(options.port ?? 0, options.host ?? '127.0.0.1');
  return fake;
}

// ---------------------------------------------------------------------------------------------
// Types, fixtures, ids
// ---------------------------------------------------------------------------------------------

type Json = Record<string, unknown>;
type StripeObject = Json & { id: string; object: string };
type ParamValue = string | number | boolean | ParamValue[] | Params;
interface Params {
  [key: string]: ParamValue;
}

type FixtureName =
  | 'payment_intent' | 'charge' | 'refund' | 'transfer' | 'payout' | 'topup' | 'invoice' | 'customer'
  | 'balance' | 'issuing.card' | 'issuing.cardholder' | 'issuing.authorization' | 'event';

/**
 * Fixture fields that make no sense on a freshly created object (the samples carry filler values
 * such as `last_payment_error: {type: 'idempotency_error'}`), replaced once at load time.
 */
const TEMPLATE_PATCHES: Partial<Record<FixtureName, Json>> = {
  payment_intent: {
    amount_capturable: 0, amount_received: 0, canceled_at: null, cancellation_reason: null, last_payment_error: null,
    latest_charge: null, next_action: null, payment_method_configuration_details: null, processing: null,
    shipping: null, source: null, status: 'requires_confirmation', transfer_data: null,
  },
  charge: {
    amount_refunded: 0, customer: null, description: null, paid: true, payment_intent: null, receipt_url: null,
    refunded: false, source: null, status: 'succeeded', transfer_data: null,
    outcome: { advice_code: null, network_advice_code: null, network_decline_code: null, network_status: 'approved_by_network', reason: null, risk_level: 'normal', seller_message: 'Payment complete.', type: 'authorized' },
  },
  transfer: { amount_reversed: 0, description: null, reversed: false },
  payout: { automatic: false, description: null, method: 'standard', status: 'pending' },
  topup: { balance_transaction: null, description: null, source: null, status: 'pending' },
  customer: { discount: null },
  'issuing.card': { cancellation_reason: null, latest_fraud_warning: null, lifecycle_controls: null },
};

/** Each fixture as JSON text, parsed afresh per object (faster than structuredClone). */
const TEMPLATES = loadTemplates();

function loadTemplates(): Map<FixtureName, string> {
  const file = new URL('../fixtures/stripe/fixtures.json', import.meta.url);
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as { resources: Record<FixtureName, Json> };
  const templates = new Map<FixtureName, string>();
  for (const [name, object] of Object.entries(parsed.resources) as [FixtureName, Json][]) {
    templates.set(name, JSON.stringify({ ...object, ...TEMPLATE_PATCHES[name] }));
  }
  return templates;
}

/** A fresh deep copy of a (patched) fixture object. */
function fixture(name: FixtureName): Json {
  return JSON.parse(TEMPLATES.get(name) ?? '{}') as Json;
}

const ALPHANUMERIC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
let randomPool = Buffer.alloc(0);
let randomAt = 0;

/** Random characters from a pooled buffer (one randomBytes call per 4 KiB, not per id). */
function randomChars(length: number, alphabet = ALPHANUMERIC): string {
  if (randomAt + length > randomPool.length) {
    randomPool = randomBytes(4096);
    randomAt = 0;
  }
  let out = '';
  for (let i = 0; i < length; i++) out += alphabet.charAt(randomPool.readUInt8(randomAt++) % alphabet.length);
  return out;
}

function newId(prefix: string): string {
  return `${prefix}_${randomChars(24)}`;
}

function isRecord(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !Buffer.isBuffer(value);
}

function isParams(value: ParamValue | undefined): value is Params {
  return typeof value === 'object' && !Array.isArray(value);
}

function numberField(object: Json, key: string): number {
  const value = object[key];
  return typeof value === 'number' ? value : 0;
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly detail: { type: string; message: string; code?: string; param?: string },
    /** Failed before execution started: Stripe saves no idempotent result for these. */
    readonly beforeExecution: boolean,
  ) {
    super(detail.message);
  }
}

function invalidParam(param: string, message: string, code = 'parameter_invalid'): ApiError {
  return new ApiError(400, { type: 'invalid_request_error', code, message, param }, true);
}

function invalidRequest(message: string, extra: { code?: string; param?: string } = {}): ApiError {
  return new ApiError(400, { type: 'invalid_request_error', message, ...extra }, false);
}

function missingParam(param: string): ApiError {
  return invalidParam(param, `Missing required param: ${param}.`, 'parameter_missing');
}

function noSuch(type: string, id: string, param: string, hint = ''): ApiError {
  const message = `No such ${type}: '${id}'${hint}`;
  return new ApiError(404, { type: 'invalid_request_error', code: 'resource_missing', message, param }, true);
}

function unrecognized(method: string, path: string): ApiError {
  const message = `Unrecognized request URL (${method}: ${path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.`;
  return new ApiError(404, { type: 'invalid_request_error', message }, true);
}

function unexpectedState(message: string): ApiError {
  return invalidRequest(message, { code: 'payment_intent_unexpected_state' });
}

function errorPayload(error: ApiError, requestId: string, livemode: boolean): string {
  const { type, code, message, param } = error.detail;
  const body: Json = {};
  if (code) {
    body.code = code;
    body.doc_url = `https://stripe.com/docs/error-codes/${code.replaceAll('_', '-')}`;
  }
  body.message = message;
  if (param) body.param = param;
  if (error.status !== 401) body.request_log_url = `https://dashboard.stripe.com/${livemode ? '' : 'test/'}logs/${requestId}`;
  body.type = type;
  return JSON.stringify({ error: body });
}

// ---------------------------------------------------------------------------------------------
// Form parsing: flat key/value pairs, then nested params with numbers and booleans coerced
// ---------------------------------------------------------------------------------------------

/**
 * Flat params from a form body or query string. `[]` keys are numbered like Stripe's (Rack's) parser
 * reads them: `a[]=x&a[]=y` → `a[0]`, `a[1]`; `l[][amount]=1&l[][interval]=day` → one element
 * `l[0][amount]`, `l[0][interval]` (a new element starts when a child key repeats).
 */
export function parseFlatForm(raw: string): Record<string, string> {
  const flat: Record<string, string> = {};
  if (raw === '') return flat;
  const arrays = new Map<string, ArrayCursor>();
  for (const [key, value] of new URLSearchParams(raw)) {
    flat[key.includes('[]') ? numberEmptyBrackets(key, arrays) : key] = value;
  }
  return flat;
}

/** Per `prefix[]`: the current element's index and the child keys it already has. */
interface ArrayCursor {
  index: number;
  children: Set<string>;
}

function numberEmptyBrackets(key: string, arrays: Map<string, ArrayCursor>): string {
  let out = '';
  let rest = key;
  for (let at = rest.indexOf('[]'); at !== -1; at = rest.indexOf('[]')) {
    const prefix = out + rest.slice(0, at);
    const child = rest.slice(at + 2);
    const cursor = arrays.get(prefix);
    let index: number;
    if (cursor && child !== '' && !cursor.children.has(child)) {
      index = cursor.index;
      cursor.children.add(child);
    } else {
      index = cursor ? cursor.index + 1 : 0;
      arrays.set(prefix, { index, children: new Set(child === '' ? [] : [child]) });
    }
    out = `${prefix}[${index}]`;
    rest = child;
  }
  return out + rest;
}

/** 'a[b][0]' → ['a', 'b', '0']; a malformed key is one segment. */
function splitKey(key: string): string[] {
  const open = key.indexOf('[');
  if (open <= 0 || !key.endsWith(']')) return [key];
  const segments = [key.slice(0, open)];
  const inner = key.slice(open + 1, -1).split('][');
  for (const part of inner) {
    if (part.includes('[') || part.includes(']')) return [key];
    segments.push(part);
  }
  return segments;
}

const UNSAFE_SEGMENTS = new Set(['__proto__', 'constructor', 'prototype']);

function nestFlat(flat: Record<string, string>): Params {
  const root: Params = {};
  for (const [key, value] of Object.entries(flat)) {
    const path = splitKey(key);
    if (path.some((segment) => UNSAFE_SEGMENTS.has(segment))) continue;
    let node: Params = root;
    for (const segment of path.slice(0, -1)) {
      const next = node[segment];
      if (isParams(next)) {
        node = next;
      } else {
        const created: Params = {};
        node[segment] = created;
        node = created;
      }
    }
    node[path[path.length - 1] as string] = value;
  }
  return root;
}

const BOOLEAN_PARAMS = new Set([
  'confirm', 'capture', 'final_capture', 'off_session', 'error_on_requires_action', 'use_stripe_sdk',
  'refund_application_fee', 'reverse_transfer', 'paid_out_of_band', 'forgive', 'enabled', 'auto_advance',
]);

function isIntegerParam(key: string): boolean {
  return key === 'amount' || key === 'limit' || key.startsWith('amount_') || key.endsWith('_amount');
}

/** Index-keyed objects become arrays, integer and boolean params become numbers and booleans. */
function finishParam(key: string, value: ParamValue, name: string, inMetadata: boolean): ParamValue {
  if (inMetadata) return value;
  if (isParams(value)) {
    const keys = Object.keys(value);
    const childrenInMetadata = key === 'metadata';
    if (!childrenInMetadata && keys.length > 0 && keys.every((k) => /^\d+$/.test(k))) {
      return keys
        .map(Number)
        .sort((a, b) => a - b)
        .map((index) => finishParam(key, value[String(index)] as ParamValue, `${name}[${index}]`, false));
    }
    const out: Params = {};
    for (const k of keys) out[k] = finishParam(k, value[k] as ParamValue, `${name}[${k}]`, childrenInMetadata);
    return out;
  }
  if (typeof value !== 'string' || value === '') return value;
  if (isIntegerParam(key)) {
    if (!/^-?\d+$/.test(value)) throw invalidParam(name, `Invalid integer: ${value}`, 'parameter_invalid_integer');
    return Number(value);
  }
  // stripe-python 5 sends Python's True/False; Stripe reads booleans without regard to case.
  if (BOOLEAN_PARAMS.has(key) && /^(true|false)$/i.test(value)) return value.toLowerCase() === 'true';
  return value;
}

function toParams(flat: Record<string, string>): Params {
  const nested = nestFlat(flat);
  const out: Params = {};
  for (const [key, value] of Object.entries(nested)) out[key] = finishParam(key, value, key, false);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Storage: objects by id, idempotent results by (api key, idempotency key); both bounded, FIFO
// ---------------------------------------------------------------------------------------------

class BoundedMap<V> extends Map<string, V> {
  constructor(private readonly max: number) {
    super();
  }

  override set(key: string, value: V): this {
    super.delete(key);
    super.set(key, value);
    if (this.size > this.max) {
      const oldest = this.keys().next();
      if (!oldest.done) super.delete(oldest.value);
    }
    return this;
  }
}

interface IdempotentResult {
  method: string;
  path: string;
  body: Buffer;
  status: number;
  payload: string;
}

// ---------------------------------------------------------------------------------------------
// Param helpers for handlers
// ---------------------------------------------------------------------------------------------

interface Ctx {
  method: string;
  path: string;
  params: Params;
  livemode: boolean;
  /** Unix seconds. */
  now: number;
  store: BoundedMap<StripeObject>;
}

function optionalAmount(params: Params, name: string): number | undefined {
  const value = params[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'number') throw invalidParam(name, `Invalid integer: ${String(value)}`, 'parameter_invalid_integer');
  if (value < 1) throw invalidParam(name, 'This value must be greater than or equal to 1.', 'parameter_invalid_integer');
  return value;
}

function requireAmount(params: Params, name = 'amount'): number {
  const amount = optionalAmount(params, name);
  if (amount === undefined) throw missingParam(name);
  return amount;
}

function requireText(params: Params, name: string): string {
  const value = params[name];
  if (value === undefined || value === '') throw missingParam(name);
  if (typeof value !== 'string') throw invalidParam(name, `Invalid string: ${JSON.stringify(value)}`);
  return value;
}

function requireCurrency(params: Params): string {
  return requireText(params, 'currency').toLowerCase();
}

/** Copy the given params onto the object; an empty value ('') unsets the field (null). */
function reflect(target: Json, params: Params, fields: readonly string[]): void {
  for (const field of fields) {
    const value = params[field];
    if (value !== undefined) target[field] = value === '' ? null : value;
  }
}

/** `metadata[k]=v` sets, `metadata[k]=` deletes one key, `metadata=` clears all (like Stripe). */
function applyMetadata(target: Json, value: ParamValue | undefined): void {
  if (value === undefined) return;
  if (value === '') {
    target.metadata = {};
    return;
  }
  if (!isParams(value)) throw invalidParam('metadata', 'Invalid object');
  const metadata: Json = isRecord(target.metadata) ? { ...target.metadata } : {};
  for (const [key, entry] of Object.entries(value)) {
    if (typeof entry !== 'string') throw invalidParam(`metadata[${key}]`, 'Invalid string');
    if (entry === '') delete metadata[key];
    else metadata[key] = entry;
  }
  target.metadata = metadata;
}

/** A new object from a fixture: new id, created now, livemode from the key, empty metadata. */
function fresh(ctx: Ctx, name: FixtureName, prefix: string): StripeObject {
  const object = fixture(name) as StripeObject;
  object.id = newId(prefix);
  object.created = ctx.now;
  object.livemode = ctx.livemode;
  object.metadata = {};
  return object;
}

function save<T extends StripeObject>(ctx: Ctx, object: T): T {
  ctx.store.set(object.id, object);
  return object;
}

function find(ctx: Ctx, id: string, type: string, param: string): StripeObject {
  const object = ctx.store.get(id);
  if (!object || object.object !== type) throw noSuch(type, id, param);
  if (typeof object.livemode === 'boolean' && object.livemode !== ctx.livemode) {
    const mode = object.livemode ? 'live' : 'test';
    const keyMode = ctx.livemode ? 'live' : 'test';
    throw noSuch(type, id, param, `; a similar object exists in ${mode} mode, but a ${keyMode} mode key was used to make this request.`);
  }
  return object;
}

function list(url: string, data: unknown[], hasMore = false): Json {
  return { object: 'list', data, has_more: hasMore, url };
}

function formatMoney(amount: number, currency: unknown): string {
  return `${String(currency ?? 'usd').toLowerCase() === 'usd' ? '$' : ''}${(amount / 100).toFixed(2)}`;
}

// ---------------------------------------------------------------------------------------------
// Payment intents
// ---------------------------------------------------------------------------------------------

const PI_FIELDS = [
  'description', 'customer', 'payment_method', 'receipt_email', 'capture_method', 'confirmation_method',
  'setup_future_usage', 'statement_descriptor', 'statement_descriptor_suffix', 'transfer_group',
  'on_behalf_of', 'application_fee_amount', 'transfer_data', 'shipping',
] as const;
/** Stripe's test payment method that requires authentication (3D Secure) on every payment. */
const AUTHENTICATION_REQUIRED = 'pm_card_authenticationRequired';
const PI_CONFIRMABLE = new Set(['requires_payment_method', 'requires_confirmation', 'requires_action']);
const PI_AMOUNT_UPDATABLE = PI_CONFIRMABLE;
const PI_CANCELABLE = new Set([...PI_CONFIRMABLE, 'requires_capture', 'processing']);

function createPaymentIntent(ctx: Ctx): Json {
  const params = ctx.params;
  const amount = requireAmount(params);
  const currency = requireCurrency(params);
  const intent = fresh(ctx, 'payment_intent', 'pi');
  Object.assign(intent, { amount, currency, client_secret: `${intent.id}_secret_${randomChars(25)}` });
  reflect(intent, params, PI_FIELDS);
  applyPaymentMethodTypes(intent, params);
  applyMetadata(intent, params.metadata);
  save(ctx, intent);
  if (params.confirm === true) confirmIntent(ctx, intent);
  return intent;
}

function updatePaymentIntent(ctx: Ctx, [id]: string[]): Json {
  const intent = find(ctx, id as string, 'payment_intent', 'id');
  const params = ctx.params;
  const amount = optionalAmount(params, 'amount');
  const status = String(intent.status);
  if ((amount !== undefined || params.currency !== undefined) && !PI_AMOUNT_UPDATABLE.has(status)) {
    throw unexpectedState(
      `This PaymentIntent's amount could not be updated because it has a status of ${status}. You may only update the amount of a PaymentIntent with one of the following statuses: ${[...PI_AMOUNT_UPDATABLE].join(', ')}.`,
    );
  }
  if (amount !== undefined) intent.amount = amount;
  if (params.currency !== undefined) intent.currency = requireCurrency(params);
  reflect(intent, params, PI_FIELDS);
  applyPaymentMethodTypes(intent, params);
  applyMetadata(intent, params.metadata);
  return intent;
}

/** API 2026-10-28 (stripe-node 23) sends `allowed_payment_method_types`; older versions `payment_method_types`. */
function applyPaymentMethodTypes(intent: StripeObject, params: Params): void {
  const allowed = params.allowed_payment_method_types ?? params.payment_method_types;
  if (allowed === undefined) {
    intent.allowed_payment_method_types ??= null;
    return;
  }
  intent.allowed_payment_method_types = Array.isArray(allowed) ? allowed : null;
  intent.payment_method_types = Array.isArray(allowed) ? allowed : ['card'];
}

function confirmIntent(ctx: Ctx, intent: StripeObject): void {
  const status = String(intent.status);
  if (!PI_CONFIRMABLE.has(status)) {
    throw unexpectedState(
      `You cannot confirm this PaymentIntent because it has a status of ${status}. Only a PaymentIntent with one of the following statuses may be confirmed: ${[...PI_CONFIRMABLE].join(', ')}.`,
    );
  }
  reflect(intent, ctx.params, ['payment_method', 'receipt_email', 'setup_future_usage', 'capture_method', 'shipping']);
  // Stripe's test card that asks for 3D Secure: confirming leaves the intent for the customer to
  // authenticate, which never happens here.
  if (intent.payment_method === AUTHENTICATION_REQUIRED) {
    Object.assign(intent, { status: 'requires_action', next_action: { type: 'use_stripe_sdk', use_stripe_sdk: {} } });
    return;
  }
  intent.next_action = null;
  const amount = numberField(intent, 'amount');
  const manual = intent.capture_method === 'manual';
  const charge = newCharge(ctx, amount, intent.currency, !manual);
  Object.assign(charge, {
    customer: intent.customer ?? null,
    description: intent.description ?? null,
    metadata: isRecord(intent.metadata) ? { ...intent.metadata } : {},
    payment_intent: intent.id,
  });
  if (typeof intent.payment_method === 'string') charge.payment_method = intent.payment_method;
  save(ctx, charge);
  Object.assign(intent, {
    latest_charge: charge.id,
    status: manual ? 'requires_capture' : 'succeeded',
    amount_capturable: manual ? amount : 0,
    amount_received: manual ? 0 : amount,
  });
}

function confirmPaymentIntent(ctx: Ctx, [id]: string[]): Json {
  const intent = find(ctx, id as string, 'payment_intent', 'id');
  confirmIntent(ctx, intent);
  return intent;
}

function capturePaymentIntent(ctx: Ctx, [id]: string[]): Json {
  const intent = find(ctx, id as string, 'payment_intent', 'id');
  const status = String(intent.status);
  if (status !== 'requires_capture') {
    throw unexpectedState(
      `This PaymentIntent could not be captured because it has a status of ${status}. Only a PaymentIntent with one of the following statuses may be captured: requires_capture.`,
    );
  }
  const capturable = numberField(intent, 'amount_capturable');
  const amount = optionalAmount(ctx.params, 'amount_to_capture') ?? capturable;
  if (amount > capturable) {
    throw invalidRequest(
      `The amount to capture (${formatMoney(amount, intent.currency)}) is greater than the amount capturable (${formatMoney(capturable, intent.currency)}).`,
      { code: 'amount_too_large', param: 'amount_to_capture' },
    );
  }
  Object.assign(intent, { status: 'succeeded', amount_capturable: 0, amount_received: amount });
  const charge = typeof intent.latest_charge === 'string' ? ctx.store.get(intent.latest_charge) : undefined;
  if (charge) Object.assign(charge, { captured: true, amount_captured: amount });
  return intent;
}

function cancelPaymentIntent(ctx: Ctx, [id]: string[]): Json {
  const intent = find(ctx, id as string, 'payment_intent', 'id');
  const status = String(intent.status);
  if (!PI_CANCELABLE.has(status)) {
    throw unexpectedState(
      `You cannot cancel this PaymentIntent because it has a status of ${status}. Only a PaymentIntent with one of the following statuses may be canceled: ${[...PI_CANCELABLE].join(', ')}.`,
    );
  }
  Object.assign(intent, { status: 'canceled', canceled_at: ctx.now, amount_capturable: 0 });
  reflect(intent, ctx.params, ['cancellation_reason']);
  return intent;
}

// ---------------------------------------------------------------------------------------------
// Charges and refunds
// ---------------------------------------------------------------------------------------------

function newCharge(ctx: Ctx, amount: number, currency: unknown, captured: boolean): StripeObject {
  const charge = fresh(ctx, 'charge', 'ch');
  Object.assign(charge, {
    amount,
    currency,
    captured,
    amount_captured: captured ? amount : 0,
    balance_transaction: newId('txn'),
    payment_method: newId('pm'),
    refunds: { ...list(`/v1/charges/${charge.id}/refunds`, []), total_count: 0 },
  });
  return charge;
}

function createCharge(ctx: Ctx): Json {
  const params = ctx.params;
  const charge = newCharge(ctx, requireAmount(params), requireCurrency(params), params.capture !== false);
  reflect(charge, params, [
    'customer', 'description', 'receipt_email', 'statement_descriptor', 'statement_descriptor_suffix',
    'transfer_group', 'on_behalf_of', 'application_fee_amount', 'transfer_data', 'shipping',
  ]);
  applyMetadata(charge, params.metadata);
  return save(ctx, charge);
}

/** The charge a refund request points at: the path's, `charge`, or `payment_intent`'s latest charge. */
function chargeToRefund(ctx: Ctx, pathChargeId: string | undefined): StripeObject {
  if (pathChargeId !== undefined) return find(ctx, pathChargeId, 'charge', 'id');
  const { charge, payment_intent: intentId } = ctx.params;
  if (typeof charge === 'string' && charge !== '') return find(ctx, charge, 'charge', 'charge');
  if (typeof intentId === 'string' && intentId !== '') {
    const intent = find(ctx, intentId, 'payment_intent', 'payment_intent');
    if (typeof intent.latest_charge !== 'string') {
      throw invalidRequest(`This PaymentIntent (${intentId}) does not have a successful charge to refund.`, {
        param: 'payment_intent',
      });
    }
    return find(ctx, intent.latest_charge, 'charge', 'payment_intent');
  }
  throw invalidParam('charge', 'One of the following params should be provided for this request: payment_intent or charge.', 'parameter_missing');
}

function refundCharge(ctx: Ctx, charge: StripeObject): StripeObject {
  const refundable = charge.captured === false ? numberField(charge, 'amount') : numberField(charge, 'amount_captured');
  const remaining = refundable - numberField(charge, 'amount_refunded');
  const requested = optionalAmount(ctx.params, 'amount');
  if (remaining <= 0) {
    throw invalidRequest(`Charge ${charge.id} has already been refunded.`, { code: 'charge_already_refunded' });
  }
  const amount = requested ?? remaining;
  if (amount > remaining) {
    throw invalidRequest(
      `Refund amount (${formatMoney(amount, charge.currency)}) is greater than unrefunded amount on charge (${formatMoney(remaining, charge.currency)})`,
      { code: 'amount_too_large', param: 'amount' },
    );
  }
  const refund = fresh(ctx, 'refund', 're');
  Object.assign(refund, {
    amount,
    balance_transaction: newId('txn'),
    charge: charge.id,
    currency: charge.currency,
    payment_intent: charge.payment_intent ?? null,
    payment_method: charge.payment_method ?? null,
    customer: charge.customer ?? null,
    status: 'succeeded',
  });
  delete refund.livemode; // refunds have no livemode field
  reflect(refund, ctx.params, ['reason']);
  applyMetadata(refund, ctx.params.metadata);
  save(ctx, refund);

  const refunded = numberField(charge, 'amount_refunded') + amount;
  const refunds = isRecord(charge.refunds) ? charge.refunds : list(`/v1/charges/${charge.id}/refunds`, []);
  const data = Array.isArray(refunds.data) ? refunds.data : [];
  charge.refunds = { ...refunds, data: [refund, ...data], total_count: data.length + 1 };
  Object.assign(charge, { amount_refunded: refunded, refunded: refunded >= refundable });
  return refund;
}

function createRefund(ctx: Ctx, [chargeId]: string[]): Json {
  return refundCharge(ctx, chargeToRefund(ctx, chargeId));
}

/** Legacy `POST /v1/charges/:id/refund`: refunds, answers with the charge. */
function legacyRefundCharge(ctx: Ctx, [chargeId]: string[]): Json {
  const charge = chargeToRefund(ctx, chargeId);
  refundCharge(ctx, charge);
  return charge;
}

/**
 * `POST /v1/charges/:id/capture`: captures an uncaptured charge, `amount` or all of it; what is not
 * captured is refunded, as Stripe does.
 */
function captureCharge(ctx: Ctx, [chargeId]: string[]): Json {
  const charge = find(ctx, chargeId as string, 'charge', 'id');
  if (charge.captured !== false) throw invalidRequest(`Charge ${charge.id} has already been captured.`, { code: 'charge_already_captured' });
  const authorized = numberField(charge, 'amount');
  const amount = optionalAmount(ctx.params, 'amount') ?? authorized;
  if (amount > authorized) {
    throw invalidRequest(`The amount to capture (${formatMoney(amount, charge.currency)}) is greater than the amount authorized (${formatMoney(authorized, charge.currency)}).`, { code: 'amount_too_large', param: 'amount' });
  }
  Object.assign(charge, { captured: true, amount_captured: amount, amount_refunded: authorized - amount });
  return charge;
}

// ---------------------------------------------------------------------------------------------
// Money out: transfers, payouts, top-ups; invoices
// ---------------------------------------------------------------------------------------------

function createTransfer(ctx: Ctx): Json {
  const params = ctx.params;
  const amount = requireAmount(params);
  const currency = requireCurrency(params);
  const destination = requireText(params, 'destination');
  const transfer = fresh(ctx, 'transfer', 'tr');
  Object.assign(transfer, {
    amount,
    currency,
    destination,
    balance_transaction: newId('txn'),
    destination_payment: newId('py'),
    reversals: { ...list(`/v1/transfers/${transfer.id}/reversals`, []), total_count: 0 },
  });
  reflect(transfer, params, ['description', 'source_transaction', 'source_type', 'transfer_group']);
  applyMetadata(transfer, params.metadata);
  return save(ctx, transfer);
}

function createPayout(ctx: Ctx): Json {
  const params = ctx.params;
  const amount = requireAmount(params);
  const currency = requireCurrency(params);
  const payout = fresh(ctx, 'payout', 'po');
  Object.assign(payout, { amount, currency, arrival_date: ctx.now + 2 * 86_400, balance_transaction: newId('txn') });
  reflect(payout, params, ['description', 'destination', 'method', 'source_type', 'statement_descriptor']);
  applyMetadata(payout, params.metadata);
  return save(ctx, payout);
}

function createTopup(ctx: Ctx): Json {
  const params = ctx.params;
  const amount = requireAmount(params);
  const currency = requireCurrency(params);
  const topup = fresh(ctx, 'topup', 'tu');
  Object.assign(topup, { amount, currency, expected_availability_date: ctx.now + 5 * 86_400 });
  reflect(topup, params, ['description', 'source', 'statement_descriptor', 'transfer_group']);
  applyMetadata(topup, params.metadata);
  return save(ctx, topup);
}

function payInvoice(ctx: Ctx, [id]: string[]): Json {
  const invoice = find(ctx, id as string, 'invoice', 'id');
  if (invoice.status === 'paid') throw invalidRequest('Invoice is already paid');
  if (invoice.status === 'void') throw invalidRequest('You cannot pay a void invoice.');
  const remaining = numberField(invoice, 'amount_remaining');
  const transitions = isRecord(invoice.status_transitions) ? invoice.status_transitions : {};
  Object.assign(invoice, {
    status: 'paid',
    amount_paid: numberField(invoice, 'amount_paid') + remaining,
    amount_remaining: 0,
    attempted: true,
    attempt_count: numberField(invoice, 'attempt_count') + 1,
    status_transitions: { ...transitions, paid_at: ctx.now },
  });
  return invoice;
}

// ---------------------------------------------------------------------------------------------
// Customers, issuing cardholders and cards, balance
// ---------------------------------------------------------------------------------------------

function createCustomer(ctx: Ctx): Json {
  const customer = fresh(ctx, 'customer', 'cus');
  customer.invoice_prefix = randomChars(8, 'ABCDEF0123456789');
  reflect(customer, ctx.params, ['address', 'balance', 'description', 'email', 'name', 'phone', 'shipping', 'preferred_locales']);
  applyMetadata(customer, ctx.params.metadata);
  return save(ctx, customer);
}

/** Fixture controls with every given field replaced (Stripe replaces, not merges, each field). */
function spendingControls(current: unknown, value: ParamValue | undefined, defaults: Json): Json {
  const base = isRecord(current) ? current : defaults;
  if (value === undefined) return base;
  if (value === '') return { ...defaults };
  if (!isParams(value)) throw invalidParam('spending_controls', 'Invalid object');
  const out: Json = { ...base };
  for (const [key, entry] of Object.entries(value)) out[key] = entry === '' ? null : entry;
  if (Array.isArray(out.spending_limits)) {
    out.spending_limits = out.spending_limits.map((limit) => (isRecord(limit) ? { ...limit, categories: limit.categories ?? null } : limit));
  }
  return out;
}

function createCardholder(ctx: Ctx): Json {
  const cardholder = fresh(ctx, 'issuing.cardholder', 'ich');
  const defaults = fixture('issuing.cardholder').spending_controls as Json;
  reflect(cardholder, ctx.params, ['billing', 'company', 'email', 'individual', 'name', 'phone_number', 'preferred_locales', 'status', 'type']);
  cardholder.spending_controls = spendingControls(undefined, ctx.params.spending_controls, defaults);
  applyMetadata(cardholder, ctx.params.metadata);
  return save(ctx, cardholder);
}

/** The cardholder to embed in a card: the stored one, else the fixture's (lenient: no 404). */
function cardholderFor(ctx: Ctx, value: ParamValue | undefined): Json {
  if (typeof value === 'string' && value !== '') {
    const stored = ctx.store.get(value);
    if (stored && stored.object === 'issuing.cardholder') return structuredClone(stored);
    return { ...fixture('issuing.cardholder'), id: value, livemode: ctx.livemode };
  }
  return { ...fixture('issuing.cardholder'), livemode: ctx.livemode };
}

const CARD_STATUSES = ['active', 'inactive', 'canceled'];

function cardStatus(params: Params, allowCanceled: boolean): string {
  const status = params.status;
  const allowed = allowCanceled ? CARD_STATUSES : CARD_STATUSES.filter((s) => s !== 'canceled');
  if (typeof status !== 'string' || !allowed.includes(status)) {
    throw invalidParam('status', `Invalid status: must be one of ${allowed.join(', ')}`);
  }
  return status;
}

function createCard(ctx: Ctx): Json {
  const params = ctx.params;
  const currency = requireCurrency(params);
  const type = requireText(params, 'type');
  if (type !== 'virtual' && type !== 'physical') throw invalidParam('type', 'Invalid type: must be one of physical or virtual');
  const status = params.status === undefined ? 'inactive' : cardStatus(params, false);
  const card = fresh(ctx, 'issuing.card', 'ic');
  const defaults = card.spending_controls as Json;
  Object.assign(card, {
    cardholder: cardholderFor(ctx, params.cardholder),
    currency,
    exp_month: 1 + Math.floor(Math.random() * 12),
    exp_year: new Date().getUTCFullYear() + 3,
    last4: randomChars(4, '0123456789'),
    shipping: type === 'physical' ? card.shipping : null,
    spending_controls: spendingControls(undefined, params.spending_controls, defaults),
    status,
    type,
  });
  reflect(card, params, ['personalization_design', 'replacement_for', 'replacement_reason', 'second_line']);
  applyMetadata(card, params.metadata);
  return save(ctx, card);
}

function updateCard(ctx: Ctx, [id]: string[]): Json {
  const card = find(ctx, id as string, 'issuing.card', 'id');
  const params = ctx.params;
  if (params.status !== undefined) {
    const status = cardStatus(params, true);
    if (card.status === 'canceled' && status !== 'canceled') {
      throw invalidParam('status', 'This card has been canceled and cannot be reactivated.');
    }
    card.status = status;
    if (status === 'canceled') card.cancellation_reason = typeof params.cancellation_reason === 'string' ? params.cancellation_reason : null;
  }
  const defaults = fixture('issuing.card').spending_controls as Json;
  card.spending_controls = spendingControls(card.spending_controls, params.spending_controls, defaults);
  reflect(card, params, ['personalization_design', 'shipping']);
  applyMetadata(card, params.metadata);
  return card;
}

function retrieveBalance(ctx: Ctx): Json {
  return { ...fixture('balance'), livemode: ctx.livemode };
}

// ---------------------------------------------------------------------------------------------
// Generic retrieve / list / update for known collections
// ---------------------------------------------------------------------------------------------

const COLLECTIONS = new Map<string, string>([
  ['payment_intents', 'payment_intent'],
  ['charges', 'charge'],
  ['refunds', 'refund'],
  ['transfers', 'transfer'],
  ['payouts', 'payout'],
  ['topups', 'topup'],
  ['invoices', 'invoice'],
  ['customers', 'customer'],
  ['issuing/cards', 'issuing.card'],
  ['issuing/cardholders', 'issuing.cardholder'],
  ['issuing/authorizations', 'issuing.authorization'],
  ['issuing/transactions', 'issuing.transaction'],
  ['events', 'event'],
]);

const LIST_CONTROL_PARAMS = new Set(['limit', 'starting_after', 'ending_before', 'expand', 'created']);

function retrieveObject(ctx: Ctx, collection: string, id: string): Json {
  const type = COLLECTIONS.get(collection);
  if (type) return find(ctx, id, type, 'id');
  const stored = ctx.store.get(id);
  if (!stored) throw unrecognized(ctx.method, ctx.path);
  return stored;
}

function matchesFilter(object: StripeObject, key: string, wanted: string): boolean {
  const value = object[key];
  return value === wanted || (isRecord(value) && value.id === wanted);
}

/** Newest first; filters on top-level string params (status, customer, cardholder, type, ...). */
function listObjects(ctx: Ctx, collection: string, type: string): Json {
  const filters = Object.entries(ctx.params).filter(
    (entry): entry is [string, string] => typeof entry[1] === 'string' && !LIST_CONTROL_PARAMS.has(entry[0]),
  );
  const matching: StripeObject[] = [];
  for (const object of ctx.store.values()) {
    if (object.object !== type) continue;
    if (typeof object.livemode === 'boolean' && object.livemode !== ctx.livemode) continue;
    if (filters.every(([key, wanted]) => matchesFilter(object, key, wanted)) && inCreatedRange(object, ctx.params.created)) matching.push(object);
  }
  matching.reverse();
  const after = ctx.params.starting_after;
  const start = typeof after === 'string' ? matching.findIndex((o) => o.id === after) + 1 : 0;
  const limit = Math.min(Math.max(typeof ctx.params.limit === 'number' ? ctx.params.limit : 10, 1), 100);
  const page = matching.slice(start, start + limit);
  return list(`/v1/${collection}`, page, start + limit < matching.length);
}

/** `created=N` or `created[gt|gte|lt|lte]=N` (unix seconds), as Stripe's list endpoints take it. */
function inCreatedRange(object: StripeObject, created: ParamValue | undefined): boolean {
  if (created === undefined) return true;
  const at = Number(object.created);
  if (!isParams(created)) return at === Number(created);
  const bound = (name: string) => (created[name] === undefined ? undefined : Number(created[name]));
  const [gt, gte, lt, lte] = [bound('gt'), bound('gte'), bound('lt'), bound('lte')];
  return (gt === undefined || at > gt) && (gte === undefined || at >= gte) && (lt === undefined || at < lt) && (lte === undefined || at <= lte);
}

/**
 * The events a successful POST makes, as Stripe's own: `<type>.created` for a new object, the
 * state a PaymentIntent reached, a capture or a refund. Each carries the request's id and
 * idempotency key (`request`), which is how a client finds what its timed-out request did.
 */
function eventTypes(path: string, object: Json): string[] {
  const type = String(object.object).replace('.', '_');
  const created = COLLECTIONS.has(path.slice('/v1/'.length));
  if (object.object === 'payment_intent') {
    const reached = object.status === 'succeeded' ? ['payment_intent.succeeded'] : object.status === 'requires_capture' ? ['payment_intent.amount_capturable_updated'] : [];
    return created ? ['payment_intent.created', ...reached] : reached;
  }
  if (object.object === 'charge') {
    if (path.endsWith('/capture')) return ['charge.captured'];
    if (path.endsWith('/refund')) return ['charge.refunded'];
    return ['charge.succeeded'];
  }
  if (object.object === 'invoice' && path.endsWith('/pay')) return ['invoice.paid'];
  return [created || path.endsWith('/refunds') ? `${type}.created` : `${type}.updated`];
}

function updateObject(ctx: Ctx, id: string, type: string): Json {
  const object = find(ctx, id, type, 'id');
  const fields = Object.keys(ctx.params).filter((key) => key !== 'metadata' && key !== 'expand');
  reflect(object, ctx.params, fields);
  applyMetadata(object, ctx.params.metadata);
  return object;
}

// ---------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------

type Handler = (ctx: Ctx, pathIds: string[]) => Json;

interface Route {
  method: string;
  pattern: RegExp;
  handle: Handler;
}

/** '/v1/payment_intents/:id/confirm' → /^\/v1\/payment_intents\/([^/]+)\/confirm$/ */
function compilePath(path: string): RegExp {
  const source = path
    .split('/')
    .map((segment) => (segment.startsWith(':') || segment === '*' ? '([^/]+)' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('/');
  return new RegExp(`^${source}$`);
}

const ROUTES: Route[] = (
  [
    ['POST', '/v1/payment_intents', createPaymentIntent],
    ['POST', '/v1/payment_intents/:id', updatePaymentIntent],
    ['POST', '/v1/payment_intents/:id/confirm', confirmPaymentIntent],
    ['POST', '/v1/payment_intents/:id/capture', capturePaymentIntent],
    ['POST', '/v1/payment_intents/:id/cancel', cancelPaymentIntent],
    ['POST', '/v1/charges', createCharge],
    ['POST', '/v1/charges/:id/capture', captureCharge],
    ['POST', '/v1/charges/:id/refunds', createRefund],
    ['POST', '/v1/charges/:id/refund', legacyRefundCharge],
    ['POST', '/v1/refunds', (ctx: Ctx) => createRefund(ctx, [])],
    ['POST', '/v1/transfers', createTransfer],
    ['POST', '/v1/payouts', createPayout],
    ['POST', '/v1/topups', createTopup],
    ['POST', '/v1/invoices/:id/pay', payInvoice],
    ['POST', '/v1/customers', createCustomer],
    ['POST', '/v1/issuing/cardholders', createCardholder],
    ['POST', '/v1/issuing/cards', createCard],
    ['POST', '/v1/issuing/cards/:id', updateCard],
    ['GET', '/v1/balance', retrieveBalance],
  ] as const
).map(([method, path, handle]) => ({ method, pattern: compilePath(path), handle }));

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** The explicit routes first, then generic GET (one object or a list) and POST (update) by collection. */
function resolveRoute(method: string, path: string): Handler | undefined {
  for (const route of ROUTES) {
    if (route.method !== method) continue;
    const match = route.pattern.exec(path);
    if (match) {
      const ids = match.slice(1).map(decodeSegment);
      return (ctx) => route.handle(ctx, ids);
    }
  }
  if (!path.startsWith('/v1/')) return undefined;
  const rest = path.slice('/v1/'.length);
  const listType = COLLECTIONS.get(rest);
  if (method === 'GET' && listType) return (ctx) => listObjects(ctx, rest, listType);
  const slash = rest.lastIndexOf('/');
  if (slash <= 0 || slash === rest.length - 1) return undefined;
  const collection = rest.slice(0, slash);
  const id = decodeSegment(rest.slice(slash + 1));
  if (method === 'GET') return (ctx) => retrieveObject(ctx, collection, id);
  const type = COLLECTIONS.get(collection);
  if (method === 'POST' && type) return (ctx) => updateObject(ctx, id, type);
  return undefined;
}

/** `expand[]=latest_charge`, `expand[]=data.cardholder`: replace stored ids by (copies of) the objects. */
function expandFields(target: Json, path: string[], store: BoundedMap<StripeObject>): void {
  const [head, ...rest] = path;
  if (head === undefined) return;
  const value = target[head];
  if (typeof value === 'string') {
    const found = store.get(value);
    if (!found) return;
    const copy: Json = { ...found };
    target[head] = copy;
    expandFields(copy, rest, store);
  } else if (Array.isArray(value)) {
    target[head] = value.map((item: unknown) => {
      if (!isRecord(item)) return item;
      const copy: Json = { ...item };
      expandFields(copy, rest, store);
      return copy;
    });
  } else if (isRecord(value) && rest.length > 0) {
    const copy: Json = { ...value };
    target[head] = copy;
    expandFields(copy, rest, store);
  }
}

function withExpansions(body: Json, expand: ParamValue | undefined, store: BoundedMap<StripeObject>): Json {
  if (!Array.isArray(expand) || expand.length === 0) return body;
  const out: Json = { ...body };
  for (const path of expand) if (typeof path === 'string') expandFields(out, path.split('.'), store);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Auth
// ---------------------------------------------------------------------------------------------

const KEY_FORMAT = /^(sk|rk)_(test|live)_[A-Za-z0-9_]+$/;

function apiKeyFrom(authorization: string | undefined): string | undefined {
  if (!authorization) return undefined;
  const space = authorization.indexOf(' ');
  if (space === -1) return undefined;
  const scheme = authorization.slice(0, space).toLowerCase();
  const credentials = authorization.slice(space + 1).trim();
  if (scheme === 'bearer') return credentials;
  if (scheme !== 'basic') return undefined;
  const decoded = Buffer.from(credentials, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon === -1 ? decoded : decoded.slice(0, colon);
}

/** 'sk_test_abcdefghijkl1234' → 'sk_test_************1234'; short keys are all stars. */
function maskKey(key: string): string {
  const prefix = /^[a-z]{2}_(test|live)_/.exec(key)?.[0] ?? '';
  const secret = key.slice(prefix.length);
  const shown = secret.length > 8 ? secret.slice(-4) : '';
  return prefix + '*'.repeat(Math.min(secret.length - shown.length, 24)) + shown;
}

function authError(key: string | undefined): ApiError {
  const message =
    key === undefined || key === ''
      ? "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/."
      : `Invalid API Key provided: ${maskKey(key)}`;
  return new ApiError(401, { type: 'invalid_request_error', message }, true);
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

interface Answer {
  status: number;
  payload: string | Buffer;
  headers?: Record<string, string>;
}

interface Override {
  method: string;
  pattern: RegExp;
  behaviour: Behaviour;
  remaining: number;
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function overridePayload(behaviour: Behaviour, status: number): string | Buffer {
  const { body } = behaviour;
  if (typeof body === 'string' || Buffer.isBuffer(body)) return body;
  if (body !== undefined) return JSON.stringify(body);
  if (status < 400) return '{}';
  const type = status >= 500 ? 'api_error' : 'invalid_request_error';
  return JSON.stringify({ error: { type, message: `Fake Stripe override: HTTP ${status}` } });
}

class FakeStripeServer implements FakeStripe {
  url = '';
  port = 0;
  readonly requests: RecordedRequest[] = [];
  private readonly server: Server;
  private readonly latencyMs: number;
  private readonly record: boolean;
  private readonly apiKeys: Set<string> | undefined;
  private readonly store: BoundedMap<StripeObject>;
  private readonly idempotent: BoundedMap<IdempotentResult>;
  private overrides: Override[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(options: FakeStripeOptions) {
    this.latencyMs = options.latencyMs ?? 0;
    this.record = options.record ?? true;
    this.apiKeys = options.apiKeys === undefined ? undefined : new Set(options.apiKeys);
    this.store = new BoundedMap(options.maxStored ?? 20_000);
    this.idempotent = new BoundedMap(options.maxStored ?? 20_000);
    this.server = createServer((req, res) => {
      this.onRequest(req, res).catch(() => res.destroy());
    });
    // Longer than the SDK's keep-alive reuse, so benchmarks don't race idle-socket closes.
    this.server.keepAliveTimeout = 65_000;
  }

  listen(port: number, host: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        this.port = (this.server.address() as AddressInfo).port;
        this.url = `http://${host.includes(':') ? `[${host}]` : host}:${this.port}`;
        resolve();
      });
    });
  }

  on(method: string, pathPattern: string | RegExp, behaviour: Behaviour): void {
    const pattern = typeof pathPattern === 'string' ? compilePath(pathPattern) : new RegExp(pathPattern.source, pathPattern.flags.replace(/[gy]/g, ''));
    this.overrides.unshift({ method: method.toUpperCase(), pattern, behaviour, remaining: behaviour.times ?? Infinity });
  }

  reset(): void {
    this.requests.length = 0;
    this.overrides = [];
    this.store.clear();
    this.idempotent.clear();
  }

  put(object: { id: string; object: string; [k: string]: unknown }): void {
    this.store.set(object.id, structuredClone(object));
  }

  get(id: string): Record<string, unknown> | undefined {
    const object = this.store.get(id);
    return object === undefined ? undefined : structuredClone(object);
  }

  stop(): Promise<void> {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections(); // idle keep-alive sockets and hung requests
    });
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req);
    const method = (req.method ?? 'GET').toUpperCase();
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const query = q === -1 ? '' : url.slice(q + 1);
    const hasBody = method === 'POST' || method === 'PUT' || method === 'PATCH';
    const bodyForm = hasBody ? parseFlatForm(body.toString('utf8')) : {};
    const queryForm = parseFlatForm(query);
    if (this.record) {
      const form = hasBody ? bodyForm : queryForm;
      this.requests.push({ method, path, query, headers: { ...req.headers }, body, form, at: Date.now() });
    }

    const requestId = `req_${randomChars(14)}`;
    const override = this.takeOverride(method, path);
    if (override?.action === 'hang') return;
    if (override?.action === 'reset') {
      this.later(this.latencyMs + (override.delayMs ?? 0), () => req.socket.destroy());
      return;
    }
    let answer: Answer;
    const delay = this.latencyMs + (override?.delayMs ?? 0);
    if (override && (override.status !== undefined || override.body !== undefined)) {
      const status = override.status ?? 200;
      answer = { status, payload: overridePayload(override, status) };
    } else {
      answer = this.answer(req, method, path, body, { ...queryForm, ...bodyForm }, requestId);
    }
    const headers = { ...this.standardHeaders(req, requestId), ...answer.headers, ...override?.headers };
    this.later(delay, () => {
      if (res.destroyed || res.writableEnded) return;
      res.writeHead(answer.status, { ...headers, 'Content-Length': String(Buffer.byteLength(answer.payload)) });
      res.end(answer.payload);
    });
  }

  private standardHeaders(req: IncomingMessage, requestId: string): Record<string, string> {
    const headers: Record<string, string> = {
      'Content-Type': 'application/json',
      'Request-Id': requestId,
      'Stripe-Version': headerValue(req.headers['stripe-version']) ?? DEFAULT_STRIPE_VERSION,
    };
    const idempotencyKey = headerValue(req.headers['idempotency-key']);
    if (idempotencyKey !== undefined) headers['Idempotency-Key'] = idempotencyKey;
    return headers;
  }

  private takeOverride(method: string, path: string): Behaviour | undefined {
    const index = this.overrides.findIndex((o) => (o.method === '*' || o.method === method) && o.pattern.test(path));
    const override = this.overrides[index];
    if (!override) return undefined;
    override.remaining -= 1;
    if (override.remaining <= 0) this.overrides.splice(index, 1);
    return override.behaviour;
  }

  /** Normal behaviour: auth, idempotency replay, then the route; first results are kept for replay. */
  private answer(req: IncomingMessage, method: string, path: string, body: Buffer, flat: Record<string, string>, requestId: string): Answer {
    const key = apiKeyFrom(headerValue(req.headers.authorization));
    if (key === undefined || !KEY_FORMAT.test(key) || (this.apiKeys !== undefined && !this.apiKeys.has(key))) {
      return { status: 401, payload: errorPayload(authError(key), requestId, false) };
    }
    const livemode = key.split('_')[1] === 'live';
    const idempotencyKey = method === 'POST' ? headerValue(req.headers['idempotency-key']) : undefined;
    const cacheKey = idempotencyKey === undefined ? undefined : `${key}\u0000${idempotencyKey}`;
    const prior = cacheKey === undefined ? undefined : this.idempotent.get(cacheKey);
    if (prior) {
      if (prior.method === method && prior.path === path && prior.body.equals(body)) {
        return { status: prior.status, payload: prior.payload, headers: { 'Idempotent-Replayed': 'true' } };
      }
      const message = `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${idempotencyKey}' if you meant to execute a different request.`;
      return { status: 400, payload: errorPayload(new ApiError(400, { type: 'idempotency_error', message }, true), requestId, livemode) };
    }

    const { answer, keep } = this.execute(method, path, flat, livemode, requestId);
    if (method === 'POST' && answer.status === 200) this.recordEvents(path, answer.payload, livemode, { id: requestId, idempotency_key: idempotencyKey ?? null });
    if (cacheKey !== undefined && keep) {
      this.idempotent.set(cacheKey, { method, path, body, status: answer.status, payload: answer.payload.toString() });
    }
    return answer;
  }

  private execute(method: string, path: string, flat: Record<string, string>, livemode: boolean, requestId: string): { answer: Answer; keep: boolean } {
    try {
      const params = toParams(flat);
      const handler = resolveRoute(method, path);
      if (!handler) throw unrecognized(method, path);
      const ctx: Ctx = { method, path, params, livemode, now: Math.floor(Date.now() / 1000), store: this.store };
      const result = withExpansions(handler(ctx, []), params.expand, this.store);
      return { answer: { status: 200, payload: JSON.stringify(result) }, keep: true };
    } catch (error) {
      if (error instanceof ApiError) {
        return { answer: { status: error.status, payload: errorPayload(error, requestId, livemode) }, keep: !error.beforeExecution };
      }
      const message = `Fake Stripe failed: ${error instanceof Error ? error.message : String(error)}`;
      return { answer: { status: 500, payload: errorPayload(new ApiError(500, { type: 'api_error', message }, false), requestId, livemode) }, keep: true };
    }
  }

  /** The answer's object as it left (parsed from it: a snapshot later changes to the stored object do not reach). */
  private recordEvents(path: string, payload: string | Buffer, livemode: boolean, request: { id: string; idempotency_key: string | null }): void {
    const object = JSON.parse(payload.toString()) as Json;
    for (const type of eventTypes(path, object)) {
      const event = fixture('event') as StripeObject;
      Object.assign(event, { id: newId('evt'), created: Math.floor(Date.now() / 1000), livemode, data: { object }, request, type, api_version: DEFAULT_STRIPE_VERSION });
      this.store.set(event.id, event);
    }
  }

  private later(ms: number, fn: () => void): void {
    if (ms <= 0) {
      fn();
      return;
    }
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, ms);
    this.timers.add(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// Standalone: node --import tsx test/helpers/fake-stripe.ts [--port N] [--latency-ms N] [--max-stored N]
// ---------------------------------------------------------------------------------------------

function isMainModule(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

async function runStandalone(): Promise<void> {
  const { values } = parseArgs({ options: { port: { type: 'string' }, 'latency-ms': { type: 'string' }, 'max-stored': { type: 'string' } } });
  const fake = await startFakeStripe({
    port: values.port === undefined ? 0 : Number(values.port),
    latencyMs: values['latency-ms'] === undefined ? 0 : Number(values['latency-ms']),
    ...(values['max-stored'] === undefined ? {} : { maxStored: Number(values['max-stored']) }),
    record: false,
  });
  process.stdout.write(`${JSON.stringify({ port: fake.port })}\n`);
  const shutdown = (): void => {
    fake.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
}

if (isMainModule()) {
  runStandalone().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
