// Type declarations of the Sprayer client (sprayer-client.js).

/** Which way the client reaches the deliverer. */
export type Transport = "websocket" | "sse" | "poll";

export interface SprayerClientOptions {
  /** The deliverer's /v1/ws URL; required outside a browser. */
  url?: string;
  /** A token from POST /v1/users/{user}/ws-token. */
  token?: string;
  /** Called before every connect (and after an HTTP 401) for a fresh token. */
  getToken?: () => Promise<string>;
  /** The app id the page expects; a token of another app is refused. */
  app?: string;
  /** Ack each message as soon as it is dispatched (default false). */
  autoAck?: boolean;
  /** The order to try (default websocket, sse, poll). */
  transports?: Transport[];
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

/** A message from the inbox. */
export interface InboxMessage {
  id: string;
  /** Its inbox sequence number. */
  seq: number | string;
  title?: string;
  body?: string;
  data?: unknown;
  created_at: number;
  expires_at: number;
}

export interface Counts {
  unread: number;
  unseen: number;
  total: number;
}

export interface MessageState {
  id: string;
  seen: boolean;
  read: boolean;
  archived: boolean;
}

export interface HistoryItem extends MessageState {
  seq: string;
  message: Omit<InboxMessage, "seq">;
}

export interface HistoryPage {
  items: HistoryItem[];
  next_cursor: string | null;
  counts: Counts;
}

/** Exactly one of ids, all or before; at least one of seen, read, archived. */
export interface StateRequest {
  ids?: string[];
  all?: true;
  before?: string;
  seen?: boolean;
  read?: boolean;
  archived?: boolean;
}

export interface StateChange {
  changed: MessageState[];
  counts: Counts;
}

export interface Preferences {
  channels?: Record<string, boolean>;
  categories?: Record<string, { enabled?: boolean; channels?: Record<string, boolean> }>;
}

export interface PreferencesView {
  user: string;
  preferences: Preferences;
  categories: { key: string; required: boolean; description?: string }[];
}

/** An RFC 9457 problem, as the server answers a refusal. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  field?: string;
}

/** What a refused call rejects with. */
export interface SprayerError extends Error {
  problem: Problem;
}

export interface SprayerClientEventMap {
  open: CustomEvent<{ transport: Transport; user?: string; node?: string }>;
  message: CustomEvent<InboxMessage>;
  acked: CustomEvent<string[]>;
  state: CustomEvent<"connecting" | "open" | "reconnecting" | "closed">;
  close: CustomEvent<{ code: number; reason: string; willReconnect: boolean }>;
  counts: CustomEvent<Counts>;
  inboxstate: CustomEvent<MessageState[]>;
  error: CustomEvent<unknown>;
}

export class SprayerClient extends EventTarget {
  constructor(options?: SprayerClientOptions);
  /** The transport in use, once connecting. */
  readonly transport: Transport | null;
  readonly state: "connecting" | "open" | "reconnecting" | "closed";
  /** The last counts received. */
  readonly counts: Counts | null;
  /** Connects; reconnects on its own until close(). */
  connect(): void;
  /** Closes for good. */
  close(): void;
  /** Marks messages received: out of the inbox, their feedback `delivered`. */
  ack(ids: string | string[]): void;
  readonly preferences: {
    get(): Promise<PreferencesView>;
    set(preferences: Preferences): Promise<PreferencesView>;
  };
  readonly inbox: {
    list(options?: { state?: "active" | "all" | "unread" | "unseen" | "read" | "archived"; cursor?: string; limit?: number }): Promise<HistoryPage>;
    counts(): Promise<Counts>;
    markSeen(ids: string | string[]): Promise<StateChange>;
    markRead(ids: string | string[]): Promise<StateChange>;
    markUnread(ids: string | string[]): Promise<StateChange>;
    archive(ids: string | string[]): Promise<StateChange>;
    markAllRead(): Promise<StateChange>;
    setState(request: StateRequest): Promise<StateChange>;
  };
  addEventListener<K extends keyof SprayerClientEventMap>(
    type: K,
    listener: (event: SprayerClientEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
}
