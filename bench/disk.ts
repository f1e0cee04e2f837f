// The disk's floor under the authorization latency goal: what one durable write costs at a fixed
// rate, with nothing else running. A decision is answered only once its commit is on disk, so a
// request can never be faster than the WAL flush it waits for (group commit lets many share one).
// The file is a 16 MB segment written through once first (as PostgreSQL preallocates its WAL),
// then appended to in pieces of the WAL one decision writes, each followed by fdatasync().
import { closeSync, fdatasyncSync, openSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { percentiles } from './http.js';

const SEGMENT = 16 * 1024 * 1024;
/** WAL bytes per authorization decision, measured with pg_current_wal_lsn() over 5,000 of them. */
const WAL_BYTES_PER_DECISION = 1300;

export interface DiskFigures {
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** `count` writes of WAL_BYTES_PER_DECISION at `perSecond`, each made durable, in `dir`. */
export function durableWrites(dir: string, perSecond: number, count: number): DiskFigures {
  const file = path.join(dir, 'bench-disk-floor');
  const fd = openSync(file, 'w');
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  try {
    const zeros = Buffer.alloc(1024 * 1024);
    for (let at = 0; at < SEGMENT; at += zeros.length) writeSync(fd, zeros, 0, zeros.length, at);
    fdatasyncSync(fd);
    const piece = Buffer.alloc(WAL_BYTES_PER_DECISION, 'w');
    const latencies: number[] = [];
    const started = performance.now();
    for (let i = 0; i < count; i++) {
      const wait = started + (i * 1000) / perSecond - performance.now();
      if (wait > 0) Atomics.wait(sleeper, 0, 0, wait);
      const t0 = performance.now();
      writeSync(fd, piece, 0, piece.length, (i * piece.length) % (SEGMENT - piece.length));
      fdatasyncSync(fd);
      latencies.push(performance.now() - t0);
    }
    const seconds = (performance.now() - started) / 1000;
    const pct = percentiles(latencies);
    return { perSecond: Math.round(count / seconds), p50Ms: pct(0.5), p99Ms: pct(0.99), maxMs: pct(1) };
  } finally {
    closeSync(fd);
    rmSync(file, { force: true });
  }
}
