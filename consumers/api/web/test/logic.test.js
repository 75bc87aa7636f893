import { test } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay } from "../src/backoff.js";
import { localeChain, resolveLocale, translator } from "../src/i18n.js";
import { InboxState } from "../src/pagination.js";
import { relativeParts, relativeTime } from "../src/time.js";
import { initialZone } from "../src/zones.js";

test("relative time: unit boundaries", () => {
  const cases = [
    [-10, 0, "second"],
    [-50, -50, "second"],
    [-60, -1, "minute"],
    [-300, -5, "minute"],
    [-3599, -60, "minute"],
    [-3600, -1, "hour"],
    [-86400 * 2, -2, "day"],
    [-86400 * 8, -1, "week"],
    [-86400 * 40, -1, "month"],
    [-86400 * 400, -1, "year"],
    [120, 2, "minute"],
  ];
  for (const [seconds, value, unit] of cases) assert.deepEqual(relativeParts(seconds), { value, unit }, String(seconds));
});

test("relative time in the user's locale", () => {
  const now = Date.parse("2026-12-01T12:00:00Z");
  assert.equal(relativeTime("2026-12-01T11:55:00Z", now, "en"), "5 min. ago");
  assert.equal(relativeTime("2026-12-01T11:55:00Z", now, "pt-PT"), "há 5 min");
  assert.equal(relativeTime("2026-12-01T11:59:50Z", now, "en"), "now");
  assert.equal(relativeTime("2026-11-30T12:00:00Z", now, "en"), "yesterday");
});

test("locale fallback follows the templates' chain", () => {
  assert.deepEqual(localeChain("pt_br", "en"), ["pt-BR", "pt", "en"]);
  assert.deepEqual(localeChain("", "en"), ["en"]);
  assert.deepEqual(localeChain("!!", "en"), ["en"]);
  assert.equal(resolveLocale("pt-BR"), "pt");
  assert.equal(resolveLocale("de-DE"), "en");
  assert.equal(translator("pt-PT")("bellLabel", { n: 3 }), "Notificações, 3 por ler");
  assert.equal(translator("fr")("bellLabel", { n: 1 }), "Notifications, 1 unread");
});

test("pagination: pages append, duplicates dropped, end detected", () => {
  const s = new InboxState();
  assert.ok(s.wantsMore());
  assert.equal(s.addPage({ items: [{ id: "a" }, { id: "b" }], next_cursor: "c1" }).length, 2);
  assert.equal(s.cursor, "c1");
  assert.equal(s.done, false);
  // a live item that also arrives in a later page is listed once
  assert.ok(s.addLive({ id: "z", read_at: null }));
  assert.equal(s.addLive({ id: "z", read_at: null }), false);
  assert.equal(s.addPage({ items: [{ id: "b" }, { id: "z" }, { id: "c" }], next_cursor: null }).length, 1);
  assert.deepEqual(s.items.map((i) => i.id), ["z", "a", "b", "c"]);
  assert.ok(s.done);
  assert.equal(s.wantsMore(), false);
  s.loading = true;
  assert.equal(s.wantsMore(), false);
});

test("pagination: read and archive keep the unread count right", () => {
  const s = new InboxState();
  s.addPage({ items: [{ id: "a", read_at: null }, { id: "b", read_at: null }, { id: "c", read_at: "x" }], next_cursor: null });
  s.unread = 2;
  assert.equal(s.markRead(["a", "a", "c"], "t"), 1);
  assert.equal(s.unread, 1);
  assert.equal(s.remove(["b", "c"]), 2);
  assert.equal(s.unread, 0);
  s.addLive({ id: "d", read_at: null });
  assert.equal(s.unread, 1);
  s.markAllRead("t");
  assert.equal(s.unread, 0);
  assert.ok(s.items.every((i) => i.read_at));
});

test("reconnect backoff: immediate first, exponential ceiling, capped, jittered", () => {
  assert.equal(backoffDelay(0, 0.9), 0);
  assert.equal(backoffDelay(1, 1), 500);
  assert.equal(backoffDelay(2, 1), 1000);
  assert.equal(backoffDelay(4, 1), 4000);
  assert.equal(backoffDelay(20, 1), 30000);
  assert.equal(backoffDelay(3, 0.5), 1000);
  assert.equal(backoffDelay(3, 0), 0);
  for (let a = 1; a < 30; a++) assert.ok(backoffDelay(a, 0.999) <= 30000);
});

test("time zone picker defaults to the browser's zone until quiet hours were set", () => {
  assert.equal(initialZone({ timezone: "UTC", start: null, end: null }, "Europe/Lisbon"), "Europe/Lisbon");
  assert.equal(initialZone({ timezone: "UTC", start: "22:00", end: "07:00" }, "Europe/Lisbon"), "UTC");
  assert.equal(initialZone({ timezone: "America/Sao_Paulo", start: null, end: null }, "Europe/Lisbon"), "America/Sao_Paulo");
});
