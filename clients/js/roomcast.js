// roomcast.js — the browser client for roomcast-edge. A dependency-free ES
// module: `import { Roomcast } from "/roomcast.js"` from a plain
// <script type="module">, no build step. The edge serves this file at
// GET /roomcast.js. API reference: docs/js-client.md. Wire format:
// docs/protocol.md §7 (canonical protobuf JSON of ClientFrame / ServerFrame).
//
// Decisions written down here (DESIGN.md: "where it is silent, build what a
// user of Centrifugo or Pusher would expect"):
// * States follow Centrifugo: "connecting" covers both an attempt in progress
//   and the wait before the next one; "disconnected" is final until
//   connect() is called. Every transition is one "state" event.
// * Close codes: 4500–4999 and 1009 stay disconnected (the client must be
//   fixed); everything else (4000–4499, 1001, 1011, 1013, network failures)
//   reconnects with exponential backoff and full jitter.
// * Each room remembers the position of the last message it delivered and
//   re-joins with it as `since`. Messages at or before that position in the
//   same epoch are dropped, so a resume never delivers a message twice.
// * "auto" tries WebSocket first and falls back to SSE only when WebSocket
//   never opened (fallbackAfter failed attempts in a row); once WebSocket has
//   worked, an outage is treated as an outage, not as a blocked transport.

const DEFAULTS = {
  transport: "websocket", // "websocket" | "sse" | "auto"
  requestTimeout: 10000, // ms for a reply to a request (publish, presence, history, join)
  connectTimeout: 10000, // ms for a WebSocket to open
  pingInterval: 25000, // ms between application pings on WebSocket; 0 = off
  fallbackAfter: 2, // "auto": failed WebSocket attempts before SSE
  autoConnect: true,
  reconnect: {
    initialDelay: 500, // ms: the first backoff cap
    maxDelay: 20000, // ms: backoff cap
    resetAfter: 10000, // ms: a connection that lived this long resets the backoff
    maxAttempts: Infinity, // failed attempts in a row before giving up
  },
  WebSocket: undefined, // a WebSocket-compatible constructor (default: the global one)
  EventSource: undefined, // an EventSource-compatible constructor
  fetch: undefined, // a fetch-compatible function
  debug: false,
};

// DisconnectCode enum names (roomcast.proto) → WebSocket close codes.
export const DisconnectCode = Object.freeze({
  GOING_AWAY: 1001,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  TRY_AGAIN_LATER: 1013,
  RECONNECT: 4000,
  SLOW_CONSUMER: 4001,
  SERVER_RECONNECT: 4002,
  TOKEN_EXPIRED: 4003,
  BAD_REQUEST: 4500,
  UNAUTHORIZED: 4501,
  DISCONNECTED: 4502,
});

// Canonical gRPC status codes, as numbers in `error.code` of a reply.
export const StatusCode = Object.freeze({
  CANCELLED: 1, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5,
  ALREADY_EXISTS: 6, PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9,
  ABORTED: 10, OUT_OF_RANGE: 11, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14,
});

// Whether a connection that ended with `code` should be re-opened.
export function shouldReconnect(code) {
  if (code >= 4500 && code <= 4999) return false;
  if (code === 1009) return false;
  return true;
}

// An error from the server (code is the numeric gRPC code) or from the client
// itself (code is a string: "timeout", "disconnected", "closed",
// "unsupported", "network").
export class RoomcastError extends Error {
  constructor(code, message, details = {}) {
    super(message);
    this.name = "RoomcastError";
    this.code = code;
    Object.assign(this, details);
  }
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

class Emitter {
  constructor() {
    this._listeners = new Map();
  }
  // Adds a listener; returns a function that removes it.
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }
  off(event, fn) {
    this._listeners.get(event)?.delete(fn);
  }
  // With a listener: calls it once. Without: a Promise of the next event.
  once(event, fn) {
    if (fn) {
      const off = this.on(event, (e) => {
        off();
        fn(e);
      });
      return off;
    }
    return new Promise((resolve) => this.once(event, resolve));
  }
  _emit(event, payload) {
    const set = this._listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(payload);
      } catch (e) {
        // A listener's bug must not break delivery: report it asynchronously.
        setTimeout(() => {
          throw e;
        });
      }
    }
  }
}

