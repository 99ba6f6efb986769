// Sprayer WebSocket client: a plain ES module, no build step.
//
//   import { SprayerClient } from "https://push.example.com/sprayer-client.js";
//   const client = new SprayerClient({ url: "wss://push.example.com/v1/ws", getToken });
//   client.addEventListener("message", (event) => { show(event.detail); client.ack(event.detail.id); });
//   client.connect();
//
// Options:
//   url        the deliverer's /v1/ws URL (default: the origin this module came from)
//   token      a token from POST /v1/users/{user}/ws-token, or
//   getToken   async () => token, called before every connect (tokens expire; sockets do not)
//   app        the app id the page expects; a token of another app is refused (close 4003)
//   autoAck    ack every message as soon as it is dispatched (default false: call ack yourself)
//
// Events (EventTarget): "open" (detail: the hello frame), "message" (detail: {id, seq, title,
// body, data, created_at, expires_at}), "acked" (detail: ids), "state" (detail: connecting |
// open | reconnecting | closed), "close" (detail: {code, reason, willReconnect}), "error".
//
// A message is dispatched once per page even when the server sends it again (it was not acked
// in time); acks are sent again after a reconnect until the server confirms them.
//
// The user's own preferences, over HTTP with the same token (no socket needed):
//   const { preferences, categories } = await client.preferences.get();
//   await client.preferences.set({ channels: { sms: false }, categories: { news: { enabled: false } } });
// Both resolve to {user, preferences, categories: [{key, required, description}]}; a refusal
// rejects with an Error whose `problem` is the server's problem+json (its `field` names the
// input at fault).
//
// The notification centre (the user's history with seen, read and archived state), same token:
//   await client.inbox.list({ state: "unread", limit: 20 });   // {items, next_cursor, counts}
//   await client.inbox.counts();                               // {unread, unseen, total}
//   await client.inbox.markRead(id); await client.inbox.markAllRead();
//   (also markSeen, markUnread, archive, and setState({ids | all | before, seen, read, archived}))
// Events: "counts" (detail {unread, unseen, total}) after connecting, after each new message and
// after every change made on any device; "inboxstate" (detail [{id, seen, read, archived}]).

const FATAL = new Set([4001, 4003]);
const EXPIRED = 4002;
const SEEN_LIMIT = 10000;

export class SprayerClient extends EventTarget {
  constructor(options = {}) {
    super();
    const origin = new URL(import.meta.url);
    const scheme = origin.protocol === "https:" ? "wss:" : "ws:";
    this.url = options.url || `${scheme}//${origin.host}/v1/ws`;
    this.token = options.token || null;
    this.getToken = options.getToken || null;
    this.app = options.app || null;
    this.autoAck = Boolean(options.autoAck);
    this.minBackoffMs = options.minBackoffMs ?? 500;
    this.maxBackoffMs = options.maxBackoffMs ?? 15000;
    this.state = "closed";
    this.socket = null;
    this.stopped = true;
    this.attempt = 0;
    this.seen = new Map(); // id -> acked by the page (true/false), in arrival order
    this.unconfirmed = new Set(); // acked by the page, not yet confirmed by the server
    this.flushTimer = null;
    this.watchdog = null;
    this.lastFrameAt = 0;
    this.preferences = {
      get: () => this.#preferences("GET"),
      set: (preferences) => this.#preferences("PUT", preferences),
    };
    this.countsTimer = null;
    const state = (request) => this.#http("POST", "/v1/inbox/state", request);
    const ids = (some) => ({ ids: [].concat(some) });
    this.inbox = {
      list: ({ state: filter = "active", cursor, limit } = {}) => {
        const query = new URLSearchParams({ state: filter });
        if (cursor) query.set("cursor", cursor);
        if (limit) query.set("limit", String(limit));
        return this.#http("GET", `/v1/inbox?${query}`);
      },
      counts: () => this.#http("GET", "/v1/inbox/counts"),
      markSeen: (some) => state({ ...ids(some), seen: true }),
      markRead: (some) => state({ ...ids(some), read: true }),
      markUnread: (some) => state({ ...ids(some), read: false }),
      archive: (some) => state({ ...ids(some), archived: true }),
      markAllRead: () => state({ all: true, read: true }),
      setState: state,
    };
  }

  /** Opens the socket; reconnects on its own until close() is called. */
  connect() {
    this.stopped = false;
    this.#open();
  }

  /** Closes the socket for good. */
  close() {
    this.stopped = true;
    this.#clearTimers();
    if (this.socket) this.socket.close(1000, "bye");
    this.#setState("closed");
  }

  /** Marks messages received: they leave the inbox and their feedback becomes delivered. */
  ack(ids) {
    for (const id of [].concat(ids)) {
      this.seen.set(id, true);
      this.unconfirmed.add(id);
    }
    if (!this.flushTimer) this.flushTimer = setTimeout(() => this.#flushAcks(), 20);
  }

  async #currentToken() {
    return this.getToken ? await this.getToken() : this.token;
  }

