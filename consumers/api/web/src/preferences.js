// <herald-preferences api-base="…">: category × channel switches, the email digest switch, quiet
// hours with a time zone.
// Changes are shown at once (optimistic) and rolled back, with a visible error, if the save fails.

import { HeraldClient } from "./api.js";
import { translator } from "./i18n.js";
import { browserZone, initialZone } from "./zones.js";

const STYLE = `
:host{--herald-accent:#2251cc;--herald-fg:#1f2933;--herald-muted:#616e7c;--herald-border:#d9dee3;
--herald-error:#b42318;--herald-font:system-ui,sans-serif;display:block;font-family:var(--herald-font);color:var(--herald-fg)}
table{border-collapse:collapse;width:100%}th,td{padding:.4rem .6rem;border-bottom:1px solid var(--herald-border);text-align:center}
th[scope=row]{text-align:left;font-weight:600}
input:focus-visible,select:focus-visible,button:focus-visible{outline:2px solid var(--herald-accent);outline-offset:2px}
.lock{color:var(--herald-muted);font-size:.8rem;display:block;font-weight:400}
fieldset{border:1px solid var(--herald-border);border-radius:.5rem;margin:1rem 0;padding:.75rem}
label{margin-right:.75rem}button{font:inherit;padding:.35rem .9rem;cursor:pointer}
.error{color:var(--herald-error)}.ok{color:var(--herald-muted)}
`;

export class HeraldPreferences extends HTMLElement {
  static observedAttributes = ["api-base", "locale"];

  constructor() {
    super();
    this._tokenProvider = null;
    const root = this.attachShadow({ mode: "open" });
    root.innerHTML = `<style>${STYLE}</style><section aria-labelledby="ph"><h2 id="ph"></h2>
<p class="error" role="alert" hidden></p><table><thead></thead><tbody></tbody></table>
<fieldset class="digest"><legend></legend></fieldset><fieldset class="quiet"><legend></legend></fieldset></section>`;
    this.$ = (sel) => root.querySelector(sel);
  }

  set tokenProvider(fn) {
    this._tokenProvider = fn;
    if (this.isConnected) this.load();
  }
  get tokenProvider() {
    return this._tokenProvider;
  }

  connectedCallback() {
    if (this._tokenProvider) this.load();
  }
  attributeChangedCallback() {
    if (this.isConnected && this._tokenProvider) this.load();
  }

  showError(text) {
    const box = this.$(".error");
    box.textContent = text;
    box.hidden = !text;
  }

  async load() {
    this.t = translator(this.getAttribute("locale") || navigator.language);
    this.client = new HeraldClient(this.getAttribute("api-base") || "", this._tokenProvider);
    this.$("#ph").textContent = this.t("preferences");
    try {
      const [prefs, quiet] = await Promise.all([this.client.preferences(), this.client.quietHours()]);
      this.renderTable(prefs.preferences);
      this.renderDigest(prefs.digest !== false);
      this.renderQuiet(quiet);
      this.showError("");
    } catch (err) {
      this.showError(this.t("saveFailed", { reason: err.message }));
    }
  }