// {epoch, offset} with offset as a decimal string (uint64 in canonical JSON;
// absent means 0).
function normalizePosition(p) {
  return { epoch: (p && p.epoch) || "", offset: String((p && p.offset) ?? "0") };
}

function sameEpochNotAfter(p, last) {
  return last !== null && p.epoch === last.epoch && BigInt(p.offset) <= BigInt(last.offset);
}

function normalizeMessage(m) {
  const out = { room: m.room, position: normalizePosition(m.position), data: m.data };
  if (m.binary !== undefined) out.binary = m.binary;
  if (m.publisher !== undefined) out.publisher = m.publisher;
  if (m.time !== undefined) out.time = m.time;
  return out;
}

function closeCodeOf(code) {
  if (typeof code === "number") return code;
  if (typeof code === "string" && /^\d+$/.test(code)) return Number(code);
  return DisconnectCode[code] ?? 0;
}

// The edge's base URL (http(s)://host[:port][/prefix]) from what the user gave.
function resolveBase(url) {
  const loc = globalThis.location;
  if (!url && !loc) throw new TypeError("Roomcast: a URL is required outside a browser page");
  const u = new URL(url || loc.origin, loc ? loc.href : undefined);
  if (u.protocol === "ws:") u.protocol = "http:";
  if (u.protocol === "wss:") u.protocol = "https:";
  let path = u.pathname.replace(/\/+$/, "");
  path = path.replace(/\/(ws|sse)$/, "");
  return u.origin + path;
}

// ---------------------------------------------------------------------------
// Room
// ---------------------------------------------------------------------------

// One joined room. Created by client.join(); events: "message", "presence",
// "join", "error", "leave".
export class Room extends Emitter {
  constructor(client, name, since) {
    super();
    this.client = client;
    this.name = name;
    // "joining" | "joined" | "left" | "failed"
    this.state = "joining";
    // The last position delivered (or the join's position): the resume cursor.
    this.position = since ? normalizePosition(since) : null;
    // The last join's answer: false means messages were missed (reload state).
    this.recovered = undefined;
    this._waiters = [];
    this._joinInFlight = null; // Promise while a WebSocket join awaits its reply.
    this._joinToken = null; // Identifies that join; cleared when its connection ends.
    this._forceUnrecovered = false;
  }

