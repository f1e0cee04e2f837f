// CPU time spent by processes, from /proc (Linux): per-request costs that neighbours on a shared
// VM disturb less than throughput does.
import { readFileSync, readdirSync } from 'node:fs';

/**
 * CPU time of a process so far (utime + stime), in ms; undefined off Linux. With `reaped`, also
 * that of its children that exited and were waited for (cutime + cstime).
 */
export function cpuMs(pid: number | undefined, reaped = false): number | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    const ticks = Number(fields[11]) + Number(fields[12]) + (reaped ? Number(fields[13]) + Number(fields[14]) : 0);
    return (ticks * 1000) / 100; // clock ticks (USER_HZ 100)
  } catch {
    return undefined;
  }
}

/**
 * CPU time of every PostgreSQL process so far, in ms: backends come and go, so a backend that
 * exited counts through its postmaster, which reaped it (compare totals).
 */
export function postgresCpuMs(): number {
  let total = 0;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (!stat.includes('(postgres)')) continue;
      total += cpuMs(Number(pid), true) ?? 0;
    } catch {
      // gone
    }
  }
  return total;
}

/** The machine's CPU time so far from /proc/stat, in clock ticks: all of it, and what the hypervisor stole. */
export interface MachineTicks {
  total: number;
  steal: number;
}

export function machineTicks(): MachineTicks | undefined {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]?.trim().split(/\s+/).slice(1).map(Number) ?? [];
    // user nice system idle iowait irq softirq steal (guest time is already inside user)
    return { total: fields.slice(0, 8).reduce((a, b) => a + b, 0), steal: fields[7] ?? 0 };
  } catch {
    return undefined;
  }
}

/** The share of the machine's CPU time the hypervisor stole between two marks, in percent. */
export function stealPercent(before: MachineTicks | undefined, after: MachineTicks | undefined): number | undefined {
  if (!before || !after || after.total <= before.total) return undefined;
  return Math.round(((after.steal - before.steal) * 100) / (after.total - before.total));
}