  /** A user route of the node over HTTP with the token; rejects with the problem. */
  async #http(method, path, body) {
    const token = await this.#currentToken();
    const base = new URL(this.url);
    base.protocol = base.protocol === "wss:" ? "https:" : "http:";
    const response = await fetch(new URL(path, base), {
      method,
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const answer = await response.json();
    if (!response.ok) {
      const error = new Error(answer.detail || `${method} ${path}: HTTP ${response.status}`);
      error.problem = answer;
      throw error;
    }
    return answer;
  }

  async #preferences(method, preferences) {
    const token = await this.#currentToken();
    const payload = JSON.parse(atob(String(token).split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    const path = `/v1/users/${encodeURIComponent(payload.sub)}/preferences`;
    return this.#http(method, path, method === "PUT" ? preferences || {} : undefined);
  }

  #requestCounts() {
    if (this.countsTimer) return;
    this.countsTimer = setTimeout(() => {
      this.countsTimer = null;
      if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send('{"type":"counts"}');
    }, 200); // a live message may come a moment before its store ends: ask once it has
  }

  async #open() {
    this.#setState(this.attempt === 0 ? "connecting" : "reconnecting");
    let token = this.token;
    if (this.getToken) {
      try {
        token = await this.getToken();
      } catch (error) {
        this.dispatchEvent(new CustomEvent("error", { detail: error }));
        return this.#retry();
      }
    }
    if (this.stopped) return;
    const url = new URL(this.url);
    url.searchParams.set("token", token || "");
    if (this.app) url.searchParams.set("app", this.app);
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.onmessage = (event) => this.#onFrame(event.data);
    socket.onerror = () => this.dispatchEvent(new CustomEvent("error", { detail: "socket error" }));
    socket.onclose = (event) => this.#onClose(socket, event);
  }

  #onFrame(text) {
    this.lastFrameAt = Date.now();
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    switch (frame.type) {
      case "hello":
        this.attempt = 0;
        this.#setState("open");
        this.#startWatchdog(frame.heartbeat_ms || 25000);
        this.#flushAcks();
        this.dispatchEvent(new CustomEvent("open", { detail: frame }));
        break;
      case "message":
        this.#onMessage(frame.seq, frame.message);
        break;
      case "counts":
        this.counts = { unread: frame.unread, unseen: frame.unseen, total: frame.total };
        this.dispatchEvent(new CustomEvent("counts", { detail: this.counts }));
        break;
      case "state":
        this.dispatchEvent(new CustomEvent("inboxstate", { detail: frame.changes }));
        break;
      case "acked":
        for (const id of frame.ids) this.unconfirmed.delete(id);
        this.dispatchEvent(new CustomEvent("acked", { detail: frame.ids }));
        break;
      case "error":
        this.dispatchEvent(new CustomEvent("error", { detail: frame }));
        break;
      default:
        break;
    }
  }

  #onMessage(seq, message) {
    if (this.seen.has(message.id)) {
      // Sent again because no ack reached the inbox: ack again if the page already did.
      if (this.seen.get(message.id)) this.ack(message.id);
      return;
    }
    this.seen.set(message.id, false);
    if (this.seen.size > SEEN_LIMIT) this.seen.delete(this.seen.keys().next().value);
    this.dispatchEvent(new CustomEvent("message", { detail: { seq, ...message } }));
    if (this.autoAck) this.ack(message.id);
    this.#requestCounts();
  }

  #flushAcks() {
    clearTimeout(this.flushTimer);
    this.flushTimer = null;
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN || this.state !== "open") return;
    const ids = [...this.unconfirmed];
    for (let start = 0; start < ids.length; start += 1000) {
      this.socket.send(JSON.stringify({ type: "ack", ids: ids.slice(start, start + 1000) }));
    }
  }

  #startWatchdog(heartbeatMs) {
    clearInterval(this.watchdog);
    this.watchdog = setInterval(() => {
      if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return;
      if (Date.now() - this.lastFrameAt > heartbeatMs * 2.5) {
        this.socket.close(4000, "no answer from the server");
        return;
      }
      this.socket.send('{"type":"ping"}');
    }, heartbeatMs);
  }

  #onClose(socket, event) {
    if (socket !== this.socket) return;
    this.#clearTimers();
    const fatal = FATAL.has(event.code) && !this.getToken;
    const expired = event.code === EXPIRED && !this.getToken;
    const willReconnect = !this.stopped && !fatal && !expired;
    this.dispatchEvent(
      new CustomEvent("close", { detail: { code: event.code, reason: event.reason, willReconnect } }),
    );
    if (willReconnect) {
      this.#retry(event.code === 1012);
    } else {
      this.stopped = true;
      this.#setState("closed");
    }
  }

  #retry(soon = false) {
    if (this.stopped) return;
    this.attempt += 1;
    this.#setState("reconnecting");
    const ceiling = Math.min(this.maxBackoffMs, this.minBackoffMs * 2 ** Math.min(this.attempt, 8));
    const delay = soon ? Math.random() * this.minBackoffMs : ceiling / 2 + Math.random() * (ceiling / 2);
    setTimeout(() => this.#open(), delay);
  }

  #clearTimers() {
    clearInterval(this.watchdog);
    this.watchdog = null;
  }

  #setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: state }));
  }
}