  // Resolves with {recovered, position} when the room is joined (now or at the
  // next join); rejects if the join fails or the room is left.
  ready(timeoutMs) {
    if (this.state === "joined") return Promise.resolve({ recovered: this.recovered, position: this.position });
    if (this.state === "left" || this.state === "failed") {
      return Promise.reject(new RoomcastError("closed", `room "${this.name}" is ${this.state}`));
    }
    return new Promise((resolve, reject) => {
      const w = { resolve, reject, timer: null };
      if (timeoutMs !== undefined) {
        w.timer = setTimeout(() => {
          this._waiters = this._waiters.filter((x) => x !== w);
          reject(new RoomcastError("timeout", `room "${this.name}" not joined within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      this._waiters.push(w);
    });
  }

  // Publishes a JSON value; resolves with its position {epoch, offset}.
  publish(data, options) {
    return this.client.publish(this.name, data, options);
  }
  // Members: [{clientId, userId, info}]. WebSocket only.
  presence(options) {
    return this.client.presence(this.name, options);
  }
  // {messages, position}; options {limit, reverse, since}. WebSocket only.
  history(options) {
    return this.client.history(this.name, options);
  }
  // Stops delivery at once and leaves the room on the server.
  leave() {
    return this.client._leave(this);
  }

  _settleWaiters(error) {
    const waiters = this._waiters;
    this._waiters = [];
    for (const w of waiters) {
      clearTimeout(w.timer);
      if (error) w.reject(error);
      else w.resolve({ recovered: this.recovered, position: this.position });
    }
  }

  // `result` is a JoinResult {recovered, position}. `resumed`: the join
  // carried a `since` (or was meant to).
  _onJoined(result, resumed) {
    if (this.state === "left" || this.state === "failed") return;
    const position = normalizePosition(result.position);
    const last = this.position;
    let recovered = result.recovered === true;
    if (this._forceUnrecovered || last === null || !last.epoch) {
      if (this._forceUnrecovered) recovered = false;
      this.position = position;
    } else if (position.epoch !== last.epoch || BigInt(position.offset) > BigInt(last.offset)) {
      // Another history, or messages between our cursor and the room's
      // position were not replayed to us: whatever the server said, we missed
      // something.
      recovered = false;
      this.position = position;
    }
    this._forceUnrecovered = false;
    this.recovered = recovered;
    this.state = "joined";
    const event = { room: this.name, recovered, resumed, position: this.position };
    this._emit("join", event);
    this.client._emit("join", event);
    this._settleWaiters(null);
  }

  _onMessage(raw) {
    if (this.state === "left" || this.state === "failed") return;
    // A join without a cursor replays nothing, so a message before its reply
    // is left over from an earlier membership of this name: not ours.
    if (this.state === "joining" && this.position === null) return;
    const m = normalizeMessage(raw);
    if (sameEpochNotAfter(m.position, this.position)) return; // Already delivered.
    this.position = m.position;
    this._emit("message", m);
    this.client._emit("message", m);
  }

  _onPresence(event) {
    if (this.state === "left" || this.state === "failed") return;
    this._emit("presence", event);
    this.client._emit("presence", event);
  }

  _fail(error) {
    this.state = "failed";
    const event = { room: this.name, code: error.code, message: error.message, error };
    this._emit("error", event);
    this.client._emit("error", event);
    this._settleWaiters(error);
  }
}

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

export class Roomcast extends Emitter {
  // url: "http://host:port" (ws:// also accepted), or "" for this page's origin.
  constructor(url = "", options = {}) {
    super();
    this.options = {
      ...DEFAULTS,
      ...options,
      reconnect:
        options.reconnect === false
          ? { ...DEFAULTS.reconnect, maxAttempts: 0 }
          : { ...DEFAULTS.reconnect, ...(options.reconnect || {}) },
    };
    if (!["websocket", "sse", "auto"].includes(this.options.transport)) {
      throw new TypeError(`Roomcast: transport must be "websocket", "sse" or "auto"`);
    }
    this.url = resolveBase(url);
    this.state = "disconnected"; // "connecting" | "connected" | "disconnected"
    this.transport = null; // "websocket" | "sse" while connected
    this._rooms = new Map();
    this._leaving = new Map(); // room name → Promise of a leave in progress
    this._pending = new Map(); // request id → {resolve, reject, timer, op}
    this._queued = []; // requests waiting for a connection
    this._nextId = 1;
    this._attempt = 0;
    this._useSse = this.options.transport === "sse";
    this._wsFailures = 0;
    this._wsEverOpened = false;
    this._ws = null;
    this._es = null;
    this._esRooms = ""; // the room names the open EventSource streams
    this._openedAt = 0;
    this._lastDisconnect = null;
    this._reconnectTimer = null;
    this._pingTimer = null;
    this._sseReopenScheduled = false;
    this._userClosed = false;
    this._onOnline = () => {
      if (this.state === "connecting" && this._reconnectTimer !== null) {
        clearTimeout(this._reconnectTimer);
        this._reconnectTimer = null;
        this._open();
      }
    };
    // Connects after the constructor returns, so that handlers attached right
    // after it see the first transition; requests made before then wait for
    // that connection like requests made while connecting.
    this._autoConnectPending = this.options.autoConnect;
    if (this.options.autoConnect) {
      queueMicrotask(() => {
        this._autoConnectPending = false;
        if (!this._userClosed && this.state === "disconnected") this.connect();
      });
    }
  }

  // Opens the connection (also after a final "disconnected").
  connect() {
    this._userClosed = false;
    if (this.state !== "disconnected") return;
    if (typeof globalThis.addEventListener === "function") globalThis.addEventListener("online", this._onOnline);
    this._attempt = 0;
    this._setState("connecting", {});
    this._open();
  }

  // Closes for good: rejects what is pending; rooms are kept and re-joined by
  // a later connect().
  close() {
    this._userClosed = true;
    if (typeof globalThis.removeEventListener === "function") globalThis.removeEventListener("online", this._onOnline);
    this._teardownTransport(1000, "closed by the client");
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this._failPending(new RoomcastError("closed", "the client was closed"), true);
    for (const room of this._rooms.values()) {
      if (room.state === "joined") room.state = "joining";
      room._joinInFlight = room._joinToken = null;
    }
    if (this.state !== "disconnected") {
      this._setState("disconnected", { code: 1000, reason: "closed by the client", reconnect: false });
    }
  }

  // Resolves when connected; rejects on a final disconnect (or the timeout).
  ready(timeoutMs) {
    if (this.state === "connected") return Promise.resolve();
    return new Promise((resolve, reject) => {
      let timer = null;
      const off = this.on("state", (e) => {
        if (e.state === "connected") done(null);
        else if (e.state === "disconnected") done(new RoomcastError("disconnected", e.reason || "disconnected", { closeCode: e.code }));
      });
      const done = (err) => {
        off();
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      };
      if (timeoutMs !== undefined) timer = setTimeout(() => done(new RoomcastError("timeout", `not connected within ${timeoutMs} ms`)), timeoutMs);
      if (this.state === "disconnected" && this._userClosed) done(new RoomcastError("closed", "the client was closed"));
    });
  }

  // Joins a room (or returns the room already joined under that name).
  // options.since: a position {epoch, offset} to resume after.
  join(name, options = {}) {
    const existing = this._rooms.get(name);
    if (existing) return existing;
    const room = new Room(this, name, options.since || null);
    this._rooms.set(name, room);
    if (this._useSse) this._sseRoomsChanged();
    else if (this.state === "connected" && this._ws) this._sendJoin(room);
    return room;
  }

  room(name) {
    return this._rooms.get(name);
  }
  get rooms() {
    return [...this._rooms.values()];
  }

  publish(room, data, { timeout } = {}) {
    const body = { room, data: data === undefined ? null : data };
    return this._request("publish", body, timeout).then((r) => normalizePosition(r.publish && r.publish.position));
  }

  presence(room, { timeout } = {}) {
    return this._request("presence", { room }, timeout).then((r) => (r.presence && r.presence.clients) || []);
  }

  history(room, { limit, reverse, since, timeout } = {}) {
    const body = { room };
    if (limit) body.limit = limit;
    if (reverse) body.reverse = true;
    if (since) body.since = normalizePosition(since);
    return this._request("history", body, timeout).then((r) => {
      const h = r.history || {};
      return { messages: (h.messages || []).map(normalizeMessage), position: normalizePosition(h.position) };
    });
  }

  // Round trip to the edge (WebSocket only).
  ping({ timeout } = {}) {
    return this._request("ping", {}, timeout).then(() => undefined);
  }

  // -------------------------------------------------------------------------
  // State and reconnect
  // -------------------------------------------------------------------------

  _log(...args) {
    if (this.options.debug) console.debug("[roomcast]", ...args);
  }

  _setState(state, details) {
    if (this.state === state) return;
    this.state = state;
    const event = { state, transport: this.transport, ...details };
    this._log("state", event);
    this._emit("state", event);
  }

  _open() {
    if (this._userClosed) return;
    this._lastDisconnect = null;
    if (this._useSse) this._openSse();
    else this._openWs();
  }

  _onConnected(transport) {
    this.transport = transport;
    this._openedAt = Date.now();
    this._setState("connected", { transport });
    if (transport === "websocket") {
      for (const room of this._rooms.values()) this._sendJoin(room);
      this._startPing();
    }
    const queued = this._queued;
    this._queued = [];
    for (const q of queued) {
      clearTimeout(q.timer);
      this._dispatch(q);
    }
  }

  // A transport ended (or failed to open). Decides between reconnecting and
  // staying disconnected.
  _onTransportClosed(code, reason, wasOpen) {
    this._stopPing();
    this.transport = null;
    this._failPending(new RoomcastError("disconnected", `connection closed (${code}${reason ? ": " + reason : ""}); the request may or may not have been applied`), false);
    for (const room of this._rooms.values()) {
      if (room.state === "joined") room.state = "joining";
      room._joinInFlight = room._joinToken = null;
    }
    if (this._userClosed) return;
    const reconnect = shouldReconnect(code);
    const opts = this.options.reconnect;
    if (wasOpen && Date.now() - this._openedAt >= opts.resetAfter) this._attempt = 0;
    if (!wasOpen && !this._useSse) {
      this._wsFailures++;
      if (this.options.transport === "auto" && !this._wsEverOpened && this._wsFailures >= this.options.fallbackAfter) {
        this._log("WebSocket failed", this._wsFailures, "times; falling back to SSE");
        this._useSse = true;
        this._attempt = 0;
      }
    }
    if (!reconnect || this._attempt >= opts.maxAttempts) {
      this._setState("disconnected", { code, reason, reconnect: false });
      this._failPending(new RoomcastError("disconnected", `disconnected (${code}${reason ? ": " + reason : ""})`, { closeCode: code }), true);
      return;
    }
    // Exponential backoff with full jitter: uniform in [0, min(max, initial·2^n)].
    const cap = Math.min(opts.maxDelay, opts.initialDelay * 2 ** this._attempt);
    const delay = Math.floor(Math.random() * cap);
    this._attempt++;
    if (this.state === "connecting") {
      this._log("attempt failed", { code, reason, delay });
    } else {
      this._setState("connecting", { code, reason, reconnect: true, delay });
    }
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      this._open();
    }, delay);
  }

  // Detaches and closes the current transport without its events firing.
  _teardownTransport(code, reason) {
    this._stopPing();
    if (this._ws) {
      const ws = this._ws;
      this._ws = null;
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      try {
        // A close reason is at most 123 bytes of UTF-8.
        ws.close(code === 1000 || (code >= 3000 && code <= 4999) ? code : 1000, String(reason).slice(0, 40));
      } catch {
        try {
          ws.close();
        } catch {
          // Already closed.
        }
      }
    }
    if (this._es) {
      const es = this._es;
      this._es = null;
      es.onopen = es.onmessage = es.onerror = null;
      es.close();
    }
  }

  // Drops a connection that looks dead (ping or join timeout) and reconnects.
  _dropTransport(reason) {
    if (!this._ws && !this._es) return;
    const wasOpen = this.state === "connected";
    this._teardownTransport(4000, reason);
    this._onTransportClosed(4000, reason, wasOpen);
  }

  _failPending(error, includeQueued) {
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const p of pending) {
      clearTimeout(p.timer);
      p.reject(error);
    }
    if (includeQueued) {
      const queued = this._queued;
      this._queued = [];
      for (const q of queued) {
        clearTimeout(q.timer);
        q.reject(error);
      }
    }
  }

  // -------------------------------------------------------------------------
  // Requests
  // -------------------------------------------------------------------------

  _request(op, body, timeout = this.options.requestTimeout) {
    return new Promise((resolve, reject) => {
      const q = { op, body, timeout, resolve, reject, timer: null };
      if (this._userClosed) return reject(new RoomcastError("closed", "the client was closed"));
      if (this._useSse || (this.state === "connected" && this._ws)) return this._dispatch(q);
      if (this.state === "disconnected" && !this._autoConnectPending) {
        return reject(new RoomcastError("disconnected", `cannot ${op}: not connected (call connect())`));
      }
      // Connecting: wait for the connection, within the request's timeout.
      q.timer = setTimeout(() => {
        this._queued = this._queued.filter((x) => x !== q);
        reject(new RoomcastError("timeout", `${op}: not connected within ${timeout} ms`));
      }, timeout);
      this._queued.push(q);
    });
  }

  _dispatch(q) {
    if (this._useSse) {
      if (q.op === "publish") return this._ssePublish(q);
      return q.reject(new RoomcastError("unsupported", `${q.op} is not available over the SSE transport (read-only plus POST /publish); use transport "websocket"`));
    }
    this._sendRequest(q.op, q.body, q.timeout).then(q.resolve, q.reject);
  }

  // Sends one request frame and resolves with its `reply` (or rejects with
  // its `error`).
  _sendRequest(op, body, timeout = this.options.requestTimeout) {
    return new Promise((resolve, reject) => {
      const ws = this._ws;
      if (!ws || this.state !== "connected") {
        return reject(new RoomcastError("disconnected", `cannot ${op}: not connected`));
      }
      const id = this._nextId++;
      const key = String(id);
      const timer = setTimeout(() => {
        this._pending.delete(key);
        reject(new RoomcastError("timeout", `no reply to ${op} within ${timeout} ms`));
      }, timeout);
      this._pending.set(key, { resolve, reject, timer, op });
      try {
        ws.send(JSON.stringify({ id, [op]: body }));
      } catch (e) {
        clearTimeout(timer);
        this._pending.delete(key);
        reject(new RoomcastError("disconnected", `cannot send ${op}: ${e.message}`));
      }
    });
  }

  // Sends the room's join on the current WebSocket. A leave of the same name
  // still in progress goes first: the edge must see join, leave, join in
  // that order.
  _sendJoin(room) {
    if (room.state === "left" || room.state === "failed" || room._joinInFlight) return;
    room.state = "joining";
    const ws = this._ws;
    const token = {};
    const send = () => {
      if (this._ws !== ws || room._joinToken !== token || this._rooms.get(room.name) !== room) return undefined;
      const join = { room: room.name };
      const resumed = room.position !== null && room.position.epoch !== "";
      if (resumed && !room._forceUnrecovered) join.since = room.position;
      return this._sendRequest("join", join).then(
        (reply) => {
          if (this._ws !== ws || room._joinToken !== token) return;
          room._joinInFlight = room._joinToken = null;
          if (this._rooms.get(room.name) === room) room._onJoined(reply.join || {}, resumed);
        },
        (err) => {
          if (room._joinToken !== token) return;
          room._joinInFlight = room._joinToken = null;
          this._onJoinError(room, err, ws);
        },
      );
    };
    room._joinToken = token;
    const leaving = this._leaving.get(room.name);
    room._joinInFlight = leaving ? leaving.then(send) : send();
  }

  _onJoinError(room, err, ws) {
    if (this._rooms.get(room.name) !== room || this._ws !== ws) return; // Left, or that connection is gone.
    if (err.code === "disconnected" || err.code === StatusCode.UNAVAILABLE) {
      return; // The connection is ending; the join is repeated on reconnect.
    }
    if (err.code === "timeout" || err.code === StatusCode.DEADLINE_EXCEEDED) {
      this._dropTransport(`join of "${room.name}" timed out`);
      return;
    }
    if (err.code === StatusCode.OUT_OF_RANGE && room.position) {
      // `since` is past the room's end (a stale or foreign cursor): join from
      // now and say so — recovered: false, never a silent skip.
      room._forceUnrecovered = true;
      this._sendJoin(room);
      return;
    }
    this._rooms.delete(room.name);
    room._fail(err);
  }

  _leave(room) {
    if (this._rooms.get(room.name) !== room) return Promise.resolve();
    this._rooms.delete(room.name);
    room.state = "left";
    room._settleWaiters(new RoomcastError("closed", `room "${room.name}" was left`));
    room._emit("leave", { room: room.name });
    if (this._useSse) {
      this._sseRoomsChanged();
      return Promise.resolve();
    }
    if (this.state !== "connected" || !this._ws) return Promise.resolve();
    // A leave sent while the join is still at the edge would race it (the edge
    // would keep the room joined and refuse the next join), so it waits for
    // the join's answer; a later join of the same name waits for this leave.
    const ws = this._ws;
    const name = room.name;
    const after = room._joinInFlight || Promise.resolve();
    const done = after
      .catch(() => {})
      .then(() => (this._ws === ws ? this._sendRequest("leave", { room: name }) : undefined))
      .then(
        () => undefined,
        (err) => {
          if (err.code !== "disconnected") throw err;
        },
      );
    const settled = done.catch(() => {});
    this._leaving.set(name, settled);
    settled.then(() => {
      if (this._leaving.get(name) === settled) this._leaving.delete(name);
    });
    return done;
  }

  // -------------------------------------------------------------------------
  // Incoming frames (both transports)
  // -------------------------------------------------------------------------

  _onFrame(text) {
    let f;
    try {
      f = JSON.parse(text);
    } catch {
      this._emit("error", { code: "protocol", message: "unparseable frame from the server" });
      return;
    }
    if (f.id !== undefined && String(f.id) !== "0") {
      const p = this._pending.get(String(f.id));
      if (!p) return; // Timed out already.
      this._pending.delete(String(f.id));
      clearTimeout(p.timer);
      if (f.error) p.reject(new RoomcastError(f.error.code ?? 2, f.error.message || "error", { op: p.op }));
      else p.resolve(f.reply || {});
      return;
    }
    if (f.message) {
      this._rooms.get(f.message.room)?._onMessage(f.message);
    } else if (f.presence) {
      this._rooms.get(f.presence.room)?._onPresence(f.presence);
    } else if (f.reply && f.reply.join) {
      // SSE: joins carry no id, the reply names the room.
      const room = this._rooms.get(f.reply.join.room);
      if (room) room._onJoined(f.reply.join, room._sseResumed === true);
    } else if (f.error) {
      this._emit("error", { code: f.error.code ?? 2, message: f.error.message || "error" });
    } else if (f.disconnect) {
      this._lastDisconnect = {
        code: closeCodeOf(f.disconnect.code),
        reason: f.disconnect.reason || "",
        reconnect: f.disconnect.reconnect === true,
      };
      this._log("disconnect frame", this._lastDisconnect);
      if (this._es) this._onSseDisconnectFrame();
    }
  }

  // -------------------------------------------------------------------------
  // WebSocket transport
  // -------------------------------------------------------------------------

  _openWs() {
    const WS = this.options.WebSocket || globalThis.WebSocket;
    const url = this.url.replace(/^http/, "ws") + "/ws";
    let ws;
    try {
      ws = new WS(url);
    } catch (e) {
      setTimeout(() => this._onTransportClosed(1006, `cannot open WebSocket: ${e.message}`, false));
      return;
    }
    this._ws = ws;
    let opened = false;
    const connectTimer = setTimeout(() => {
      if (this._ws !== ws || opened) return;
      this._teardownTransport(1000, "connect timeout");
      this._onTransportClosed(1006, `WebSocket did not open within ${this.options.connectTimeout} ms`, false);
    }, this.options.connectTimeout);
    ws.onopen = () => {
      if (this._ws !== ws) return;
      clearTimeout(connectTimer);
      opened = true;
      this._wsEverOpened = true;
      this._wsFailures = 0;
      this._onConnected("websocket");
    };
    ws.onmessage = (ev) => {
      if (this._ws !== ws) return;
      if (typeof ev.data !== "string") return;
      // One message carries one or more frames, separated by "\n". A handler
      // may close the client midway: the rest of the batch is then dropped.
      for (const text of ev.data.split("\n")) {
        if (this._ws !== ws) break;
        this._onFrame(text);
      }
    };
    ws.onerror = () => {}; // A close event follows.
    ws.onclose = (ev) => {
      if (this._ws !== ws) return;
      clearTimeout(connectTimer);
      this._ws = null;
      let code = ev.code;
      let reason = ev.reason;
      const d = this._lastDisconnect;
      if (d && (code === 1006 || code === 1005)) code = d.code; // The frame said why; the TCP close lost it.
      if (!reason && d) reason = d.reason;
      if (!reason && !opened) reason = "connection failed";
      this._onTransportClosed(code, reason, opened);
    };
  }

  _startPing() {
    this._stopPing();
    const interval = this.options.pingInterval;
    if (!interval) return;
    this._pingTimer = setInterval(() => {
      const ws = this._ws;
      this._sendRequest("ping", {}).catch((err) => {
        if (err.code === "timeout" && this._ws === ws) this._dropTransport("no reply to ping");
      });
    }, interval);
  }

  _stopPing() {
    clearInterval(this._pingTimer);
    this._pingTimer = null;
  }

  // -------------------------------------------------------------------------
  // SSE transport (read-only; publish is POST /publish)
  // -------------------------------------------------------------------------

  // The cursor the edge accepts as Last-Event-ID: "room epoch offset" per room,
  // joined by ','.
  _cursor() {
    const entries = [];
    for (const room of this._rooms.values()) {
      if (room.position && room.position.epoch) entries.push(`${room.name} ${room.position.epoch} ${room.position.offset}`);
    }
    return entries.join(",");
  }

  _openSse() {
    const rooms = [...this._rooms.values()];
    if (rooms.length === 0) {
      // Nothing to stream: publishing needs no stream, so this is "connected".
      this._onConnected("sse");
      return;
    }
    const ES = this.options.EventSource || globalThis.EventSource;
    const params = rooms.map((r) => "room=" + encodeURIComponent(r.name));
    const cursor = this._cursor();
    if (cursor) params.push("lastEventId=" + encodeURIComponent(cursor));
    for (const r of rooms) {
      r._sseResumed = r.position !== null && r.position.epoch !== "";
      if (r.state === "joined") r.state = "joining";
    }
    let es;
    try {
      es = new ES(`${this.url}/sse?${params.join("&")}`);
    } catch (e) {
      setTimeout(() => this._onTransportClosed(1006, `cannot open EventSource: ${e.message}`, false));
      return;
    }
    this._es = es;
    this._esRooms = rooms.map((r) => r.name).join("\n");
    let opened = false;
    es.onopen = () => {
      if (this._es !== es) return;
      opened = true;
      this._lastDisconnect = null;
      if (this.state !== "connected") this._onConnected("sse");
    };
    es.onmessage = (ev) => {
      if (this._es !== es) return;
      this._onFrame(ev.data);
    };
    es.onerror = () => {
      if (this._es !== es) return;
      const d = this._lastDisconnect;
      if (es.readyState === 2 /* CLOSED: the browser gave up (HTTP error) */) {
        this._es = null;
        es.close();
        this._onTransportClosed(d ? d.code : 1006, d ? d.reason : "SSE stream failed", opened && this.state === "connected");
        return;
      }
      // CONNECTING: the browser reconnects by itself and resumes with
      // Last-Event-ID; the rooms are joined again by the edge.
      for (const r of this._rooms.values()) {
        if (r.state === "joined") r.state = "joining";
        r._sseResumed = r.position !== null && r.position.epoch !== "";
      }
      this.transport = null;
      this._setState("connecting", {
        code: d ? d.code : 1006,
        reason: d ? d.reason : "SSE stream interrupted",
        reconnect: true,
      });
      this._lastDisconnect = null;
      opened = false;
    };
  }

  _onSseDisconnectFrame() {
    const d = this._lastDisconnect;
    if (shouldReconnect(d.code)) return; // The stream ends and EventSource reconnects.
    const wasOpen = this.state === "connected";
    this._teardownTransport(1000, d.reason);
    this._onTransportClosed(d.code, d.reason, wasOpen);
  }

  // The set of rooms changed: reopen the stream (coalesced) with the cursor of
  // the rooms we already have, so nothing is lost or delivered twice.
  _sseRoomsChanged() {
    if (this._sseReopenScheduled) return;
    this._sseReopenScheduled = true;
    queueMicrotask(() => {
      this._sseReopenScheduled = false;
      if (this._userClosed || !this._useSse) return;
      if (this._es && this._esRooms === [...this._rooms.keys()].join("\n")) return; // Already streaming this set.
      if (this.state === "connected") {
        this._teardownTransport(1000, "rooms changed");
        this._openSse();
      } else if (this.state === "connecting" && this._es) {
        this._teardownTransport(1000, "rooms changed");
        this._openSse();
      }
      // Otherwise a pending reconnect opens the new set, or connect() will.
    });
  }

  _ssePublish(q) {
    const doFetch = this.options.fetch || globalThis.fetch.bind(globalThis);
    const controller = typeof AbortController === "function" ? new AbortController() : null;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (controller) controller.abort();
      q.reject(new RoomcastError("timeout", `no reply to publish within ${q.timeout} ms`));
    }, q.timeout);
    doFetch(`${this.url}/publish`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(q.body),
      signal: controller ? controller.signal : undefined,
    })
      .then(async (res) => {
        let json = {};
        try {
          json = await res.json();
        } catch {
          // Not JSON (a proxy error page, say).
        }
        clearTimeout(timer);
        if (timedOut) return;
        if (res.ok) q.resolve({ publish: json });
        else {
          const e = json.error || {};
          q.reject(new RoomcastError(e.code ?? "network", e.message || `POST /publish: HTTP ${res.status}`, { op: "publish", status: res.status }));
        }
      })
      .catch((err) => {
        clearTimeout(timer);
        if (!timedOut) q.reject(new RoomcastError("network", `POST /publish failed: ${err.message}`, { op: "publish" }));
      });
  }
}

export default Roomcast;
