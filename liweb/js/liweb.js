// liweb.js: dependency-free browser client for liweb (ES module).
//
// Wire protocol: WebSocket JSON text frames `{"event": string, "payload": any}`
// in both directions; a missing payload means null. The server may send the
// reserved event `error` with payload `{code, message, event?}`. A request
// carries an `ack` id and is answered by `{"event": "__ack", "ack": id,
// "payload": any}` or `{"event": "__ack", "ack": id, "error": {code, message}}`,
// in both directions. Credentials go in `__auth`; the server answers
// `auth:success {user}` or `auth:error {reason}`.

const LOCAL_EVENTS = new Set(["open", "close", "state", "reconnect"]);
const MAX_QUEUE = 100;
const ACK = "__ack";
// Close codes after which retrying cannot help: the credentials were refused.
const AUTH_FAILED = new Set([4001, 4005]);

/**
 * Resolve a possibly relative URL against `location`, mapping http(s) to ws(s).
 * @param {string} url
 * @returns {string}
 */
function resolveUrl(url) {
  const base = typeof location !== "undefined" ? location.href : undefined;
  const u = new URL(url, base);
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  return u.href;
}

/**
 * Realtime event client for a liweb server.
 *
 * Local events: `open` (null), `close` ({code, reason, willReconnect,
 * authFailed}), `state` ("connecting" | "open" | "reconnecting" | "closed";
 * "reconnecting" lasts from an unexpected close until the socket is open
 * again), `reconnect` (null; after `open`, on every open but the first).
 * Every other event name, including `error`, `auth:success` and
 * `auth:error`, comes from the server.
 *
 * After a reconnect the server knows nothing of the old connection: sticky
 * emits (`emitSticky`) are sent again on every open, right after the
 * credentials, so rooms are rejoined before anything queued goes out.
 */
export class LiwebClient {
  /**
   * @param {string} url WebSocket URL; may be relative (e.g. "/ws").
   * @param {{reconnect?: boolean, minDelayMs?: number, maxDelayMs?: number, auth?: any}} [options]
   *   `auth`: credentials sent as `__auth` on every (re)connect, or a function returning them.
   */
  constructor(url, { reconnect = true, minDelayMs = 250, maxDelayMs = 5000, auth = undefined } = {}) {
    this.url = resolveUrl(url);
    this.options = { reconnect, minDelayMs, maxDelayMs: Math.max(minDelayMs, maxDelayMs), auth };
    this._nextAck = 1;
    this._pending = new Map(); // ack id -> {resolve, reject, timer}
    this._responders = new Map(); // event -> (payload) => reply
    this._listeners = new Map(); // event -> Array<{fn, once}>
    this._queue = []; // serialized frames waiting for an open socket
    this._ws = null;
    this._state = "closed";
    this._attempt = 0;
    this._timer = null;
    this._stopped = true; // true after close() or before the first connect()
    this._waiters = []; // pending connect() promises: {resolve, reject}
    this._sticky = new Map(); // key -> serialized frame, replayed on every open
    this._opened = false; // whether a socket was ever open (for `reconnect`)
    this._user = null; // the user of the last `auth:success`
  }

  /** The user of the last `auth:success` on this connection, or null. */
  get user() {
    return this._user;
  }

  /** Current state: "connecting" | "open" | "reconnecting" | "closed". */
  get state() {
    return this._state;
  }

  /**
   * Open the connection (no-op if already open or connecting).
   * @returns {Promise<void>} resolved when the socket is open.
   */
  connect() {
    if (this._state === "open") return Promise.resolve();
    const p = new Promise((resolve, reject) => this._waiters.push({ resolve, reject }));
    this._stopped = false;
    if (!this._ws && !this._timer) this._open();
    return p;
  }

  /**
   * Add a listener; it is called with the event payload.
   * @param {string} event
   * @param {(payload: any) => void} fn
   * @returns {() => void} function that removes the listener.
   */
  on(event, fn) {
    return this._add(event, fn, false);
  }

  /**
   * Add a listener that runs at most once.
   * @param {string} event
   * @param {(payload: any) => void} fn
   * @returns {() => void} function that removes the listener.
   */
  once(event, fn) {
    return this._add(event, fn, true);
  }

