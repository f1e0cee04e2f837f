// Passthrough calls are streamed, not buffered: a real gateway in front of a small node:http
// "Stripe" written here, which sends large answers in chunks, can hold them after the first chunk,
// watches its own writes for backpressure, and can die mid-body. The agent is a plain node:http
// client (to see each byte as it arrives) or the official stripe SDK.
// Guards src/mirror/forward.ts `passthrough` (onHeaders/onData/onError and the agent's close) and
// `relayedHeaders`, reached through src/mirror/routes.ts's `other` classification.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { after, before, test } from 'node:test';
import Stripe from 'stripe';
import { agentWithPolicy, startTestGateway } from '../helpers/gateway.js';
import type { TestGateway } from '../helpers/gateway.js';

const KIB = 1024;
const MIB = 1024 * KIB;
const UPSTREAM_KEY = 'sk_test_streaming';
/** A hang must show up as a failed assertion here, long before undici's own timeout could end it. */
const STRIPE_TIMEOUT_MS = 120_000;
/** How long the agent waits for something that a streaming gateway delivers at once (a bound, not a measure). */
const PATIENCE_MS = 15_000;
/** Names that describe one hop: each side frames its own connection. */
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding']);
const MAX = { rule_id: 'max', rule_type: 'max_amount', description: 'At most $50', parameters: { limit: 50, currency: 'USD' } };

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

// ---------------------------------------------------------------------------------------------
// The fake Stripe: one route per test, answered by `pump`.
// ---------------------------------------------------------------------------------------------

/** The test's "go": Stripe holds its answer after the first chunk until it is opened. */
interface Gate {
  opened: Promise<void>;
  isOpen: boolean;
  open(): void;
}

function gate(): Gate {
  let release: () => void = () => undefined;
  const g: Gate = {
    opened: new Promise<void>((resolve) => (release = resolve)),
    isOpen: false,
    open() {
      g.isOpen = true;
      release();
    },
  };
  return g;
}

interface Answer {
  /** Raw headers as Stripe sends them (name, value, …), case and order as given. */
  headers: string[];
  body: Buffer;
  chunk?: number;
  /** Stripe writes its first chunk, then waits for this. */
  hold?: Gate;
  /** Stripe's socket is destroyed once this many body bytes were written. */
  dieAfter?: number;
}

/** What Stripe's side of one answer saw. */
interface Progress {
  request?: http.IncomingMessage;
  /** Body bytes handed to res.write so far. */
  written: number;
  /** res.write returned false (Stripe's socket is backed up). */
  refused: number;
  /** 'drain' events Stripe waited for and got. */
  drains: number;
  /** Stripe is waiting for a 'drain' right now. */
  waiting: boolean;
  finished: boolean;
  died: boolean;
  /** Stripe's response closed before it was ended (the gateway hung up on Stripe). */
  cutOff: boolean;
  arrived: Promise<void>;
  /** Settles when Stripe is done with the answer, whichever way. */
  done: Promise<void>;
  /** Called after every write. */
  onWrite?: () => void;
}

let upstream: http.Server;
let upstreamUrl = '';
const routes = new Map<string, (req: http.IncomingMessage, res: http.ServerResponse) => void>();

/** Answers the next request for `url` with `answer`; what Stripe's side saw is in the result. */
function serve(url: string, answer: Answer): Progress {
  let arrived: () => void = () => undefined;
  let done: () => void = () => undefined;
  const progress: Progress = {
    written: 0, refused: 0, drains: 0, waiting: false, finished: false, died: false, cutOff: false,
    arrived: new Promise<void>((resolve) => (arrived = resolve)),
    done: new Promise<void>((resolve) => (done = resolve)),
  };
  routes.set(url, (req, res) => {
    routes.delete(url);
    progress.request = req;
    arrived();
    res.on('close', () => {
      if (!res.writableFinished) progress.cutOff = true;
      done();
    });
    pump(res, answer, progress).then(done, done);
  });
  return progress;
}

