// Live notifications over Server-Sent Events. Each connection is opened with a fresh single-use
// ticket (EventSource cannot send Authorization), so the browser's own reconnect (which would
// reuse the spent ticket) is replaced by ours: close, wait a backoff, mint, reopen with the last
// event id so the server replays what was missed.

import { backoffDelay } from "./backoff.js";

export class LiveStream {
  constructor(client, { onItem, onOpen, rand = Math.random } = {}) {
    this.client = client;
    this.onItem = onItem;
    this.onOpen = onOpen;
    this.rand = rand;
    this.lastEventId = null;
    this.attempt = 0;
    this.source = null;
    this.timer = null;
    this.stopped = true;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.source?.close();
    this.source = null;
  }

  async connect() {
    if (this.stopped) return;
    let ticket;
    try {
      ({ ticket } = await this.client.streamTicket());
    } catch {
      this.retry();
      return;
    }
    if (this.stopped) return;
    const source = new EventSource(this.client.streamUrl(ticket, this.lastEventId));
    this.source = source;
    source.onopen = () => {
      this.attempt = 0;
      this.onOpen?.();
    };
    source.addEventListener("notification", (ev) => {
      if (ev.lastEventId) this.lastEventId = ev.lastEventId;
      this.onItem?.(JSON.parse(ev.data));
    });
    source.onerror = () => {
      source.close();
      if (this.source === source) this.retry();
    };
  }

  retry() {
    if (this.stopped) return;
    const delay = backoffDelay(this.attempt, this.rand());
    this.attempt += 1;
    this.timer = setTimeout(() => this.connect(), delay);
  }
}