  renderTable(prefs) {
    const channels = [...new Set(prefs.map((p) => p.channel))];
    const categories = [...new Set(prefs.map((p) => p.category))];
    const head = document.createElement("tr");
    head.innerHTML = `<th scope="col"></th>`;
    head.firstChild.textContent = this.t("category");
    for (const ch of channels) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = this.t(`channel_${ch}`);
      head.append(th);
    }
    this.$("thead").replaceChildren(head);
    const rows = categories.map((cat) => {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = cat;
      tr.append(th);
      const locked = prefs.some((p) => p.category === cat && p.locked);
      if (locked) {
        const why = document.createElement("span");
        why.className = "lock";
        why.id = `lock-${cat}`;
        why.textContent = this.t("locked", { category: cat });
        th.append(why);
      }
      for (const ch of channels) tr.append(this.renderCell(prefs.find((p) => p.category === cat && p.channel === ch)));
      return tr;
    });
    this.$("tbody").replaceChildren(...rows);
  }

  renderCell(pref) {
    const td = document.createElement("td");
    if (!pref) {
      td.textContent = "—";
      return td;
    }
    const box = document.createElement("input");
    box.type = "checkbox";
    box.setAttribute("role", "switch");
    box.checked = pref.enabled;
    box.dataset.category = pref.category;
    box.dataset.channel = pref.channel;
    box.setAttribute("aria-label", `${pref.category} · ${this.t(`channel_${pref.channel}`)}`);
    if (pref.locked) {
      box.disabled = true;
      box.setAttribute("aria-describedby", `lock-${pref.category}`);
    }
    box.addEventListener("change", () => this.save(box));
    td.append(box);
    return td;
  }

  async save(box) {
    const wanted = box.checked; // optimistic: the switch already shows it
    try {
      await this.client.setPreferences([{ category: box.dataset.category, channel: box.dataset.channel, enabled: wanted }]);
      this.showError("");
      this.dispatchEvent(new CustomEvent("herald-saved", { bubbles: true, composed: true }));
    } catch (err) {
      box.checked = !wanted;
      this.showError(this.t("saveFailed", { reason: err.message }));
    }
  }

  renderDigest(on) {
    const set = this.$(".digest");
    set.innerHTML = `<legend></legend><label><input type="checkbox" role="switch" name="digest"> <span></span></label>`;
    set.querySelector("legend").textContent = this.t("digest");
    set.querySelector("span").textContent = this.t("digestEnabled");
    const box = set.querySelector("input");
    box.checked = on;
    box.addEventListener("change", () => this.saveDigest(box));
  }

  async saveDigest(box) {
    const wanted = box.checked; // optimistic, like the category switches
    try {
      await this.client.setDigest(wanted);
      this.showError("");
      this.dispatchEvent(new CustomEvent("herald-saved", { bubbles: true, composed: true }));
    } catch (err) {
      box.checked = !wanted;
      this.showError(this.t("saveFailed", { reason: err.message }));
    }
  }

  renderQuiet(quiet) {
    const set = this.$(".quiet");
    const zone = initialZone(quiet, browserZone());
    const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [zone];
    if (!zones.includes(zone)) zones.unshift(zone);
    set.innerHTML = `<legend></legend>
<label><input type="checkbox" name="on"> <span data-t="quietEnabled"></span></label><br>
<label><span data-t="from"></span> <input type="time" name="start" value="22:00"></label>
<label><span data-t="to"></span> <input type="time" name="end" value="07:00"></label>
<label><span data-t="timezone"></span> <select name="tz"></select></label>
<button type="button" name="save"></button> <span class="ok" role="status"></span>`;
    set.querySelector("legend").textContent = this.t("quietHours");
    for (const span of set.querySelectorAll("[data-t]")) span.textContent = this.t(span.dataset.t);
    const select = set.querySelector("select");
    select.append(...zones.map((z) => new Option(z, z, false, z === zone)));
    set.querySelector("[name=on]").checked = Boolean(quiet.start);
    if (quiet.start) set.querySelector("[name=start]").value = quiet.start;
    if (quiet.end) set.querySelector("[name=end]").value = quiet.end;
    const button = set.querySelector("[name=save]");
    button.textContent = this.t("save");
    button.addEventListener("click", () => this.saveQuiet());
  }

  async saveQuiet() {
    const set = this.$(".quiet");
    const on = set.querySelector("[name=on]").checked;
    const body = {
      timezone: set.querySelector("select").value,
      start: on ? set.querySelector("[name=start]").value : null,
      end: on ? set.querySelector("[name=end]").value : null,
    };
    const status = set.querySelector(".ok");
    try {
      await this.client.setQuietHours(body);
      status.textContent = this.t("saved");
      this.showError("");
    } catch (err) {
      status.textContent = "";
      this.showError(this.t("saveFailed", { reason: err.message }));
    }
  }
}