  /**
   * Remove a listener added with `on` or `once`.
   * @param {string} event
   * @param {(payload: any) => void} fn
   */
  off(event, fn) {
    const list = this._listeners.get(event);
    if (!list) return;
    const kept = list.filter((l) => l.fn !== fn);
    if (kept.length) this._listeners.set(event, kept);
    else this._listeners.delete(event);
  }

  /**
   * Send an event. While disconnected, frames are queued (max 100, oldest
   * dropped) and flushed on (re)open.
   * @param {string} event
   * @param {any} [payload] defaults to null.
   * @returns {boolean} true if sent now, false if queued.
   */
  emit(event, payload = null) {
    if (typeof event !== "string" || !event) throw new TypeError("event must be a non-empty string");
    const frame = JSON.stringify({ event, payload });
    if (this._ws && this._ws.readyState === WebSocket.OPEN) {
      this._ws.send(frame);
      return true;
    }
    this._queue.push(frame);
    if (this._queue.length > MAX_QUEUE) this._queue.shift();
    return false;
  }

  /**
   * Send an event now (or when the socket opens) and again after every
   * reconnect, until `unstick(key)`: the way to stay in a room, e.g.
   * `emitSticky("join", {room}, "room:" + room)`. A new sticky emit with the
   * same key replaces the old one.
   * @param {string} event
   * @param {any} [payload] defaults to null.
   * @param {string} [key] defaults to the event name.
   * @returns {() => void} function that removes the sticky emit (like `unstick(key)`).
   */
  emitSticky(event, payload = null, key = event) {
    if (typeof event !== "string" || !event) throw new TypeError("event must be a non-empty string");
    const frame = JSON.stringify({ event, payload });
    this._sticky.set(key, frame);
    // While disconnected the replay on open sends it; no queued copy needed.
    if (this._ws && this._ws.readyState === WebSocket.OPEN) this._ws.send(frame);
    return () => this.unstick(key);
  }

  /**
   * Stop replaying the sticky emit `key` after reconnects (sends nothing).
   * @param {string} key
   * @returns {boolean} whether there was one.
   */
  unstick(key) {
    return this._sticky.delete(key);
  }

  /**
   * Run `fn` after every reconnect (not the first open): the place to
   * re-send what the server forgot with the old connection. Same as
   * `on("reconnect", fn)`.
   * @param {() => void} fn
   * @returns {() => void} function that removes it.
   */
  onReconnect(fn) {
    return this.on("reconnect", fn);
  }

