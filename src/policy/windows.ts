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

export function windowBounds(window: Window, now: Date, timezone: string): WindowBounds {
  const local = DateTime.fromJSDate(now, { zone: timezone });
  if (!local.isValid) throw new Error(`invalid time zone "${timezone}"`);
  const start = local.startOf(unit[window]);
  const end = start.plus({ [unit[window]]: 1 });
  return { start: start.toJSDate(), end: end.toJSDate() };
}

/** Local weekday ("mon".."sun") and minute of the day, for time_window rules. */
export function localClock(now: Date, timezone: string): { day: string; minute: number } {
  const local = DateTime.fromJSDate(now, { zone: timezone });
  const days = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
  return { day: days[local.weekday - 1] ?? 'mon', minute: local.hour * 60 + local.minute };
}
