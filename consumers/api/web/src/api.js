// The Herald API as the components use it. The token comes from the host's callback on every
// call (the host refreshes it), so it never sits in HTML or in a URL.

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
  }
}

export class HeraldClient {
  constructor(baseUrl, tokenProvider) {
    this.baseUrl = String(baseUrl || "").replace(/\/+$/, "");
    this.tokenProvider = tokenProvider;
  }

  async request(method, path, body) {
    if (typeof this.tokenProvider !== "function") throw new ApiError(0, "no tokenProvider set");
    const token = await this.tokenProvider();
    const headers = { Authorization: `Bearer ${token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(this.baseUrl + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = res.status === 204 ? null : await res.json().catch(() => null);
    if (!res.ok) throw new ApiError(res.status, data?.detail || data?.title);
    return data;
  }

  page(cursor, limit = 20) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (cursor) q.set("cursor", cursor);
    return this.request("GET", `/v1/inbox?${q}`);
  }
  unreadCount() {
    return this.request("GET", "/v1/inbox/unread-count");
  }
  markRead(ids) {
    return this.request("POST", "/v1/inbox/read", { ids });
  }
  markAllRead() {
    return this.request("POST", "/v1/inbox/read-all");
  }
  archive(ids) {
    return this.request("POST", "/v1/inbox/archive", { ids });
  }
  streamTicket() {
    return this.request("POST", "/v1/stream-tickets");
  }
  preferences() {
    return this.request("GET", "/v1/preferences");
  }
  setPreferences(changes) {
    return this.request("PUT", "/v1/preferences", { preferences: changes });
  }
  setDigest(on) {
    return this.request("PUT", "/v1/preferences", { digest: on });
  }
  quietHours() {
    return this.request("GET", "/v1/quiet-hours");
  }
  setQuietHours(body) {
    return this.request("PUT", "/v1/quiet-hours", body);
  }
  streamUrl(ticket, lastEventId) {
    const q = new URLSearchParams({ ticket });
    if (lastEventId) q.set("last_event_id", lastEventId);
    return `${this.baseUrl}/v1/stream?${q}`;
  }
}
