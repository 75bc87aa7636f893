// <herald-inbox api-base="https://herald.example.com" locale="pt-PT">: a bell with the unread
// count and a panel of the newest notifications. The host sets `el.tokenProvider = async () => token`.

import { HeraldClient } from "./api.js";
import { translator } from "./i18n.js";
import { InboxState } from "./pagination.js";
import { LiveStream } from "./stream.js";
import { relativeTime } from "./time.js";

const STYLE = `
:host{--herald-accent:#2251cc;--herald-bg:#fff;--herald-fg:#1f2933;--herald-muted:#616e7c;
--herald-border:#d9dee3;--herald-badge-bg:#d64545;--herald-badge-fg:#fff;--herald-radius:.5rem;
--herald-width:22rem;--herald-font:system-ui,sans-serif;display:inline-block;position:relative;font-family:var(--herald-font)}
button{font:inherit;cursor:pointer}
.bell{position:relative;width:2.5rem;height:2.5rem;border-radius:50%;border:1px solid var(--herald-border);
background:var(--herald-bg);color:var(--herald-fg);display:grid;place-items:center;padding:0}
.bell:focus-visible,button:focus-visible,a:focus-visible{outline:2px solid var(--herald-accent);outline-offset:2px}
.badge{position:absolute;top:-.35rem;right:-.35rem;min-width:1.25rem;height:1.25rem;padding:0 .25rem;box-sizing:border-box;
border-radius:.625rem;background:var(--herald-badge-bg);color:var(--herald-badge-fg);font-size:.75rem;line-height:1.25rem;
text-align:center;font-variant-numeric:tabular-nums}
.badge[data-zero]{visibility:hidden}
.panel{position:absolute;right:0;top:calc(100% + .5rem);width:var(--herald-width);max-height:28rem;display:flex;
flex-direction:column;background:var(--herald-bg);color:var(--herald-fg);border:1px solid var(--herald-border);
border-radius:var(--herald-radius);box-shadow:0 8px 24px rgba(0,0,0,.12);z-index:1000}
.panel[hidden]{display:none}
header{display:flex;align-items:center;justify-content:space-between;padding:.5rem .75rem;border-bottom:1px solid var(--herald-border)}
h2{font-size:1rem;margin:0}
.link{background:none;border:0;color:var(--herald-accent);padding:.25rem}
ul{list-style:none;margin:0;padding:0;overflow-y:auto;flex:1}
li{padding:.6rem .75rem;border-bottom:1px solid var(--herald-border);position:relative}
li[data-unread]{padding-left:1.5rem}
li[data-unread]::before{content:"";position:absolute;left:.6rem;top:1rem;width:.5rem;height:.5rem;border-radius:50%;background:var(--herald-accent)}
.title{font-weight:600;margin:0}.body{margin:.15rem 0;color:var(--herald-fg)}
.meta{display:flex;gap:.5rem;align-items:center;font-size:.8rem;color:var(--herald-muted)}
.meta a{color:var(--herald-accent)}
.status{padding:.75rem;color:var(--herald-muted);text-align:center}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
`;

const BELL = `<svg width="20" height="20" viewBox="0 0 24 24" aria-hidden="true" fill="none" stroke="currentColor"
stroke-width="2"><path d="M18 8a6 6 0 1 0-12 0c0 7-3 9-3 9h18s-3-2-3-9"/><path d="M13.7 21a2 2 0 0 1-3.4 0"/></svg>`;

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function actionUrl(item) {
  const url = item.data?.url ?? item.data?.action_url;
  if (typeof url !== "string") return null;
  try {
    const parsed = new URL(url, location.href);
    return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
  } catch {
    return null;
  }
}

export class HeraldInbox extends HTMLElement {
  static observedAttributes = ["api-base", "locale"];

