// "5 min ago" in the user's locale. Pure: `now` is an argument.

const UNITS = [
  ["year", 365 * 86400],
  ["month", 30 * 86400],
  ["week", 7 * 86400],
  ["day", 86400],
  ["hour", 3600],
  ["minute", 60],
  ["second", 1],
];

/** The unit and signed amount to show for a time `seconds` away (negative: in the past). */
export function relativeParts(seconds) {
  const abs = Math.abs(seconds);
  if (abs < 45) return { value: 0, unit: "second" };
  for (const [unit, size] of UNITS) {
    if (abs >= size) return { value: Math.round(seconds / size) || Math.sign(seconds), unit };
  }
  return { value: 0, unit: "second" };
}

export function relativeTime(date, now, locale) {
  const seconds = (new Date(date).getTime() - new Date(now).getTime()) / 1000;
  const { value, unit } = relativeParts(seconds);
  const fmt = new Intl.RelativeTimeFormat(locale, { numeric: "auto", style: "short" });
  return fmt.format(value, unit);
}
