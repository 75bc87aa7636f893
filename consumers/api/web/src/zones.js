// The time zone the quiet-hours picker starts on. Pure apart from reading the browser's zone.

export function browserZone() {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch {
    return "UTC";
  }
}

/** The zone to preselect: the stored one, unless quiet hours were never set (then the browser's). */
export function initialZone(stored, browser) {
  return stored && (stored.start || stored.timezone !== "UTC") ? stored.timezone : browser;
}