/** Resolves true on 'drain', false if the response closes first. */
function drained(res: http.ServerResponse): Promise<boolean> {
  return new Promise((resolve) => {
    const onDrain = () => settle(true);
    const onClose = () => settle(false);
    const settle = (value: boolean) => {
      res.off('drain', onDrain);
      res.off('close', onClose);
      resolve(value);
    };
    res.on('drain', onDrain);
    res.on('close', onClose);
  });
}

async function pump(res: http.ServerResponse, answer: Answer, progress: Progress): Promise<void> {
  res.writeHead(200, answer.headers);
  const size = answer.chunk ?? 64 * KIB;
  let offset = 0;
  while (offset < answer.body.length) {
    if (res.destroyed) return;
    if (answer.dieAfter !== undefined && offset >= answer.dieAfter) {
      progress.died = true;
      res.socket?.destroy();
      return;
    }
    const piece = answer.body.subarray(offset, offset + size);
    const ok = res.write(piece);
    offset += piece.length;
    progress.written = offset;
    progress.onWrite?.();
    if (!ok) progress.refused++;
    if (offset === piece.length && answer.hold) await answer.hold.opened;
    if (res.writableNeedDrain) {
      progress.waiting = true;
      const ok = await drained(res);
      progress.waiting = false;
      if (!ok) return;
      progress.drains++;
    }
  }
  res.end();
  progress.finished = true;
}

// ---------------------------------------------------------------------------------------------
// The agent's side
// ---------------------------------------------------------------------------------------------

/** Rejects with `message` unless `promise` settles within PATIENCE_MS. */
async function within<T>(promise: Promise<T>, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(message)), PATIENCE_MS);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A plain GET to the gateway; resolves on the response's status line and headers. */
function get(path: string, key: string): { request: http.ClientRequest; response: Promise<http.IncomingMessage> } {
  const request = http.get(`${gw.agentUrl}${path}`, { agent: false, headers: { authorization: `Bearer ${key}` } });
  const response = new Promise<http.IncomingMessage>((resolve, reject) => {
    request.once('response', resolve);
    request.once('error', reject);
  });
  return { request, response };
}

/** The first body bytes to arrive (at least `atLeast` of them), leaving the response paused. */
function firstBytes(res: http.IncomingMessage, atLeast: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      length += chunk.length;
      if (length < atLeast) return;
      res.pause();
      res.off('data', onData);
      res.off('error', reject);
      resolve(Buffer.concat(chunks));
    };
    res.on('data', onData);
    res.once('error', reject);
  });
}

interface Received {
  bytes: Buffer;
  /** The body arrived whole (node saw the framing's end). */
  complete: boolean;
  error?: Error;
}

/** Everything left in the response, however it ends (end, abort, reset). */
function rest(res: http.IncomingMessage, onChunk?: (chunk: Buffer) => void): Promise<Received> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let error: Error | undefined;
    res.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      onChunk?.(chunk);
    });
    res.on('error', (e) => (error = e));
    res.once('close', () => resolve({ bytes: Buffer.concat(chunks), complete: res.complete, ...(error ? { error } : {}) }));
    res.resume();
  });
}

/** Header pairs minus those of one hop; case and order kept. */
function endToEnd(raw: string[]): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (let i = 0; i < raw.length; i += 2) {
    if (!HOP.has((raw[i] as string).toLowerCase())) pairs.push([raw[i] as string, raw[i + 1] as string]);
  }
  return pairs;
}

// ---------------------------------------------------------------------------------------------

let gw: TestGateway;
let key = '';