  constructor() {
    super();
    this._tokenProvider = null;
    this.state = new InboxState();
    const root = this.attachShadow({ mode: "open" });
    root.innerHTML = `<style>${STYLE}</style>
<button class="bell" part="bell" aria-haspopup="dialog" aria-expanded="false">${BELL}<span class="badge" part="badge" data-zero aria-hidden="true">0</span></button>
<div class="panel" part="panel" role="dialog" hidden>
 <header><h2 id="h"></h2><button class="link" data-action="all"></button></header>
 <ul role="list" aria-labelledby="h"></ul>
 <div class="status" role="status"></div>
</div>
<div class="sr" aria-live="polite"></div>`;
    this.$ = (sel) => root.querySelector(sel);
    this.$(".bell").addEventListener("click", () => this.toggle());
    this.$("[data-action=all]").addEventListener("click", () => this.markAllRead());
    this.$("ul").addEventListener("click", (ev) => this.onItemClick(ev));
    root.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape" && this.open) {
        ev.stopPropagation();
        this.close();
      }
    });
    this._outside = (ev) => {
      if (this.open && !ev.composedPath().includes(this)) this.close(false);
    };
  }

  get tokenProvider() {
    return this._tokenProvider;
  }
  set tokenProvider(fn) {
    this._tokenProvider = fn;
    if (this.isConnected) this.restart();
  }
  get open() {
    return !this.$(".panel").hidden;
  }

  connectedCallback() {
    document.addEventListener("click", this._outside);
    this.t = translator(this.getAttribute("locale") || navigator.language);
    this.renderChrome();
    if (this._tokenProvider) this.restart();
  }

  disconnectedCallback() {
    document.removeEventListener("click", this._outside);
    this.live?.stop();
    this.channel?.close();
    clearInterval(this._clock);
  }

  attributeChangedCallback() {
    if (!this.isConnected) return;
    this.t = translator(this.getAttribute("locale") || navigator.language);
    this.renderChrome();
    if (this._tokenProvider) this.restart();
  }

  get locale() {
    return this.getAttribute("locale") || navigator.language;
  }

  renderChrome() {
    this.$("#h").textContent = this.t("notifications");
    this.$("[data-action=all]").textContent = this.t("markAllRead");
    this.$(".panel").setAttribute("aria-label", this.t("notifications"));
    this.renderCount();
  }

  restart() {
    this.live?.stop();
    this.channel?.close();
    this.client = new HeraldClient(this.getAttribute("api-base") || "", this._tokenProvider);
    this.state = new InboxState();
    this._observer?.disconnect();
    this._observer = null;
    this._sentinel = null;
    this.$("ul").replaceChildren();
    // Other tabs of this app tell us what they marked read or archived (same origin only).
    if ("BroadcastChannel" in window) {
      this.channel = new BroadcastChannel(`herald-inbox:${this.client.baseUrl}`);
      this.channel.onmessage = (ev) => this.onPeer(ev.data);
    }
    this.live = new LiveStream(this.client, { onItem: (item) => this.onLive(item), onOpen: () => this.refreshCount() });
    this.live.start();
    this.refreshCount();
    this.loadMore();
    clearInterval(this._clock);
    this._clock = setInterval(() => this.renderTimes(), 30000);
  }

  async refreshCount() {
    try {
      this.state.unread = (await this.client.unreadCount()).unread;
      this.renderCount();
    } catch {
      /* the count stays as it was; the next event or reconnect refreshes it */
    }
  }

  renderCount() {
    const n = this.state.unread;
    const badge = this.$(".badge");
    badge.textContent = n > 99 ? "99+" : String(n);
    badge.toggleAttribute("data-zero", n === 0);
    this.$(".bell").setAttribute("aria-label", this.t("bellLabel", { n }));
    this.setAttribute("data-unread", String(n));
  }

  toggle() {
    if (this.open) this.close();
    else this.show();
  }

  show() {
    this.$(".panel").hidden = false;
    this.$(".bell").setAttribute("aria-expanded", "true");
    this.renderTimes();
    const first = this.$("ul button, ul a");
    (first ?? this.$("[data-action=all]")).focus();
    // Opened before the first page arrived: focus waits on "Mark all read"
    // and moves to the first item when it renders, unless the user moved it.
    this._focusFirstItem = !first;
    this.observeEnd();
  }

  focusFirstItemIfWaiting() {
    const waiting = this._focusFirstItem && this.open && this.shadowRoot.activeElement === this.$("[data-action=all]");
    const first = this.$("ul button, ul a");
    if (waiting && first) first.focus();
    if (first || !this.open) this._focusFirstItem = false;
  }

  close(focusBell = true) {
    this.$(".panel").hidden = true;
    this.$(".bell").setAttribute("aria-expanded", "false");
    if (focusBell) this.$(".bell").focus();
  }

  observeEnd() {
    const list = this.$("ul");
    if (this._observer) return;
    this._observer = new IntersectionObserver(
      (entries) => entries.some((e) => e.isIntersecting) && this.loadMore(),
      { root: list, rootMargin: "80px" },
    );
    this._sentinel = el("li", { "aria-hidden": "true", class: "sentinel", style: "border:0;padding:0;height:1px" });
    list.append(this._sentinel);
    this._observer.observe(this._sentinel);
  }

  async loadMore() {
    if (!this.state.wantsMore()) return;
    this.state.loading = true;
    this.$(".status").textContent = this.t("loading");
    try {
      const page = await this.client.page(this.state.cursor);
      for (const item of this.state.addPage(page)) this.$("ul").insertBefore(this.renderItem(item), this._sentinel ?? null);
      this.$(".status").textContent = this.state.items.length ? "" : this.t("empty");
      this.focusFirstItemIfWaiting();
    } catch {
      this.$(".status").textContent = this.t("loadFailed");
    } finally {
      this.state.loading = false;
    }
    // A short first page may not fill the panel: keep going until it scrolls or the end is reached.
    const list = this.$("ul");
    if (this.open && !this.state.done && list.scrollHeight <= list.clientHeight) this.loadMore();
  }

  renderItem(item) {
    const li = el("li", { "data-id": item.id });
    li.toggleAttribute("data-unread", !item.read_at);
    li.append(el("p", { class: "title" }, item.title));
    if (item.body) li.append(el("p", { class: "body" }, item.body));
    const meta = el("div", { class: "meta" });
    meta.append(el("time", { datetime: item.created_at }, relativeTime(item.created_at, Date.now(), this.locale)));
    if (!item.read_at) meta.append(el("span", { class: "sr" }, this.t("unread")));
    const url = actionUrl(item);
    if (url) meta.append(el("a", { href: url, "data-action": "open" }, this.t("open")));
    if (!item.read_at) meta.append(el("button", { class: "link", "data-action": "read" }, this.t("markRead")));
    meta.append(el("button", { class: "link", "data-action": "archive" }, this.t("archive")));
    li.append(meta);
    return li;
  }

  renderTimes() {
    for (const node of this.shadowRoot.querySelectorAll("time")) {
      node.textContent = relativeTime(node.getAttribute("datetime"), Date.now(), this.locale);
    }
  }

  onLive(item) {
    if (!this.state.addLive(item)) return;
    const list = this.$("ul");
    list.insertBefore(this.renderItem(item), list.firstChild);
    this.$(".status").textContent = "";
    this.renderCount();
    this.$(".sr[aria-live]").textContent = this.t("newItem", { title: item.title });
    this.dispatchEvent(new CustomEvent("herald-notification", { detail: item, bubbles: true, composed: true }));
  }

  async onItemClick(ev) {
    const button = ev.target.closest("[data-action]");
    const li = ev.target.closest("li[data-id]");
    if (!button || !li) return;
    const id = li.dataset.id;
    if (button.dataset.action === "open") {
      this.markRead([id]);
      return;
    }
    ev.preventDefault();
    if (button.dataset.action === "read") await this.markRead([id]);
    if (button.dataset.action === "archive") await this.archive([id]);
  }

  applyRead(ids) {
    this.state.markRead(ids, new Date().toISOString());
    for (const id of ids) {
      const li = this.$(`li[data-id="${CSS.escape(id)}"]`);
      if (li) li.replaceWith(this.renderItem(this.state.items.find((i) => i.id === id)));
    }
    this.renderCount();
  }

  applyRemoved(ids) {
    this.state.remove(ids);
    for (const id of ids) this.$(`li[data-id="${CSS.escape(id)}"]`)?.remove();
    this.renderCount();
  }

  async markRead(ids) {
    const focusNext = this.shadowRoot.activeElement?.closest("li");
    await this.client.markRead(ids);
    this.applyRead(ids);
    if (focusNext) this.$(`li[data-id="${CSS.escape(ids[0])}"] button`)?.focus();
    this.channel?.postMessage({ type: "read", ids });
    this.refreshCount();
  }

  async markAllRead() {
    await this.client.markAllRead();
    this.applyRead(this.state.items.map((i) => i.id));
    this.state.unread = 0;
    this.renderCount();
    this.channel?.postMessage({ type: "read-all" });
  }

  async archive(ids) {
    const li = this.$(`li[data-id="${CSS.escape(ids[0])}"]`);
    const next = li?.nextElementSibling?.querySelector("button, a") ?? this.$("[data-action=all]");
    await this.client.archive(ids);
    this.applyRemoved(ids);
    if (this.open) next.focus();
    this.channel?.postMessage({ type: "archived", ids });
    this.refreshCount();
  }

  onPeer(msg) {
    if (msg?.type === "read") this.applyRead(msg.ids);
    else if (msg?.type === "archived") this.applyRemoved(msg.ids);
    else if (msg?.type === "read-all") this.applyRead(this.state.items.map((i) => i.id));
    this.refreshCount();
  }
}
