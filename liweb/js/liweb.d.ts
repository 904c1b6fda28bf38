// Types of liweb.js, the browser client of liweb.
//
// `LiwebClient<In, Out>` takes two event maps, wire name → payload type:
// `In` for the events the client sends (the server's `In` enum), `Out` for
// those it receives (the server's `Out` enum). `liweb::typescript::export`
// writes both from the Rust enums:
//
//   import { LiwebClient } from "./liweb.js";
//   import type { ChatIn, ChatOut } from "./chat-events";
//   const client = new LiwebClient<ChatIn, ChatOut>("/ws");
//   client.emit("chat:message", { text: "hi" }); // checked against ChatIn
//   client.on("welcome", ({ id, name }) => {});  // typed from ChatOut
//
// Without type arguments every name and payload is accepted.

/** Any event map: wire name → payload type. */
export type EventMap = { [event: string]: unknown };

/** The connection's state. */
export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

/** The payload of the local `close` event. */
export interface CloseInfo {
  /** The WebSocket close code (see docs/PROTOCOL.md). */
  code: number;
  reason: string;
  /** Whether the client will reconnect by itself. */
  willReconnect: boolean;
  /** Whether the server refused the credentials (4001, 4005): no retry. */
  authFailed: boolean;
}

/** The payload of the server's `error` event. */
export interface ErrorPayload {
  code: string;
  message: string;
  event?: string;
}

/** Room state sync (`state:patch`). */
export type StatePatch =
  | { channel: string; room: string; op: "set"; key: string; value: unknown }
  | { channel: string; room: string; op: "delete"; key: string }
  | { channel: string; room: string; op: "clear" };

/** A presence record of the `presence:*` events. */
export interface PresenceRecord {
  key: string;
  online: boolean;
  joined_at: number;
  last_seen: number;
  activity: string | null;
  connections: number;
}

/** Events of the client itself, not from the server. */
export interface LocalEvents {
  open: null;
  close: CloseInfo;
  state: ConnectionState;
  /** After `open`, on every open but the first. */
  reconnect: null;
}

/** Events the protocol reserves, which any liweb server may send. */
export interface ReservedEvents<User = unknown> {
  error: ErrorPayload;
  "auth:success": { user: User };
  "auth:error": { reason: string };
  "state:patch": StatePatch;
  "state:snapshot": { channel: string; room: string; state: Record<string, unknown> };
  "presence:join": { channel: string; room: string; presence: PresenceRecord };
  "presence:leave": { channel: string; room: string; presence: PresenceRecord };
  "presence:update": { channel: string; room: string; presence: PresenceRecord };
  "presence:snapshot": { channel: string; room: string; presence: PresenceRecord[] };
}

/** Everything a client can listen to: the server's events, reserved and local ones. */
export type Listenable<Out extends object> = Out & ReservedEvents & LocalEvents;

/** The payload argument of `emit`: optional when the payload is `null`. */
export type PayloadArgs<P> = null extends P ? [payload?: P] : [payload: P];

/** Options of `new LiwebClient(url, options)`. */
export interface ClientOptions {
  /** Reconnect after an unexpected close (default true). */
  reconnect?: boolean;
  /** Backoff bounds in milliseconds (defaults 250 and 5000), with jitter. */
  minDelayMs?: number;
  maxDelayMs?: number;
  /** Credentials sent as `__auth` on every (re)connect, or a function returning them (`undefined`/`null`: none). */
  auth?: unknown | (() => unknown);
}

/** A realtime event client for a liweb server. */
export declare class LiwebClient<In extends object = EventMap, Out extends object = EventMap> {
  constructor(url: string, options?: ClientOptions);

  /** The WebSocket URL (relative URLs resolved, http(s) mapped to ws(s)). */
  readonly url: string;
  /** The current state. */
  readonly state: ConnectionState;
  /** The user of the last `auth:success` on this connection, or null. */
  readonly user: unknown;

  /** Opens the connection; resolves when the socket is open. */
  connect(): Promise<void>;
  /** Closes the connection and stops reconnecting until the next `connect()`. */
  close(code?: number, reason?: string): void;

  /** Sends an event; queued (at most 100) while disconnected. True if sent now. */
  emit<K extends keyof In & string>(event: K, ...payload: PayloadArgs<In[K]>): boolean;
  /** Sends an event now and again after every reconnect, until `unstick(key)`. */
  emitSticky<K extends keyof In & string>(event: K, payload: In[K], key?: string): () => void;
  /** Stops replaying a sticky emit. */
  unstick(key: string): boolean;
  /** Runs `fn` after every reconnect (not the first open). */
  onReconnect(fn: () => void): () => void;

  /** Sends a request and resolves with the server's reply. */
  request<K extends keyof In & string, R = unknown>(
    event: K,
    payload: In[K],
    options?: { timeoutMs?: number },
  ): Promise<R>;
  /** Answers the server's requests of `event`. */
  onRequest<K extends keyof Out & string>(event: K, fn: (payload: Out[K]) => unknown): void;

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof Listenable<Out> & string>(event: K, fn: (payload: Listenable<Out>[K]) => void): () => void;
  /** Adds a listener that runs at most once. */
  once<K extends keyof Listenable<Out> & string>(event: K, fn: (payload: Listenable<Out>[K]) => void): () => void;
  /** Removes a listener added with `on` or `once`. */
  off<K extends keyof Listenable<Out> & string>(event: K, fn: (payload: Listenable<Out>[K]) => void): void;
}
