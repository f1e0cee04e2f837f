// What the benchmarks share: a keep-alive JSON POST and percentiles of measured latencies.
import http from 'node:http';

export function post(agent: http.Agent, port: number, path: string, headers: Record<string, string>, body: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers } }, (res) => {
      let data = '';
      res.on('data', (c) => (data += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: data }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Resolves once something answers HTTP on the port (any status), within 60 s. */
export async function waitForPort(port: number, path = '/'): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      await fetch(`http://127.0.0.1:${port}${path}`);
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`nothing listening on ${port}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** Sorts `samples` (ms) in place and reads percentiles from them, rounded to `digits`. */
export function percentiles(samples: number[], digits = 2): (p: number) => number {
  samples.sort((a, b) => a - b);
  return (p) => Number((samples[Math.min(samples.length - 1, Math.floor(samples.length * p))] ?? 0).toFixed(digits));
}