before(async () => {
  upstream = http.createServer((req, res) => {
    const route = routes.get(req.url ?? '');
    if (route) return route(req, res);
    res.writeHead(404, { 'content-type': 'application/json', 'request-id': 'req_no_route' });
    res.end(JSON.stringify({ error: { type: 'invalid_request_error', message: `no route for ${req.method} ${req.url} in this test` } }));
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  gw = await startTestGateway({ STRIPE_SECRET_KEY: UPSTREAM_KEY, STRIPE_API_BASE: upstreamUrl, STRIPE_TIMEOUT_MS: String(STRIPE_TIMEOUT_MS) });
  key = (await agentWithPolicy(gw, [MAX])).key;
});

after(async () => {
  await gw.stop();
  upstream.closeAllConnections();
  await new Promise((resolve) => upstream.close(resolve));
});

/** A file's bytes, as Stripe's file contents would be. */
function fileHeaders(requestId: string, length: number): string[] {
  return [
    'Date', 'Mon, 02 Mar 2026 10:00:00 GMT',
    'Content-Type', 'application/pdf',
    'Content-Length', String(length),
    'Content-Disposition', 'attachment; filename="statement.pdf"',
    'Request-Id', requestId,
    'Stripe-Version', '2026-02-25.clover',
    'Cache-Control', 'no-cache, no-store',
    'Access-Control-Expose-Headers', 'Request-Id, Stripe-Manage-Version',
    'Vary', 'Origin',
    'Vary', 'Accept-Encoding',
    'X-Stripe-Routing-Context-Priority-Tier', 'api-testmode',
  ];
}

/** A list of charges as Stripe writes it (no Content-Length: chunked). */
function listHeaders(requestId: string): string[] {
  return [
    'Date', 'Mon, 02 Mar 2026 10:00:01 GMT',
    'Content-Type', 'application/json',
    'Request-Id', requestId,
    'Stripe-Version', '2026-02-25.clover',
    'Cache-Control', 'no-cache, no-store',
    'Stripe-Should-Retry', 'false',
  ];
}

/** `count` charges, each padded to about `padding` bytes: a big list that is still Stripe's JSON. */
function chargeList(count: number, padding: number): Buffer {
  const data = Array.from({ length: count }, (_, i) => ({
    id: `ch_stream_${String(i).padStart(4, '0')}`,
    object: 'charge',
    amount: 1000 + i,
    currency: 'usd',
    livemode: false,
    status: 'succeeded',
    metadata: { note: randomBytes(Math.floor((padding * 3) / 4)).toString('base64') },
  }));
  return Buffer.from(JSON.stringify({ object: 'list', url: '/v1/charges', has_more: true, data }));
}

test('a 40 MB passthrough GET reaches the agent while Stripe is still sending it: status, headers and first bytes, then every byte', { timeout: 120_000 }, async () => {
  const body = randomBytes(40 * MIB);
  const hold = gate();
  const headers = fileHeaders('req_streamfile0001', body.length);
  const stripe = serve('/v1/files/file_big/contents', { headers, body, chunk: 64 * KIB, hold });
  try {
    const { response } = get('/v1/files/file_big/contents', key);
    const res = await within(response, 'no status line reached the agent while Stripe held its answer after the first chunk: the gateway buffers passthrough answers');
    assert.equal(hold.isOpen, false);
    assert.equal(stripe.finished, false);
    assert.equal(res.statusCode, 200);
    // Every header Stripe sent, name case, order and duplicates kept; only the hop's own differ.
    assert.deepEqual(endToEnd(res.rawHeaders), endToEnd(headers));
    assert.equal(res.headers['request-id'], 'req_streamfile0001');
    assert.equal(res.headers['content-length'], String(body.length));
    // The real key reached Stripe, never the agent's.
    assert.equal(stripe.request?.headers.authorization, `Bearer ${UPSTREAM_KEY}`);

    const first = await within(firstBytes(res, 1), 'no body bytes reached the agent while Stripe held its answer after the first chunk: the gateway buffers passthrough answers');
    assert.equal(hold.isOpen, false, 'the first bytes came before Stripe was let go');
    assert.equal(stripe.written, 64 * KIB, 'Stripe had written its first chunk only');
    assert.ok(first.length <= 64 * KIB);
    assert.ok(first.equals(body.subarray(0, first.length)), 'the first bytes are the body\'s first bytes');

    hold.open();
    const tail = await within(rest(res), 'the rest of the body did not arrive');
    const received = Buffer.concat([first, tail.bytes]);
    assert.equal(tail.error, undefined);
    assert.equal(tail.complete, true);
    assert.equal(received.length, body.length);
    assert.equal(sha256(received), sha256(body), 'byte-identical');
    await stripe.done;
    assert.equal(stripe.finished, true);
  } finally {
    hold.open();
  }
});

test('a slow agent holds Stripe back: the gateway reads no further ahead of the agent than socket buffers (backpressure, no buffering)', { timeout: 120_000 }, async (t) => {
  const body = chargeList(100, 480 * KIB); // ~48 MB: GET /v1/charges?limit=100 with heavy metadata
  const headers = listHeaders('req_streamlist0001');
  const stripe = serve('/v1/charges?limit=100', { headers, body, chunk: 64 * KIB });
  // How far Stripe's writes ran ahead of what the agent had read, at worst.
  let read = 0;
  let ahead = 0;
  stripe.onWrite = () => {
    ahead = Math.max(ahead, stripe.written - read);
  };
  const { response } = get('/v1/charges?limit=100', key);
  const res = await within(response, 'no status line reached the agent');
  assert.equal(res.statusCode, 200);
  assert.deepEqual(endToEnd(res.rawHeaders), endToEnd(headers));
  assert.equal(res.headers['transfer-encoding'], 'chunked');

  // The agent reads nothing: Stripe must come to a stop, blocked on a 'drain' that does not come,
  // long before the end of the body. (A gateway that read Stripe's answer into memory would let
  // Stripe write all of it.) Stopped = waiting for 'drain' with nothing written for a full second.
  let last = -1;
  let still = 0;
  await within(
    (async () => {
      while (!stripe.finished && still < 20) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        still = stripe.waiting && stripe.written === last ? still + 1 : 0;
        last = stripe.written;
      }
    })(),
    'Stripe neither stopped nor finished',
  );
  assert.equal(stripe.finished, false, `Stripe wrote all ${body.length} bytes while the agent read none: the gateway buffered the answer`);
  assert.ok(stripe.refused > 0, 'Stripe\'s writes met backpressure');
  assert.ok(stripe.written <= body.length / 2, `Stripe got ${stripe.written} of ${body.length} bytes out while the agent read none`);
  const drainsWhileStopped = stripe.drains;
  const stoppedAt = stripe.written;

  // Now the agent reads, slowly: a pause every 256 KiB. Each pause backs Stripe up again.
  let sincePause = 0;
  const received = await within(
    rest(res, (chunk) => {
      read += chunk.length;
      sincePause += chunk.length;
      if (sincePause >= 256 * KIB) {
        sincePause = 0;
        res.pause();
        setTimeout(() => res.resume(), 2);
      }
    }),
    'the body did not arrive once the agent read it',
  );
  assert.equal(received.error, undefined);
  assert.equal(received.complete, true);
  assert.equal(received.bytes.length, body.length);
  assert.equal(sha256(received.bytes), sha256(body), 'byte-identical');
  const list = JSON.parse(received.bytes.toString('utf8')) as { object: string; data: unknown[] };
  assert.equal(list.object, 'list');
  assert.equal(list.data.length, 100);
  await stripe.done;
  assert.equal(stripe.finished, true);
  // Stripe went on only as the agent read: it waited for 'drain' again and again after the stop.
  assert.ok(stripe.drains > drainsWhileStopped, `drains: ${drainsWhileStopped} when stopped, ${stripe.drains} at the end`);
  assert.ok(stripe.written > stoppedAt);
  assert.ok(ahead <= body.length / 2, `Stripe was at most ${ahead} bytes ahead of the agent (the body is ${body.length})`);
  t.diagnostic(`backpressure: Stripe stopped at ${stoppedAt} bytes, at most ${ahead} ahead of the agent, ${stripe.refused} writes refused, ${stripe.drains} drains (body ${body.length})`);
});

test('the stripe SDK: a streamed quote PDF is handed to the agent before Stripe finished it; a list\'s headers and first bytes reach the SDK\'s socket before Stripe finished it', { timeout: 120_000 }, async () => {
  /** The SDK's own connections, with every byte that arrives on them. */
  class WatchedAgent extends http.Agent {
    received = '';
    override createConnection(options: http.ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
      const socket = super.createConnection(options, callback);
      socket?.on('data', (chunk: Buffer) => (this.received += chunk.toString('latin1')));
      return socket;
    }
  }
  const agent = new WatchedAgent({ keepAlive: false });
  const sdk = new Stripe(key, { host: '127.0.0.1', port: gw.agentPort, protocol: 'http', maxNetworkRetries: 0, httpAgent: agent });

  // A streaming SDK method: the SDK resolves with the response stream as soon as headers arrive.
  const pdf = randomBytes(2 * MIB);
  const pdfHold = gate();
  const pdfHeaders = fileHeaders('req_streampdf0001', pdf.length);
  const pdfStripe = serve('/v1/quotes/qt_stream/pdf', { headers: pdfHeaders, body: pdf, chunk: 32 * KIB, hold: pdfHold });
  try {
    const stream = (await within(sdk.quotes.pdf('qt_stream'), 'the SDK got no response while Stripe held the PDF after its first chunk: the gateway buffers')) as unknown as http.IncomingMessage & { requestId?: string };
    assert.equal(pdfHold.isOpen, false);
    assert.equal(pdfStripe.finished, false);
    assert.equal(stream.statusCode, 200);
    assert.equal(stream.requestId, 'req_streampdf0001', 'the SDK reads Stripe\'s Request-Id');
    assert.deepEqual(endToEnd(stream.rawHeaders), endToEnd(pdfHeaders));
    const first = await within(firstBytes(stream, 1), 'no PDF bytes reached the SDK while Stripe held its answer');
    assert.equal(pdfHold.isOpen, false);
    assert.ok(first.equals(pdf.subarray(0, first.length)));
    pdfHold.open();
    const tail = await within(rest(stream), 'the rest of the PDF did not arrive');
    assert.equal(tail.complete, true);
    assert.equal(sha256(Buffer.concat([first, tail.bytes])), sha256(pdf));
    assert.equal(pdfStripe.request?.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
  } finally {
    pdfHold.open();
  }

  // A normal-size JSON call: the SDK parses the whole answer, but its socket already has Stripe's
  // status, headers and first bytes while Stripe still holds the rest.
  const list = chargeList(100, 600);
  const listHold = gate();
  const headers = listHeaders('req_streamsdk0001');
  const listStripe = serve('/v1/charges?limit=100', { headers, body: list, chunk: 8 * KIB, hold: listHold });
  agent.received = '';
  try {
    const call = sdk.charges.list({ limit: 100 });
    const early = within(
      (async () => {
        while (!agent.received.includes('"object":"list"')) await new Promise((resolve) => setTimeout(resolve, 10));
      })(),
      'Stripe\'s first bytes did not reach the SDK\'s socket while Stripe held the rest: the gateway buffers',
    );
    await early;
    assert.equal(listHold.isOpen, false);
    assert.equal(listStripe.finished, false);
    assert.match(agent.received, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(agent.received, /\r\nRequest-Id: req_streamsdk0001\r\n/);
    assert.match(agent.received, /\r\nStripe-Version: 2026-02-25\.clover\r\n/);
    listHold.open();
    const charges = await within(call, 'the SDK call did not finish');
    assert.equal(charges.data.length, 100);
    assert.equal(charges.data[99]?.id, 'ch_stream_0099');
    assert.equal(charges.has_more, true);
    assert.equal(charges.lastResponse.requestId, 'req_streamsdk0001');
    assert.equal(charges.lastResponse.statusCode, 200);
    assert.equal(charges.lastResponse.headers['stripe-version'], '2026-02-25.clover');
    assert.equal(charges.lastResponse.headers['stripe-should-retry'], 'false');
    assert.equal(listStripe.request?.method, 'GET');
    assert.equal(listStripe.request?.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
    await listStripe.done;
    assert.equal(listStripe.finished, true);
  } finally {
    listHold.open();
    agent.destroy();
  }
});

for (const framing of ['content-length', 'chunked'] as const) {
  test(`Stripe dying mid-body (${framing}): the agent's connection is cut, neither left hanging nor ended as if whole; the gateway serves the next call`, { timeout: 120_000 }, async () => {
    const body = randomBytes(8 * MIB);
    const headers = framing === 'content-length' ? fileHeaders('req_streamdies0001', body.length) : listHeaders('req_streamdies0001');
    const stripe = serve('/v1/files/file_dies/contents', { headers, body, chunk: 64 * KIB, dieAfter: 1 * MIB });
    const { response } = get('/v1/files/file_dies/contents', key);
    const res = await within(response, 'no status line reached the agent');
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['request-id'], 'req_streamdies0001');
    const received = await within(rest(res), 'the agent\'s connection was left open after Stripe died mid-body');
    assert.equal(stripe.died, true);
    assert.equal(received.complete, false, 'a cut answer must not look whole to the agent');
    assert.ok(received.error, 'the agent sees an error, not a clean end');
    assert.ok(received.bytes.length <= 1 * MIB, `the agent got ${received.bytes.length} bytes of the 1 MiB Stripe sent`);
    assert.ok(received.bytes.equals(body.subarray(0, received.bytes.length)), 'what arrived is the body\'s start, nothing else');

    // The gateway is still fine: the next call (a fresh connection to a fresh Stripe socket) is whole.
    const next = randomBytes(3 * MIB);
    const nextHeaders = fileHeaders('req_streamnext0001', next.length);
    const after = serve('/v1/files/file_next/contents', { headers: nextHeaders, body: next, chunk: 64 * KIB });
    const second = get('/v1/files/file_next/contents', key);
    const nextRes = await within(second.response, 'the gateway did not answer the next call');
    assert.equal(nextRes.statusCode, 200);
    assert.deepEqual(endToEnd(nextRes.rawHeaders), endToEnd(nextHeaders));
    const whole = await within(rest(nextRes), 'the next call\'s body did not arrive');
    assert.equal(whole.complete, true);
    assert.equal(sha256(whole.bytes), sha256(next));
    await after.done;
    assert.equal(after.finished, true);
  });
}

test('an agent that hangs up mid-body: the gateway drops its Stripe connection instead of leaving it stalled, and serves the next call', { timeout: 120_000 }, async () => {
  const body = randomBytes(32 * MIB);
  const headers = fileHeaders('req_streamgone0001', body.length);
  const stripe = serve('/v1/files/file_gone/contents', { headers, body, chunk: 64 * KIB });
  const { request, response } = get('/v1/files/file_gone/contents', key);
  request.on('error', () => undefined); // the agent's own hang-up
  const res = await within(response, 'no status line reached the agent');
  res.on('error', () => undefined);
  await within(firstBytes(res, 512 * KIB), 'no body reached the agent');
  request.destroy();
  // undici, told by the gateway, closes Stripe's connection: Stripe's answer closes unfinished.
  await within(stripe.done, 'Stripe\'s connection was left open (stalled) after the agent hung up');
  assert.equal(stripe.cutOff, true);
  assert.equal(stripe.finished, false);
  assert.ok(stripe.written < body.length);

  const next = chargeList(10, 1000);
  const after = serve('/v1/charges?limit=10', { headers: listHeaders('req_streamnext0002'), body: next, chunk: 4 * KIB });
  const second = get('/v1/charges?limit=10', key);
  const nextRes = await within(second.response, 'the gateway did not answer the next call');
  assert.equal(nextRes.statusCode, 200);
  assert.equal(nextRes.headers['request-id'], 'req_streamnext0002');
  const whole = await within(rest(nextRes), 'the next call\'s body did not arrive');
  assert.equal(whole.complete, true);
  assert.equal(sha256(whole.bytes), sha256(next));
  await after.done;
  assert.equal(after.finished, true);
});
