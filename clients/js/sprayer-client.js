// Sprayer browser client: a plain ES module, no build step, no dependencies.
//
//   import { SprayerClient } from "@sprayer/client";          // or the node's /sprayer-client.js
//   const client = new SprayerClient({ url: "wss://push.example.com/v1/ws", getToken });
//   client.addEventListener("message", (event) => { show(event.detail); client.ack(event.detail.id); });
//   client.connect();
//
// Options:
//   url         the deliverer's /v1/ws URL (default: the origin this module came from; required
//               outside a browser)
//   token       a token from POST /v1/users/{user}/ws-token, or
//   getToken    async () => token, called before every connect (tokens expire; connections do not)
//   app         the app id the page expects; a token of another app is refused (close 4003)
//   autoAck     ack every message as soon as it is dispatched (default false: call ack yourself)
//   transports  the order to try: ["websocket", "sse", "poll"] (default). One the environment
//               lacks is skipped; one that fails to open twice in a row gives way to the next.
//
// Events (EventTarget): "open" (detail: {transport, user?, node?}), "message" (detail: {id, seq,
// title, body, data, created_at, expires_at}), "acked" (detail: ids), "state" (detail:
// connecting | open | reconnecting | closed), "close" (detail: {code, reason, willReconnect}),
// "counts" (detail: {unread, unseen, total}), "inboxstate" (detail: [{id, seen, read,
// archived}]), "error".
//
// The transports give the same guarantees: messages in inbox order, each dispatched once per
// page even when the server sends it again (it was not acked in time); acks (over the socket,
// else over HTTP) are sent again after a reconnect until the server confirms them; a reconnect
// asks only for what came after the last message received.
//
// The user's own preferences, over HTTP with the same token:
//   const { preferences, categories } = await client.preferences.get();
//   await client.preferences.set({ channels: { sms: false }, categories: { news: { enabled: false } } });
// Both resolve to {user, preferences, categories: [{key, required, description}]}; a refusal
// rejects with an Error whose `problem` is the server's problem+json (its `field` names the
// input at fault).
//
// The notification centre (the user's history with seen, read and archived state):
//   await client.inbox.list({ state: "unread", limit: 20 });   // {items, next_cursor, counts}
//   await client.inbox.counts();                               // {unread, unseen, total}
//   await client.inbox.markRead(id); await client.inbox.markAllRead();
//   (also markSeen, markUnread, archive, and setState({ids | all | before, seen, read, archived}))
// "counts" comes after connecting, after each new message and after every change made on any
// device.