  /**
   * Send an event as a request and wait for the server's reply (the
   * handler's return value). Rejects on an error reply, on timeout, or when
   * the connection closes first.
   * @param {string} event
   * @param {any} [payload] defaults to null.
   * @param {{timeoutMs?: number}} [options]
   * @returns {Promise<any>}
   */
  request(event, payload = null, { timeoutMs = 10000 } = {}) {
    if (!this._ws || this._ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new Error("liweb: not connected"));
    }
    const ack = this._nextAck++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(ack);
        reject(new Error(`liweb: no reply to "${event}" within ${timeoutMs} ms`));
      }, timeoutMs);
      this._pending.set(ack, { resolve, reject, timer });
      this._ws.send(JSON.stringify({ event, payload, ack }));
    });
  }

  /**
   * Answer the server's requests of `event` with `fn(payload)` (a value or a
   * Promise); a throw or rejection becomes an error reply.
   * @param {string} event
   * @param {(payload: any) => any} fn
   */
  onRequest(event, fn) {
    this._responders.set(event, fn);
  }

  _reply(ack, fn, payload) {
    Promise.resolve()
      .then(() => fn(payload))
      .then(
        (value) => ({ event: ACK, ack, payload: value === undefined ? null : value }),
        (err) => ({ event: ACK, ack, error: { code: "handler_failed", message: String(err?.message ?? err) } }),
      )
      .then((frame) => {
        if (this._ws && this._ws.readyState === WebSocket.OPEN) this._ws.send(JSON.stringify(frame));
      });
  }

  _failPending(err) {
    for (const { reject, timer } of this._pending.values()) {
      clearTimeout(timer);
      reject(err);
    }
    this._pending.clear();
  }

  /**
   * Close the connection and disable reconnection until the next `connect()`.
   * @param {number} [code=1000]
   * @param {string} [reason=""]
   */
  close(code = 1000, reason = "") {
    const ws = this._ws;
    if (ws) ws.close(code, reason); // throws early on an invalid code
    this._stopped = true;
    clearTimeout(this._timer);
    this._timer = null;
    this._ws = null; // detach: late socket callbacks are ignored
    this._setState("closed");
    if (ws) this._dispatch("close", { code, reason, willReconnect: false, authFailed: false });
    this._failPending(new Error("liweb: connection closed by client"));
    this._settle(new Error("liweb: connection closed by client"));
  }

  _add(event, fn, once) {
    if (typeof fn !== "function") throw new TypeError("listener must be a function");
    const list = this._listeners.get(event) || [];
    list.push({ fn, once });
    this._listeners.set(event, list);
    return () => this.off(event, fn);
  }

  _dispatch(event, payload) {
    const list = this._listeners.get(event);
    if (!list) return;
    for (const l of list.slice()) {
      if (l.once) this.off(event, l.fn);
      try {
        l.fn(payload);
      } catch (err) {
        console.error(`liweb: listener for "${event}" threw`, err);
      }
    }
  }

  _setState(state) {
    if (this._state === state) return;
    this._state = state;
    this._dispatch("state", state);
  }

  _settle(err) {
    const waiters = this._waiters;
    this._waiters = [];
    for (const w of waiters) err ? w.reject(err) : w.resolve();
  }

  _open() {
    this._timer = null;
    // Between retries the client stays "reconnecting" rather than flipping
    // between "connecting" and "closed" on every attempt.
    if (this._state !== "reconnecting") this._setState("connecting");
    const ws = new WebSocket(this.url);
    this._ws = ws;

    ws.onopen = () => {
      if (this._ws !== ws) return;
      this._attempt = 0;
      this._user = null;
      const reconnected = this._opened;
      this._opened = true;
      this._setState("open");
      // Credentials go first, then sticky emits (rooms), then the queue: the
      // server handles a connection's frames in order.
      const auth = typeof this.options.auth === "function" ? this.options.auth() : this.options.auth;
      if (auth !== undefined && auth !== null) ws.send(JSON.stringify({ event: "__auth", payload: auth }));
      for (const frame of this._sticky.values()) ws.send(frame);
      const queued = this._queue;
      this._queue = [];
      for (const frame of queued) ws.send(frame);
      this._dispatch("open", null);
      if (reconnected) this._dispatch("reconnect", null);
      this._settle();
    };

    ws.onmessage = (e) => {
      if (this._ws !== ws || typeof e.data !== "string") return;
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch {
        return; // ignore malformed frames
      }
      if (!msg || typeof msg.event !== "string" || LOCAL_EVENTS.has(msg.event)) return;
      const payload = msg.payload === undefined ? null : msg.payload;
      if (msg.event === ACK) {
        const waiter = this._pending.get(msg.ack);
        if (!waiter) return;
        this._pending.delete(msg.ack);
        clearTimeout(waiter.timer);
        if (msg.error) waiter.reject(Object.assign(new Error(msg.error.message), { code: msg.error.code }));
        else waiter.resolve(payload);
        return;
      }
      if (msg.event === "auth:success") this._user = payload?.user ?? null;
      if (typeof msg.ack === "number" && this._responders.has(msg.event)) {
        this._reply(msg.ack, this._responders.get(msg.event), payload);
        return;
      }
      this._dispatch(msg.event, payload);
    };

    ws.onclose = (e) => {
      if (this._ws !== ws) return;
      this._ws = null;
      this._failPending(new Error(`liweb: connection closed (${e.code})`));
      const authFailed = AUTH_FAILED.has(e.code);
      const retry = !this._stopped && this.options.reconnect && !authFailed;
      this._setState(retry ? "reconnecting" : "closed");
      this._dispatch("close", { code: e.code, reason: e.reason, willReconnect: retry, authFailed });
      if (retry) this._schedule();
      else this._settle(new Error(`liweb: connection closed (${e.code})`));
    };
  }

  // Exponential backoff with full jitter, bounded by [minDelayMs, maxDelayMs].
  _schedule() {
    const { minDelayMs: min, maxDelayMs: max } = this.options;
    const cap = Math.min(max, min * 2 ** (this._attempt + 1));
    const delay = min + Math.random() * (cap - min);
    this._attempt += 1;
    this._timer = setTimeout(() => this._open(), delay);
  }
}
