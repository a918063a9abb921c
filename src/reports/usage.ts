import type { UsageDay, UsageRepository } from '../store/usage.js';

export interface UsageReport {
  since: string;
  until: string;
  /** Enabled users now, by home. */
  homes: Array<{ home: string; enabledUsers: number }>;
  /** Per day and home: active users, peak signed in, messages and bytes. */
  days: UsageDay[];
  totals: { messages: number; bytes: number; peakSignedIn: number };
}

const utcDay = (d: Date) => d.toISOString().slice(0, 10);

/** `parley report usage`: the deployment's tracking metrics from the daily rollup. */
export async function collectUsageReport(
  repo: Pick<UsageRepository, 'days' | 'enabledUsersByHome'>,
  range: { since: Date; until?: Date; unplacedHome: string },
  now = Date.now(),
): Promise<UsageReport> {
  const since = utcDay(range.since);
  // The until day is included when given; otherwise up to today.
  const untilDate = range.until ?? new Date(now);
  const until = utcDay(new Date(Date.parse(utcDay(untilDate)) + 86_400_000));
  const [days, homes] = await Promise.all([
    repo.days(since, until),
    repo.enabledUsersByHome(range.unplacedHome),
  ]);
  return {
    since,
    until: utcDay(untilDate),
    homes,
    days,
    totals: {
      messages: days.reduce((n, d) => n + d.messages, 0),
      bytes: days.reduce((n, d) => n + d.bytes, 0),
      peakSignedIn: days.reduce((n, d) => Math.max(n, d.peakSignedIn), 0),
    },
  };
}

export function renderUsageReport(r: UsageReport): string[] {
  const lines = [`Usage ${r.since} .. ${r.until} (UTC days)`, ''];
  lines.push('DAY         HOME                 ACTIVE  PEAK SIGNED IN  MESSAGES    BYTES');
  for (const d of r.days) {
    lines.push(
      `${d.day}  ${d.home.padEnd(20)} ${String(d.activeUsers).padStart(6)}  ${String(d.peakSignedIn).padStart(14)}  ${String(d.messages).padStart(8)}  ${String(d.bytes).padStart(7)}`,
    );
  }
  if (r.days.length === 0) lines.push('(no usage recorded in this range)');
  lines.push('', 'HOME                 ENABLED USERS');
  for (const h of r.homes) lines.push(`${h.home.padEnd(20)} ${String(h.enabledUsers).padStart(13)}`);
  lines.push(
    '',
    `${r.totals.messages} message(s), ${r.totals.bytes} byte(s); peak ${r.totals.peakSignedIn} signed in at once`,
  );
  return lines;
}

/** RFC 4180 CSV: one row per day and home, enabled users of the home now in its own column. */
export function usageCsv(r: UsageReport): string {
  const enabled = new Map(r.homes.map((h) => [h.home, h.enabledUsers]));
  const quote = (v: string | number) =>
    typeof v === 'number' || !/[",\r\n]/.test(v) ? String(v) : `"${v.replace(/"/g, '""')}"`;
  const rows = [['day', 'home', 'enabled_users', 'active_users', 'peak_signed_in', 'messages', 'bytes']];
  for (const d of r.days)
    rows.push([
      d.day,
      d.home,
      String(enabled.get(d.home) ?? 0),
      String(d.activeUsers),
      String(d.peakSignedIn),
      String(d.messages),
      String(d.bytes),
    ]);
  return `${rows.map((row) => row.map(quote).join(',')).join('\r\n')}\r\n`;
}
