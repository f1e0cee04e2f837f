// Mirror settlements the database cannot take: retried in the background while it is unavailable,
// never for other errors, waited for by a capture's look-up, and abandoned (named) when the
// gateway stops.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import type { Ledger } from '../../src/ledger/ledger.js';
import { Settlements } from '../../src/mirror/settlements.js';

const unavailable = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });

/** A ledger whose settle() fails `failures` times with `error`, then succeeds; it counts calls. */
function flakyLedger(failures: number, error: () => Error = unavailable) {
  const calls: { key: string; defer: boolean | undefined }[] = [];
  const ledger = {
    settle: async (_agentId: string, key: string, _status: string, options?: { defer?: boolean }) => {
      calls.push({ key, defer: options?.defer });
      if (calls.length <= failures) throw error();
      return 'committed';
    },
    flush: async () => undefined,
  } as unknown as Ledger;
  return { ledger, calls };
}

function memoryLog() {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  return { log, lines };
}

test('when the database is unavailable, then the settlement is retried without deferral until it lands, and flush() waits for it', async () => {
  const { ledger, calls } = flakyLedger(2);
  const settlements = new Settlements(ledger);
  const { log, lines } = memoryLog();
  await settlements.settle(log, 'agent_a', 'key-1', 'committed', { defer: true });
  assert.equal(settlements.pending, 1, 'the caller is not held up');
  await settlements.flush('agent_a');
  assert.equal(settlements.pending, 0);
  assert.deepEqual(calls, [{ key: 'key-1', defer: true }, { key: 'key-1', defer: false }, { key: 'key-1', defer: false }]);
  assert.ok(lines.some((l) => l.msg === 'settlement retried and recorded'));
});

test('when the settlement fails for another reason, then the caller gets the error and nothing is retried', async () => {
  const { ledger, calls } = flakyLedger(1, () => new Error('a bug'));
  const settlements = new Settlements(ledger);
  await assert.rejects(settlements.settle(memoryLog().log, 'agent_a', 'key-1', 'committed', {}), /a bug/);
  assert.equal(settlements.pending, 0);
  assert.equal(calls.length, 1);
});

test('when the gateway stops while a settlement is being retried, then the retry ends and the log names it', async () => {
  const { ledger, calls } = flakyLedger(Infinity);
  const settlements = new Settlements(ledger);
  const { log, lines } = memoryLog();
  await settlements.settle(log, 'agent_a', 'key-9', 'unknown', {});
  assert.equal(settlements.pending, 1);
  const started = performance.now();
  await settlements.stop();
  assert.ok(performance.now() - started < 1000, 'stop() does not wait out the backoff');
  assert.equal(settlements.pending, 0);
  const attempts = calls.length;
  const given = lines.find((l) => l.msg === 'settlement given up; the reservation stays counted as reserved');
  assert.equal(given?.idempotency_key, 'key-9');
  assert.equal(given?.status, 'unknown');
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(calls.length, attempts, 'no attempt after stop()');
  // After stop, a settlement the database cannot take fails to the caller (it logs it) at once.
  await assert.rejects(settlements.settle(log, 'agent_a', 'key-10', 'committed', {}), /ECONNREFUSED/);
  assert.equal(settlements.pending, 0);
});