const FATAL = new Set([4001, 4003]);
const EXPIRED = 4002;
const SEEN_LIMIT = 10000;
const TRANSPORTS = ["websocket", "sse", "poll"];
const AVAILABLE = {
  websocket: () => typeof WebSocket !== "undefined",
  sse: () => typeof EventSource !== "undefined",
  poll: () => typeof fetch !== "undefined",
};

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
    this.transports = (options.transports || TRANSPORTS).filter((name) => AVAILABLE[name]?.());
    this.transportIndex = 0;
    this.transport = null;
    this.state = "closed";
    this.socket = null;
    this.source = null;
    this.poller = null;
    this.stopped = true;
    this.attempt = 0;
    this.failedOpens = 0;
    this.cursor = null; // the seq of the last message received
    this.lastToken = null;
    this.seen = new Map(); // id -> acked by the page (true/false), in arrival order
    this.unconfirmed = new Set(); // acked by the page, not yet confirmed by the server
    this.flushTimer = null;
    this.watchdog = null;
    this.lastFrameAt = 0;
    this.countsTimer = null;
    this.countsAgainTimer = null;
    this.counts = null;
    this.preferences = {
      get: () => this.#preferences("GET"),
      set: (preferences) => this.#preferences("PUT", preferences),
    };
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

  /** Connects; reconnects on its own until close() is called. */
  connect() {
    this.stopped = false;
    this.#open();
  }

  /** Closes for good. */
  close() {
    this.stopped = true;
    this.#teardown();
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
    if (this.lastToken) return this.lastToken;
    this.lastToken = this.getToken ? await this.getToken() : this.token;
    return this.lastToken;
  }

  #httpBase() {
    const base = new URL(this.url);
    base.protocol = base.protocol === "wss:" ? "https:" : "http:";
    return base;
  }

  /** A user route of the node over HTTP with the token (a fresh one after a 401 when
   *  getToken is given); rejects with the problem. */
  async #http(method, path, body, retried = false) {
    const token = await this.#currentToken();
    const response = await fetch(new URL(path, this.#httpBase()), {
      method,
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401 && this.getToken && !retried) {
      this.lastToken = null;
      return this.#http(method, path, body, true);
    }
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

  /** Asks for counts a moment after the latest new message, and again a little later: a live
   *  message may come a moment before its store ends, so the first answer may not count it. */
  #requestCounts() {
    clearTimeout(this.countsTimer);
    clearTimeout(this.countsAgainTimer);
    this.countsTimer = setTimeout(() => this.#askCounts(), 250);
    this.countsAgainTimer = setTimeout(() => this.#askCounts(), 2000);
  }

  async #askCounts() {
    if (this.transport === "websocket") {
      if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send('{"type":"counts"}');
    } else if (this.transport) {
      // Over SSE and long-poll, counts after a new message come from HTTP.
      try {
        this.#onCounts(await this.inbox.counts());
      } catch {}
    }
  }

  async #open() {
    this.#setState(this.attempt === 0 ? "connecting" : "reconnecting");
    let token = this.token;
    try {
      token = this.getToken ? await this.getToken() : this.token;
    } catch (error) {
      this.dispatchEvent(new CustomEvent("error", { detail: error }));
      return this.#retry();
    }
    if (this.stopped) return;
    this.lastToken = token;
    const transport = this.transports[this.transportIndex % Math.max(this.transports.length, 1)];
    this.transport = transport;
    if (transport === "websocket") this.#openWebSocket(token);
    else if (transport === "sse") this.#openSse(token);
    else if (transport === "poll") this.#openPoll(token);
    else this.dispatchEvent(new CustomEvent("error", { detail: "no transport: no WebSocket, EventSource or fetch" }));
  }

  #opened(detail) {
    if (this.state === "open") return;
    this.attempt = 0;
    this.failedOpens = 0;
    this.#setState("open");
    this.#flushAcks();
    this.dispatchEvent(new CustomEvent("open", { detail: { transport: this.transport, ...detail } }));
  }

  /** A connection ended; one that never opened counts toward giving way to the next transport. */
  #ended(soon = false) {
    if (this.state !== "open") {
      this.failedOpens += 1;
      if (this.failedOpens >= 2 && this.transports.length > 1) {
        this.failedOpens = 0;
        this.transportIndex += 1;
      }
    }
    this.#retry(soon);
  }

  #openWebSocket(token) {
    const url = new URL(this.url);
    url.searchParams.set("token", token || "");
    if (this.app) url.searchParams.set("app", this.app);
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.onmessage = (event) => this.#onFrame(event.data);
    socket.onerror = () => this.dispatchEvent(new CustomEvent("error", { detail: "socket error" }));
    socket.onclose = (event) => this.#onClose(socket, event);
  }

  #openSse(token) {
    const url = new URL("/v1/sse", this.#httpBase());
    url.searchParams.set("token", token || "");
    if (this.cursor) url.searchParams.set("last_event_id", this.cursor);
    const source = new EventSource(url);
    this.source = source;
    source.onopen = () => this.#opened({});
    source.addEventListener("message", (event) => {
      this.#opened({});
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      this.#onMessage(event.lastEventId, message);
    });
    for (const kind of ["counts", "state"]) {
      source.addEventListener(kind, (event) => {
        this.#opened({});
        this.#onFrame(event.data);
      });
    }
    source.addEventListener("reconnect", () => {
      source.close();
      this.source = null;
      this.#emitClose(1012, "the node is stopping", true);
      this.#retry(true);
    });
    source.onerror = () => {
      if (this.source !== source) return;
      // EventSource would retry with the same (expiring) token: reconnect ourselves instead.
      source.close();
      this.source = null;
      this.#emitClose(0, "event stream error", !this.stopped);
      this.#ended();
    };
  }

  #openPoll(token) {
    const controller = new AbortController();
    this.poller = controller;
    const run = async () => {
      let current = token;
      while (!this.stopped && this.poller === controller) {
        const url = new URL("/v1/poll", this.#httpBase());
        url.searchParams.set("token", current || "");
        if (this.cursor) url.searchParams.set("after", this.cursor);
        const response = await fetch(url, { signal: controller.signal });
        if (response.status === 401 && this.getToken) {
          current = await this.getToken();
          this.lastToken = current;
          continue;
        }
        if (!response.ok) throw new Error(`poll: HTTP ${response.status}`);
        const answer = await response.json();
        this.#opened({});
        for (const item of answer.messages) this.#onMessage(item.seq, item.message);
        if (answer.cursor && answer.cursor !== "0") this.cursor = answer.cursor;
      }
    };
    this.#opened({});
    this.#requestCounts();
    run().catch((error) => {
      if (this.poller !== controller || this.stopped) return;
      this.poller = null;
      this.dispatchEvent(new CustomEvent("error", { detail: error }));
      this.#emitClose(0, String(error), true);
      this.#setState("reconnecting");
      this.#ended();
    });
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
        this.#startWatchdog(frame.heartbeat_ms || 25000);
        this.#opened({ user: frame.user, node: frame.node });
        break;
      case "message":
        this.#onMessage(frame.seq, frame.message);
        break;
      case "counts":
        this.#onCounts(frame);
        break;
      case "state":
        this.dispatchEvent(new CustomEvent("inboxstate", { detail: frame.changes }));
        break;
      case "acked":
        this.#confirmed(frame.ids);
        break;
      case "error":
        this.dispatchEvent(new CustomEvent("error", { detail: frame }));
        break;
      default:
        break;
    }
  }

  #onCounts(counts) {
    this.counts = { unread: counts.unread, unseen: counts.unseen, total: counts.total };
    this.dispatchEvent(new CustomEvent("counts", { detail: this.counts }));
  }

  #confirmed(ids) {
    for (const id of ids) this.unconfirmed.delete(id);
    this.dispatchEvent(new CustomEvent("acked", { detail: ids }));
  }

  #onMessage(seq, message) {
    if (seq !== undefined && seq !== null && seq !== "") this.cursor = String(seq);
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

  async #flushAcks() {
    clearTimeout(this.flushTimer);
    this.flushTimer = null;
    if (this.state !== "open") return;
    const ids = [...this.unconfirmed];
    if (ids.length === 0) return;
    if (this.transport === "websocket") {
      if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return;
      for (let start = 0; start < ids.length; start += 1000) {
        this.socket.send(JSON.stringify({ type: "ack", ids: ids.slice(start, start + 1000) }));
      }
      return;
    }
    for (let start = 0; start < ids.length; start += 1000) {
      const some = ids.slice(start, start + 1000);
      try {
        await this.#http("POST", "/v1/inbox/ack", { ids: some });
        this.#confirmed(some);
      } catch (error) {
        // Kept unconfirmed: sent again on the next ack or reconnect.
        this.dispatchEvent(new CustomEvent("error", { detail: error }));
        if (!this.flushTimer) this.flushTimer = setTimeout(() => this.#flushAcks(), 1000);
        return;
      }
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

  #emitClose(code, reason, willReconnect) {
    this.dispatchEvent(new CustomEvent("close", { detail: { code, reason, willReconnect } }));
  }

  #onClose(socket, event) {
    if (socket !== this.socket) return;
    this.#clearTimers();
    const fatal = FATAL.has(event.code) && !this.getToken;
    const expired = event.code === EXPIRED && !this.getToken;
    const willReconnect = !this.stopped && !fatal && !expired;
    this.#emitClose(event.code, event.reason, willReconnect);
    if (willReconnect) {
      if (event.code === 1012) this.#retry(true);
      else this.#ended();
    } else {
      this.stopped = true;
      this.#setState("closed");
    }
  }

  #retry(soon = false) {
    if (this.stopped) return;
    this.#teardown();
    this.attempt += 1;
    this.#setState("reconnecting");
    const ceiling = Math.min(this.maxBackoffMs, this.minBackoffMs * 2 ** Math.min(this.attempt, 8));
    const delay = soon ? Math.random() * this.minBackoffMs : ceiling / 2 + Math.random() * (ceiling / 2);
    setTimeout(() => this.#open(), delay);
  }

  #teardown() {
    this.#clearTimers();
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      if (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING) socket.close(1000, "bye");
    }
    if (this.source) {
      this.source.close();
      this.source = null;
    }
    if (this.poller) {
      this.poller.abort();
      this.poller = null;
    }
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
