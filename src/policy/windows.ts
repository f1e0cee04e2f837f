// Calendar windows in the agent's time zone: an hour, a day, an ISO week (Monday first) or a
// month, as [start, end) instants. DST days are 23 or 25 hours long, exactly as the calendar says.
import { DateTime, IANAZone } from 'luxon';
import type { Window } from './model.js';

const unit = { hourly: 'hour', daily: 'day', weekly: 'week', monthly: 'month' } as const;

export interface WindowBounds {
  start: Date;
  end: Date;
}

export function isTimeZone(zone: string): boolean {
  return IANAZone.isValidZone(zone);
}

// Calendar arithmetic in a zone costs ~100 µs; the answer holds for the whole window, so the last
// window per (zone, kind) is remembered. Same inputs, same output: decide() stays a pure function.
const lastWindow = new Map<string, WindowBounds>();

export function windowBounds(window: Window, now: Date, timezone: string): WindowBounds {
  const cacheKey = `${timezone}|${window}`;
  const cached = lastWindow.get(cacheKey);
  const t = now.getTime();
  if (cached && cached.start.getTime() <= t && t < cached.end.getTime()) return cached;
  const local = DateTime.fromJSDate(now, { zone: timezone });
  if (!local.isValid) throw new Error(`invalid time zone "${timezone}"`);
  const start = local.startOf(unit[window]);
  const bounds = { start: start.toJSDate(), end: start.plus({ [unit[window]]: 1 }).toJSDate() };
  if (lastWindow.size > 10_000) lastWindow.clear();
  lastWindow.set(cacheKey, bounds);
  return bounds;
}

const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
const hourStarts = new Map<string, { day: string; minute: number }>();

/**
 * Local weekday ("mon".."sun") and minute of the day, for time_window rules. Offsets only change on
 * hour boundaries, so the local clock at the start of the hour plus the minutes since is exact.
 */
export function localClock(now: Date, timezone: string): { day: string; minute: number } {
  const hour = windowBounds('hourly', now, timezone);
  const key = `${timezone}|${hour.start.getTime()}`;
  let start = hourStarts.get(key);
  if (!start) {
    const local = DateTime.fromJSDate(hour.start, { zone: timezone });
    start = { day: DAYS[local.weekday - 1] ?? 'mon', minute: local.hour * 60 + local.minute };
    if (hourStarts.size > 10_000) hourStarts.clear();
    hourStarts.set(key, start);
  }
  return { day: start.day, minute: start.minute + Math.floor((now.getTime() - hour.start.getTime()) / 60_000) };
}
