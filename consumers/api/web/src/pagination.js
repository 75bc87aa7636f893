// The inbox list's state: keyset pages appended, live items prepended, no duplicates. Pure.

export class InboxState {
  constructor() {
    this.items = [];
    this.cursor = null;
    this.done = false;
    this.loading = false;
    this.unread = 0;
  }

  /** Whether the next page should be fetched now (not while one is in flight, not past the end). */
  wantsMore() {
    return !this.loading && !this.done;
  }

  /** Append a page; returns the items that were new. */
  addPage(page) {
    const seen = new Set(this.items.map((i) => i.id));
    const fresh = page.items.filter((i) => !seen.has(i.id));
    this.items.push(...fresh);
    this.cursor = page.next_cursor;
    this.done = page.next_cursor == null;
    return fresh;
  }

  /** A live item: at the top, once; returns false when it was already listed. */
  addLive(item) {
    if (this.items.some((i) => i.id === item.id)) return false;
    this.items.unshift(item);
    if (!item.read_at) this.unread += 1;
    return true;
  }

  markRead(ids, at) {
    const wanted = new Set(ids);
    let changed = 0;
    for (const item of this.items) {
      if (wanted.has(item.id) && !item.read_at) {
        item.read_at = at;
        changed += 1;
      }
    }
    this.unread = Math.max(0, this.unread - changed);
    return changed;
  }

  markAllRead(at) {
    for (const item of this.items) item.read_at = item.read_at ?? at;
    this.unread = 0;
  }

  remove(ids) {
    const gone = new Set(ids);
    const before = this.items.length;
    const unreadGone = this.items.filter((i) => gone.has(i.id) && !i.read_at).length;
    this.items = this.items.filter((i) => !gone.has(i.id));
    this.unread = Math.max(0, this.unread - unreadGone);
    return before - this.items.length;
  }
}
