// A closed loop driven by wrk (https://github.com/wg/wrk, `apt install wrk`) when it is installed:
// a C client that costs this machine a fraction of autocannon's CPU per request, which matters when
// the load generator shares the gateway's two cores. Every request is distinct (pre-signed, sent in
// order, never twice): a run that would reach the end of the list is refused, not wrapped around.
import { execFileSync, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export function wrkInstalled(): boolean {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
    return true;
  } catch (error) {
    // wrk --version prints its usage and exits 1; only a missing binary is ENOENT.
    return (error as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

export interface WrkRun {
  total: number;
  seconds: number;
  p50Ms: number;
  p99Ms: number;
  approved: number;
  failMode: number;
  /** CPU time wrk used, ms. */
  clientCpuMs: number;
}

// One wrk thread (requests are taken in order from one list), answers counted by content.
const SCRIPT = (file: string) => `
local requests, next, threads = {}, 0, {}
approved, failmode = 0, 0
setup = function(thread)
  table.insert(threads, thread)
end
init = function()
  for line in io.lines(${JSON.stringify(file)}) do
    local signature, body = line:match("^([^\\t]*)\\t(.*)$")
    requests[#requests + 1] = wrk.format("POST", "/webhooks/stripe", { ["Content-Type"] = "application/json", ["Stripe-Signature"] = signature }, body)
  end
end
request = function()
  next = next % #requests + 1
  return requests[next]
end
response = function(status, headers, body)
  if body:find('"approved":true', 1, true) then approved = approved + 1 end
  if body:find('fail_mode', 1, true) then failmode = failmode + 1 end
end
-- done() runs in wrk's main Lua state: the counts are the threads'.
done = function(summary, latency)
  for _, thread in ipairs(threads) do
    approved = approved + thread:get("approved")
    failmode = failmode + thread:get("failmode")
  end
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), approved, failmode))
end
`;

/**
 * `connections` keep-alive connections POSTing `requests` to /webhooks/stripe on `port` for
 * `seconds`. Throws if the run answered every request (it would have sent some twice) or any
 * answer was not 200.
 */
export async function wrkClosedLoop(port: number, requests: { body: string; signature: string }[], connections: number, seconds: number): Promise<WrkRun> {
  const dir = await mkdtemp(path.join(tmpdir(), 'spendgate-wrk-'));
  try {
    const list = path.join(dir, 'requests.tsv');
    // Line by line: a fast run's list outgrows the longest string V8 can make (~512 MB).
    await pipeline(Readable.from(requests).map((r: { body: string; signature: string }) => `${r.signature}\t${r.body}\n`), createWriteStream(list));
    const script = path.join(dir, 'loop.lua');
    await writeFile(script, SCRIPT(list));
    // `times` prints the CPU the shell's children (wrk) used.
    const child = spawn('sh', ['-c', 'wrk "$@" && times', 'sh', '-t1', `-c${connections}`, `-d${seconds}s`, '-s', script, `http://127.0.0.1:${port}`]);
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    const result = /RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)/.exec(out);
    if (code !== 0 || !result) throw new Error(`wrk failed (exit ${code}): ${out.slice(-500)}`);
    const [total, durationUs, p50Us, p99Us, approved, failMode] = result.slice(1).map(Number) as [number, number, number, number, number, number];
    const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
    if (non2xx > 0) throw new Error(`wrk: ${non2xx} answers were not 200`);
    if (total >= requests.length) throw new Error(`wrk answered all ${requests.length} prepared requests in ${seconds} s: raise BENCH_AUTHORIZATIONS`);
    // The output ends with `times`: the shell's user and system time, then its children's.
    const times = [...out.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60_000 + Number(m[2]) * 1000);
    const [childUser = 0, childSystem = 0] = times.slice(-2);
    return { total, seconds: durationUs / 1e6, p50Ms: p50Us / 1000, p99Ms: p99Us / 1000, approved, failMode, clientCpuMs: childUser + childSystem };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
