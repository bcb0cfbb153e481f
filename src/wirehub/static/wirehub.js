// wirehub.js — the browser client of the wirehub event protocol, version 1.
//
//   import { connect } from "/wirehub.js";
//   const hub = connect("/ws");
//   hub.on("chat", (data, meta) => console.log(meta.room, data));
//   await hub.join("lobby", { history: 20 });
//   const reply = await hub.call("chat", { text: "hi" }, { timeout: 5000 });
//
// A zero-dependency ES module. The wire format is docs/PROTOCOL.md; the API
// mirrors the Python client (wirehub.Client); docs/browser.md is the guide.
// It reconnects with backoff when the close code allows it, re-joins rooms
// with recovery, checks that room offsets run on by one (a hole is filled
// by a re-join, or reported to "gap"), queues emits made while
// disconnected and flushes them after the welcome. Where WebSocket fails,
// it falls back to HTTP (streaming, or long-polling) and upgrades later.

const PROTOCOL_VERSION = 1;

// -- Codes ----------------------------------------------------------------
// Copies of wirehub.codes: tests/static/test_wirehub_js.py parses the two
// blocks below and checks them against CloseCode, should_reconnect and
// ErrorCode, so they cannot drift. Keep one entry per line.

// BEGIN CLOSE_CODES
const CLOSE_CODES = {
  NORMAL: { code: 1000, reconnect: false },
  GOING_AWAY: { code: 1001, reconnect: true },
  PROTOCOL_ERROR: { code: 1002, reconnect: false },
  UNSUPPORTED_DATA: { code: 1003, reconnect: false },
  ABNORMAL: { code: 1006, reconnect: true },
  INVALID_DATA: { code: 1007, reconnect: false },
  POLICY_VIOLATION: { code: 1008, reconnect: false },
  MESSAGE_TOO_BIG: { code: 1009, reconnect: false },
  INTERNAL_ERROR: { code: 1011, reconnect: true },
  SERVICE_RESTART: { code: 1012, reconnect: true },
  TRY_AGAIN_LATER: { code: 1013, reconnect: true },
  UNAUTHORIZED: { code: 4001, reconnect: false },
  FORBIDDEN: { code: 4003, reconnect: false },
  TOKEN_EXPIRED: { code: 4004, reconnect: true },
  SLOW_CONSUMER: { code: 4008, reconnect: true },
  RATE_LIMITED: { code: 4029, reconnect: true },
};
// END CLOSE_CODES

// BEGIN ERROR_CODES
const ERROR_CODES = {
  BAD_MESSAGE: "bad_message",
  UNKNOWN_EVENT: "unknown_event",
  INVALID_DATA: "invalid_data",
  FORBIDDEN: "forbidden",
  LIMIT_EXCEEDED: "limit_exceeded",
  RATE_LIMITED: "rate_limited",
  INTERNAL_ERROR: "internal_error",
  UNAVAILABLE: "unavailable",
};
// END ERROR_CODES

// Codes this client raises by itself (never sent by the server).
const CLIENT_ERROR_CODES = {
  TIMEOUT: "timeout", // no answer within the call's timeout
  DISCONNECTED: "disconnected", // the connection dropped before the answer came
  CLOSED: "closed", // close() was called, or the client gave up reconnecting
  QUEUE_FULL: "queue_full", // queueLimit messages already wait for the connection
  TOKEN_EXPIRING: "token_expiring", // the server asked for a new token and no token function was given
};

const FINAL = new Set(
  Object.values(CLOSE_CODES).filter((c) => !c.reconnect).map((c) => c.code),
);

/** Whether a client closed with `code` should reconnect (wirehub.codes.should_reconnect). */
function shouldReconnect(code) {
  return !FINAL.has(code);
}

// Names of the client's own callbacks: server events with these names are not delivered.
const LIFECYCLE = new Set([
  "connect", "disconnect", "reconnecting", "reconnect", "error", "presence", "gap",
  "joined", "left",
]);

// -- Errors ---------------------------------------------------------------

/** Root of the errors wirehub.js throws or rejects with: `.code` (a string), `.details`. */
class WirehubError extends Error {
  constructor(code, message, details = null) {
    super(message);
    this.name = "WirehubError";
    this.code = code;
    this.details = details;
  }
}

/** The server answered a request with an `error` message. */
class CallError extends WirehubError {
  constructor(code, message, details = null) {
    super(code, message, details);
    this.name = "CallError";
  }
}

/** No answer within the timeout (code "timeout"). */
class CallTimeout extends CallError {
  constructor(what, timeout) {
    super("timeout", `no answer to ${what} within ${timeout} ms`, { timeout });
    this.name = "CallTimeout";
  }
}

/** The connection closed first: code "disconnected" (it may come back) or "closed" (for good). */
class ConnectionClosed extends WirehubError {
  constructor(code, closeCode, reason) {
    const text = code === "closed" ? "the client is closed" : "the connection was lost";
    super(code, `${text} (${closeCode}${reason ? " " + reason : ""})`, { closeCode, reason });
    this.name = "ConnectionClosed";
    this.closeCode = closeCode;
    this.reason = reason;
  }
}

// -- Binary messages (PROTOCOL.md §1) ----------------------------------------
// A 4-byte big-endian length N, N bytes of JSON header, then the payload.

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function isBinary(data) {
  return data instanceof ArrayBuffer || ArrayBuffer.isView(data);
}

function asBytes(data) {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function packBinary(header, payload) {
  const head = encoder.encode(JSON.stringify(header));
  const body = asBytes(payload);
  const frame = new Uint8Array(4 + head.length + body.length);
  new DataView(frame.buffer).setUint32(0, head.length);
  frame.set(head, 4);
  frame.set(body, 4 + head.length);
  return frame;
}

function unpackBinary(buffer) {
  const length = buffer.byteLength >= 4 ? new DataView(buffer).getUint32(0) : -1;
  if (length < 0 || length > buffer.byteLength - 4) {
    throw new Error("malformed binary message");
  }
  const header = JSON.parse(decoder.decode(new Uint8Array(buffer, 4, length)));
  return [header, new Uint8Array(buffer, 4 + length)];
}

/** A message ready to send: a string (JSON) or bytes (binary), with data as sent. */
function encodeMessage(message, data) {
  if (data !== undefined && isBinary(data)) return packBinary(message, data);
  if (data !== undefined && data !== null) message = { ...message, data };
  return JSON.stringify(message);
}

function sizeOf(frame) {
  return typeof frame === "string" ? encoder.encode(frame).length : frame.byteLength;
}

// -- Reconnection ----------------------------------------------------------

const RECONNECT_DEFAULTS = {
  initialDelay: 500, maxDelay: 30000, factor: 2, jitter: 0.5, maxAttempts: null,
};

/**
 * Milliseconds to wait before reconnection attempt `attempt` (1 for the first):
 * initialDelay * factor ** (attempt - 1), capped at maxDelay, of which the
 * fraction `jitter` is random — the Python client's Reconnect policy.
 */
function backoffDelay(attempt, policy = RECONNECT_DEFAULTS, random = Math.random) {
  const p = { ...RECONNECT_DEFAULTS, ...policy };
  const base = Math.min(p.initialDelay * p.factor ** (attempt - 1), p.maxDelay);
  return base * (1 - p.jitter * random());
}

/**
 * Milliseconds a close reason asks the client to wait before reconnecting
 * (a server shutting down spreads its clients: "...; retry_after=0.734",
 * PROTOCOL.md §6), or null — wirehub.codes.retry_after.
 */
function retryAfter(reason) {
  const match = /retry_after=(\d{1,6}(?:\.\d{1,6})?)$/.exec(reason || "");
  return match ? Number(match[1]) * 1000 : null;
}

/** The WebSocket URL: relative to the page, ws(s) from http(s), a token as `?token=` if given. */
function resolveUrl(url, token) {
  const resolved = new URL(url, globalThis.location ? globalThis.location.href : undefined);
  if (resolved.protocol === "http:") resolved.protocol = "ws:";
  if (resolved.protocol === "https:") resolved.protocol = "wss:";
  if (token != null) resolved.searchParams.set("token", token);
  return resolved.href;
}

// -- The HTTP fallback (PROTOCOL.md §14) ---------------------------------------
// In a module of its own, fetched from beside this one the first time a page needs it.

const TRANSPORTS = ["websocket", "streaming", "long-polling"];
let fallback = null;
async function http(attempt) {
  // A failed import stays failed for its URL: the next attempt asks for another one.
  const url = new URL(`./wirehub-http.js${attempt ? `?${attempt}` : ""}`, import.meta.url);
  return (fallback = fallback || (await import(url.href)));
}

function report(error) {
  // A handler's exception must not break the client: surface it like any
  // uncaught error (the console, window "error" listeners) and go on.
  if (typeof globalThis.reportError === "function") globalThis.reportError(error);
  else setTimeout(() => { throw error; });
}

// -- The client -------------------------------------------------------------

/**
 * A connection to a wirehub event endpoint that survives disconnections.
 * Create it with `connect(url, options)`; it starts connecting at once.
 */
class Client {
  constructor(url, options = {}) {
    resolveUrl(url); // a URL that cannot work throws here, not on every attempt
    this.url = url;
    this.options = options;
    this.reconnectPolicy = options.reconnect === false
      ? null
      : { ...RECONNECT_DEFAULTS, ...(options.reconnect === true ? {} : options.reconnect) };
    this.queueLimit = options.queueLimit ?? 100;
    this.callTimeout = options.callTimeout === undefined ? 10000 : options.callTimeout;
    this.openTimeout = options.openTimeout ?? 10000;
    if (![undefined, "query", "message"].includes(options.tokenIn)) {
      throw new TypeError('tokenIn is "query" or "message"');
    }
    this.heartbeat = options.heartbeat === undefined ? 25000 : options.heartbeat;
    this.transports = options.transports || TRANSPORTS;
    if (!this.transports.every((t) => TRANSPORTS.includes(t))) throw new TypeError(`transports: ${TRANSPORTS}`);
    this.fallbackAfter = options.fallbackAfter ?? 2;
    this.wsTimeout = options.wsTimeout ?? 4000;
    this.probeInterval = options.probeInterval ?? 30000;
    this._wsFailures = 0; // WebSockets in a row that failed before their welcome
    /** "connecting" → "open" ⇄ "reconnecting" → "closed". */
    this.state = "connecting";
    /** The server's welcome message (peer id, ping interval, limits), once welcomed. */
    this.welcome = null;
    this._handlers = new Map();
    this._ws = null;
    this._nextId = 1;
    this._pending = new Map(); // request id → request awaiting its answer
    this._queue = []; // what waits for the next welcome: [frame] or a request
    this._rooms = new Set(); // joined rooms, re-joined after a reconnect
    this._positions = new Map(); // room → { epoch, offset } last processed
    this._held = new Map(); // room → { entries, cause }: held while a join is in flight
    this._early = []; // messages a server sent before its welcome (it should not)
    this._attempt = 0;
    this._hinted = false; // the first attempt waited the delay the server suggested
    this._timers = {};
    this._closing = false;
    this._waiters = [];
    this._open();
  }

  /** How the client is connected: "websocket", "streaming", "long-polling", or null. */
  get transport() {
    return this.state === "open" && this._ws ? this._ws.kind || "websocket" : null;
  }

  /** This connection's peer id (a new one after every reconnect), or null. */
  get id() {
    return this.welcome && this.state === "open" ? this.welcome.peer : null;
  }

  /** The rooms this client is in, joined by it or by the server (re-joined after a reconnect). */
  get rooms() {
    return [...this._rooms];
  }

  // -- handlers ------------------------------------------------------------

  /**
   * Call `handler` for server event `event` with `(data, meta)`, or for a
   * lifecycle callback: "connect", "disconnect", "reconnecting",
   * "reconnect", "error", "presence", "gap", "joined" and "left" (the room's name: the
   * server put this client in a room, or took it out). Returns a function that unregisters it.
   * An event's first handler answers the server's calls (peer.call) with its value.
   */
  on(event, handler) {
    if (typeof handler !== "function") throw new TypeError("a handler must be a function");
    const list = this._handlers.get(event) || [];
    this._handlers.set(event, [...list, handler]);
    return () => this.off(event, handler);
  }

  /** Unregister `handler` for `event`, or every handler of `event` when omitted. */
  off(event, handler) {
    const kept = (this._handlers.get(event) || []).filter((h) => handler && h !== handler);
    if (kept.length) this._handlers.set(event, kept);
    else this._handlers.delete(event);
  }

  _fire(event, ...args) {
    for (const handler of this._handlers.get(event) || []) {
      try {
        handler(...args);
      } catch (error) {
        report(error);
      }
    }
  }

  // -- sending ---------------------------------------------------------------

  /**
   * Send an event without waiting for an answer; bytes (ArrayBuffer or a
   * typed array) travel in a binary message. While disconnected the event is
   * queued and sent after the next welcome. Throws a WirehubError:
   * "queue_full", "limit_exceeded" (larger than the server accepts), or
   * "closed"; a TypeError when `data` cannot be JSON.
   */
  emit(event, data) {
    const frame = encodeMessage({ type: "emit", event }, data);
    this._checkSize(frame);
    this._submit({ frame });
  }

  /**
   * Send an event and resolve with the server's ack data (the handler's return
   * value; a Uint8Array when it returned bytes). Rejects with CallError (the
   * server's error code, message and details), CallTimeout (code "timeout")
   * or ConnectionClosed (code "disconnected" or "closed").
   */
  call(event, data, { timeout = this.callTimeout } = {}) {
    return this._request(`"${event}"`, { type: "emit", event }, data, timeout);
  }

  /**
   * Join `room`; resolve with the ack data {epoch, offset, members?}.
   * `history: N` replays the room's last N kept events (to the room's event
   * handlers) before it resolves. Joined rooms are re-joined after a
   * reconnect, with recovery. Rejects like `call`.
   */
  async join(room, { history = 0, timeout = this.callTimeout } = {}) {
    if (typeof room !== "string" || !room) throw new TypeError("a room name is a non-empty string");
    const message = { type: "join", room };
    if (history > 0) {
      message.history = history;
      this._positions.delete(room); // deliver the replayed events, even if seen before
    }
    const ack = await this._request(`join "${room}"`, message, undefined, timeout, room);
    this._rooms.add(room);
    return ack;
  }

  /** Leave `room` (it is forgotten at once: never re-joined); resolves when acknowledged. */
  async leave(room, { timeout = this.callTimeout } = {}) {
    this._rooms.delete(room);
    this._positions.delete(room);
    this._held.delete(room);
    await this._request(`leave "${room}"`, { type: "leave", room }, undefined, timeout);
  }

  /** Send an application ping; resolve with the round-trip time in milliseconds. */
  async ping({ timeout = this.callTimeout } = {}) {
    const start = performance.now();
    await this._request("ping", { type: "ping" }, undefined, timeout);
    return performance.now() - start;
  }

  /** Resolve once the client is welcomed (at once if it is); reject if it closes for good. */
  ready() {
    if (this.state === "open") return Promise.resolve(this);
    if (this.state === "closed") return Promise.reject(this._closedError());
    return new Promise((resolve, reject) => this._waiters.push({ resolve, reject }));
  }

  /**
   * Close with 1000 and stop reconnecting: queued and pending requests reject
   * with code "closed". The state is "closed" at once; the promise resolves
   * when the socket is closed. Closing twice is harmless.
   */
  close(reason = "") {
    if (this.state === "closed") return Promise.resolve();
    this._closing = true;
    const ws = this._ws;
    if (ws) ws.close(1000, reason); // a fallback session closes at once
    const closed = new Promise((resolve) => {
      if (!ws || ws.readyState === 3) resolve();
      else ws.addEventListener("close", () => resolve(), { once: true });
    });
    this._lost(ws, 1000, reason);
    return closed;
  }

  // -- requests --------------------------------------------------------------

  _request(what, message, data, timeout, room = null, cause = null) {
    return new Promise((resolve, reject) => {
      const request = { what, message, data, room, cause, resolve, reject, id: 0, timer: null };
      if (timeout != null) {
        request.timer = setTimeout(() => this._expire(request, timeout), timeout);
      }
      try {
        this._submit(request);
      } catch (error) {
        clearTimeout(request.timer);
        reject(error);
      }
    });
  }

  _submit(item) {
    if (this.state === "closed") throw this._closedError();
    if (this.state === "open") return this._transmit(item);
    if (this._queue.length >= this.queueLimit) {
      throw new WirehubError(
        "queue_full",
        `not connected and ${this.queueLimit} messages already wait to be sent (queueLimit)`,
        { queueLimit: this.queueLimit },
      );
    }
    this._queue.push(item);
  }

  _transmit(item) {
    if (item.frame !== undefined) {
      this._ws.send(item.frame);
      return;
    }
    const id = this._nextId++;
    const frame = encodeMessage({ ...item.message, id }, item.data);
    this._checkSize(frame);
    item.id = id;
    this._pending.set(id, item);
    if (item.room !== null) {
      const held = this._held.get(item.room) || { entries: [], cause: null };
      held.cause = held.cause || item.cause;
      this._held.set(item.room, held);
    }
    this._ws.send(frame);
  }

  _checkSize(frame) {
    const limit = this.welcome && this.welcome.limits && this.welcome.limits.max_message_size;
    const size = limit ? sizeOf(frame) : 0;
    if (limit && size > limit) {
      throw new WirehubError(
        "limit_exceeded",
        `a message of ${size} bytes exceeds the server's limit of ${limit}`,
        { size, limit },
      );
    }
  }

  _expire(request, timeout) {
    const queued = this._queue.indexOf(request);
    if (queued >= 0) this._queue.splice(queued, 1);
    this._settle(request, null, new CallTimeout(request.what, timeout));
  }

  /** Answer a request: forget it, release its room's held events, resolve or reject. */
  _settle(request, data, error) {
    if (request.done) return;
    request.done = true;
    clearTimeout(request.timer);
    if (request.id) this._pending.delete(request.id);
    if (request.room !== null && request.id) {
      if (!error && data && typeof data.epoch === "string") this._joined(request.room, data);
      else this._release(request.room, false);
      // A re-join answered after the server took us out ("left"): leave again, its word stands.
      if (!error && request.message.since && !this._rooms.has(request.room)) this.leave(request.room).catch(() => {});
    }
    if (error) request.reject(error);
    else request.resolve(data);
  }

  _closedError() {
    const why = this._why || { code: 1000, reason: "" };
    return new ConnectionClosed("closed", why.code, why.reason);
  }

  // -- receiving -------------------------------------------------------------

  _receive(raw) {
    let message;
    let payload;
    try {
      if (typeof raw === "string") message = JSON.parse(raw);
      else [message, payload] = unpackBinary(raw);
    } catch (error) {
      console.warn("wirehub: ignoring a malformed message:", error.message);
      return;
    }
    const data = payload !== undefined ? payload : (message.data ?? null);
    if (this.state !== "open" && message.type !== "welcome") this._early.push([message, data]);
    else this._handle(message, data);
  }

  _handle(message, data) {
    switch (message.type) {
      case "welcome":
        return this._welcomed(message);
      case "event":
        return this._event(message, data);
      case "ack":
        return this._answer(message.id, data, null);
      case "error":
        return this._error(message);
      case "presence":
        return this._fire("presence", { room: message.room, joined: message.joined || null, left: message.left || null });
      case "refresh":
        return this._refreshToken(message.expires_in);
      case "gap":
        return this._arrive(message.room, { pos: { epoch: message.epoch, offset: message.offset }, notice: message.reason || "" });
      case "skip": // an event that excluded us: it takes its offset, the page gets nothing
        return this._arrive(message.room, { pos: { epoch: message.epoch, offset: message.offset }, skip: true });
      case "joined": // the server put us in a room: its events follow this position
        return this._serverJoined(message.room, { epoch: message.epoch, offset: message.offset });
      case "left": // the server took us out (a kick): no event of it follows
        return this._serverLeft(message.room);
      default:
        return undefined; // PROTOCOL.md §11: ignore message types we do not know
    }
  }

  _answer(id, data, error) {
    const request = this._pending.get(id);
    if (request) this._settle(request, data, error); // else: it timed out; drop the late answer
  }

  _error(message) {
    const { code, details = null } = message;
    if (message.id == null) {
      this._fire("error", new WirehubError(code, message.message, details));
    } else {
      this._answer(message.id, null, new CallError(code, message.message, details));
    }
  }

  _event(message, data) {
    const { event, room = null, epoch = null, offset = null } = message;
    const meta = { event, room, epoch, offset };
    if (message.id != null) this._called(message.id, meta, data);
    else if (room === null || epoch === null || offset === null) this._deliver(meta, data);
    else this._arrive(room, { pos: { epoch, offset }, meta, data });
  }

  _deliver(meta, data) {
    if (LIFECYCLE.has(meta.event)) {
      console.warn(`wirehub: server event "${meta.event}" has a reserved name; not delivered`);
      return;
    }
    this._fire(meta.event, data, meta);
  }

  /** The server calls us (PROTOCOL.md §4): the event's first handler answers with its value. */
  async _called(id, meta, data) {
    const ws = this._ws;
    const handler = !LIFECYCLE.has(meta.event) && (this._handlers.get(meta.event) || [])[0];
    let reply;
    try {
      if (!handler) throw new WirehubError("unknown_event", `no client handler for "${meta.event}"`);
      reply = encodeMessage({ type: "ack", id }, await handler(data, meta));
    } catch (error) {
      const own = error instanceof WirehubError;
      if (!own) report(error);
      reply = JSON.stringify({ type: "error", id, code: own ? error.code : "internal_error",
        message: own ? error.message : "internal error", details: own ? error.details : null });
    }
    if (this._ws === ws && this.state === "open") ws.send(reply); // else: the call died with it
  }

  // -- room streams (PROTOCOL.md §7) ---------------------------------------------
  // Entries are room events {pos, meta, data}, skip markers {pos, skip} (checked like
  // events, delivered as nothing) or server gap notices {pos, notice}.

  _arrive(room, entry) {
    const held = this._held.get(room);
    if (held) held.entries.push(entry); // a join is in flight: sorted at its ack
    else this._walk(room, [entry], true);
  }

  /** Process entries in order; at a hole: re-join (recover true), report (false) or stop (null). */
  _walk(room, entries, recover) {
    for (let i = 0; i < entries.length; i++) {
      const { pos, meta, data, notice, skip } = entries[i];
      const last = this._positions.get(room) || null;
      if (last && !after(last, pos)) continue; // a duplicate, or a notice we are past
      if ((meta || skip) && last && !(last.epoch === pos.epoch && pos.offset === last.offset + 1)) {
        const reason = last.epoch === pos.epoch ? "jump" : "epoch";
        if (recover === null) return;
        if (recover) {
          this._held.set(room, { entries: entries.slice(i), cause: reason });
          const message = { type: "join", room, since: last };
          this._request(`join "${room}"`, message, undefined, this.callTimeout, room).catch(() => {});
          return;
        }
        this._gap(room, reason, last, { epoch: pos.epoch, offset: pos.offset - 1 });
      }
      this._positions.set(room, pos);
      if (meta) this._deliver(meta, data);
      else if (!skip) this._gap(room, "server", last, pos, notice);
    }
  }

  _gap(room, reason, last, position, detail = "") {
    this._fire("gap", { room, reason, last, position, detail });
  }

  /** A join of `room` was acknowledged: deliver its held events, after a gap if some are missing. */
  _joined(room, ack) {
    const { entries, cause } = this._held.get(room) || { entries: [], cause: null };
    this._held.delete(room);
    const last = this._positions.get(room);
    let pos = { epoch: ack.epoch, offset: ack.offset };
    // An earlier of two overlapping re-joins answering: the stream is past it, never back.
    if (last && last.epoch === pos.epoch && pos.offset < last.offset) pos = last;
    if (!last) this._upTo(room, entries, null, pos); // a first join: no promise before the ack
    else if (ack.recovered) this._upTo(room, entries, last, pos);
    else if (ack.recovered == null && !cause) pos = last; // joined again: the stream goes on
    else this._rebase(room, entries, last, pos, cause);
    this._positions.set(room, pos);
    const stale = last && last.epoch !== pos.epoch ? last.epoch : null;
    const rest = entries.filter((e) => after(pos, e.pos) && e.pos.epoch !== stale);
    this._walk(room, ordered(rest, pos.epoch), true);
  }

  /**
   * Deliver the held events of the ack's epoch after `last`, up to the ack's, once. A server
   * notice among them ahead of what was delivered is a gap (rule 3): the replay may still
   * have a hole the server announced. A first join's notice before any event is no gap.
   */
  _upTo(room, entries, last, pos) {
    let floor = last && last.epoch === pos.epoch ? last.offset : 0;
    for (const { pos: at, meta, data, notice } of ordered(entries, pos.epoch)) {
      if (at.epoch !== pos.epoch || at.offset <= floor || at.offset > pos.offset) continue;
      if (notice === undefined) {
        if (meta) this._deliver(meta, data); // else a skip: nothing
      } else if (last) this._gap(room, "server", last, at, notice);
      else continue;
      floor = at.offset;
      last = at;
    }
  }

  /** Not recovered: the gap, then the held events that lead up to the ack without a hole. */
  _rebase(room, entries, last, ack, cause) {
    const kept = new Map();
    for (const e of entries) if ((e.meta || e.skip) && e.pos.epoch === ack.epoch) kept.set(e.pos.offset, e);
    let start = ack.offset;
    while (start > (last.epoch === ack.epoch ? last.offset : 0) && kept.has(start)) start--;
    if (last.epoch !== ack.epoch || last.offset !== start) {
      const reason = cause === "recovery" ? cause : last.epoch === ack.epoch ? "jump" : "epoch";
      this._gap(room, reason, last, { epoch: ack.epoch, offset: start });
    }
    for (let n = start + 1; n <= ack.offset; n++) {
      const { meta, data } = kept.get(n);
      if (meta) this._deliver(meta, data);
    }
  }

  /** Stop holding `room` (its join failed, or the connection dropped: `stop`). */
  _release(room, stop) {
    const held = this._held.get(room);
    this._held.delete(room);
    const last = this._positions.get(room);
    if (held) this._walk(room, ordered(held.entries, last && last.epoch), stop ? null : false);
  }

  /** The server asks for a new token before the current one expires (PROTOCOL.md §13). */
  async _refreshToken(expiresIn) {
    const source = this.options.token;
    if (typeof source !== "function") {
      const message = `the token expires in ${expiresIn} s: give connect() a token function to refresh it`;
      this._fire("error", new WirehubError("token_expiring", message, { expires_in: expiresIn }));
      return;
    }
    const ws = this._ws;
    try {
      const token = await source();
      if (this._ws !== ws || this.state !== "open") return; // a new connection authenticates itself
      await this._request("token refresh", { type: "auth", token }, undefined, this.callTimeout);
    } catch (error) {
      if (!(error instanceof ConnectionClosed)) this._fire("error", error);
    }
  }

  // -- the connection's life ---------------------------------------------------

  async _open() {
    let token;
    try {
      token = await this._token();
    } catch (error) {
      report(error);
      return this._lost(null, 1006, "could not get a token");
    }
    let ws;
    try {
      ws = this._webSocketFirst() ? this._socket(token) : new (await http(this._attempt)).HttpSocket(resolveUrl(this.url), {
        token, stream: this.transports.includes("streaming"),
      });
    } catch (error) {
      return this._lost(null, 1006, "could not load wirehub-http.js");
    }
    if (this._closing) return ws.close();
    ws.onmessage = (event) => this._ws === ws && this._receive(event.data);
    ws.onclose = (event) => this._lost(ws, event.code, event.reason);
    this._ws = ws;
    this._timers.open = setTimeout(() => this._drop(ws, "no welcome in time"), this.openTimeout);
    // A handshake that neither opens nor fails soon is likely held by a proxy.
    if (!ws.kind) this._timers.ws = setTimeout(() => ws.readyState || this._drop(ws, "no handshake"), this.wsTimeout);
    return undefined;
  }

  async _token() {
    const token = this.options.token;
    return typeof token === "function" ? token() : token;
  }

  _wsAllowed() {
    return typeof WebSocket === "function" && this.transports.includes("websocket");
  }

  /** WebSocket, unless it is missing, not allowed, or failed `fallbackAfter` times in a row. */
  _webSocketFirst() {
    return this._wsAllowed() && (this.transports.length < 2 || this._wsFailures < this.fallbackAfter);
  }

  _socket(token) {
    // In the first message unless asked: URLs end up in proxies' access logs (security.md).
    const inMessage = this.options.tokenIn !== "query";
    const url = new URL(resolveUrl(this.url, inMessage ? null : token));
    // A reconnection names the lost peer: its welcome says how the server closed it (§2).
    if (this.welcome) url.searchParams.set("last_peer", this.welcome.peer);
    const ws = new WebSocket(url.href);
    ws.binaryType = "arraybuffer";
    if (inMessage && token != null) {
      // The first message authenticates; the welcome answers it (PROTOCOL.md §13).
      ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token }));
    }
    return ws;
  }

  /** On the HTTP fallback: try a WebSocket now and then; when one is welcomed, move to it. */
  _probe() {
    clearTimeout(this._timers.probe);
    if (this._wsAllowed() && this._ws?.kind) this._timers.probe = setTimeout(() => this._upgrade(), this.probeInterval);
  }

  async _upgrade() {
    const ws = (this._probing = this._socket(await this._token().catch(() => null)));
    const give = setTimeout(() => ws.close(), this.openTimeout);
    ws.onclose = () => clearTimeout(give) || this._probe();
    ws.onmessage = (event) => {
      clearTimeout(give);
      ws.onmessage = (e) => this._ws === ws && this._receive(e.data);
      ws.onclose = (e) => this._lost(ws, e.code, e.reason);
      const old = this._ws;
      if (this.state !== "open" || !old?.kind || this._pending.size) return this._drop(ws, "busy") || this._probe();
      // Like a reconnection, without the wait: the rooms are recovered over the WebSocket.
      old.onclose = null;
      old.close(1000, "upgraded");
      clearInterval(this._timers.heartbeat);
      for (const room of [...this._held.keys()]) this._release(room, true);
      this._ws = ws;
      return this._receive(event.data);
    };
  }

  /** Give up on a socket that stopped answering; the loss is handled at once. */
  _drop(ws, reason) {
    ws.onclose = null;
    ws.close(4000, reason);
    this._lost(ws, 1006, reason);
  }

  _welcomed(welcome) {
    clearTimeout(this._timers.open);
    if (this._ws.kind) this._probe();
    else this._wsFailures = 0;
    if (welcome.v !== PROTOCOL_VERSION) {
      // PROTOCOL.md §11 asks for 1002, which browsers may not send: 1000, and stop.
      this._why = { code: 1000, reason: `unsupported protocol version ${welcome.v}` };
      this._fire("error", new WirehubError("bad_message", this._why.reason, { v: welcome.v }));
      this.close(this._why.reason);
      return;
    }
    const attempts = this._attempt;
    const reconnected = this.welcome !== null;
    const adopted = this._adoptRooms(welcome.rooms || {}, reconnected);
    this.welcome = welcome;
    this.state = "open";
    this._attempt = 0;
    const restored = reconnected ? this._restore() : null; // re-joins first, then the queue
    for (const item of this._queue.splice(0)) {
      try {
        this._transmit(item);
      } catch (error) {
        if (item.reject) this._settle(item, null, error);
        else report(error);
      }
    }
    this._startHeartbeat();
    for (const waiter of this._waiters.splice(0)) waiter.resolve(this);
    this._fire("connect", welcome);
    for (const room of adopted) this._fire("joined", room);
    for (const [message, data] of this._early.splice(0)) this._handle(message, data);
    if (restored) {
      const closed = welcome.closed || null;
      restored.then((outcome) => outcome && this._fire("reconnect", { attempts, ...outcome, closed }));
    }
  }

  /**
   * Rooms the server joined this peer to before welcoming it, with their
   * positions (PROTOCOL.md §7): those of the first welcome count as joined.
   * A known position is kept, so the re-join still recovers what was missed.
   * Returns the rooms new to `rooms`.
   */
  _adoptRooms(rooms, reconnected) {
    const adopted = [];
    for (const [room, position] of Object.entries(rooms)) {
      if (!reconnected && !this._rooms.has(room)) adopted.push(room);
      if (!reconnected) this._rooms.add(room);
      if (!this._positions.has(room)) this._positions.set(room, { epoch: position.epoch, offset: position.offset });
    }
    return adopted;
  }

  /** The server joined us to `room`: ours from `position` on (a known position is kept). */
  _serverJoined(room, position) {
    if (!this._positions.has(room)) this._positions.set(room, position);
    if (this._rooms.has(room)) return;
    this._rooms.add(room);
    this._fire("joined", room);
  }

  /** The server took us out of `room`: forgotten, so never re-joined nor replayed. */
  _serverLeft(room) {
    this._positions.delete(room);
    this._held.delete(room);
    if (this._rooms.delete(room)) this._fire("left", room);
  }

  /** Re-join every room with `since` = its last position; resolve with what was recovered. */
  async _restore() {
    const rooms = [...this._rooms];
    const results = await Promise.all(rooms.map((room) => this._rejoin(room)));
    if (results.some((r) => r === null)) return null; // dropped again: the next welcome restores
    const recovered = {};
    const acks = {};
    rooms.forEach((room, i) => {
      recovered[room] = results[i].recovered;
      if (results[i].ack) acks[room] = results[i].ack;
    });
    const gaps = rooms.filter((room) => !recovered[room]);
    return { recovered, gaps, acks };
  }

  async _rejoin(room) {
    const since = this._positions.get(room);
    const message = { type: "join", room };
    if (since) message.since = { epoch: since.epoch, offset: since.offset };
    try {
      const ack = await this._request(`join "${room}"`, message, undefined, this.callTimeout, room, "recovery");
      return { ack, recovered: Boolean(since && ack.recovered) };
    } catch (error) {
      if (error instanceof ConnectionClosed) return null;
      if (!this._rooms.has(room)) return { ack: null, recovered: false }; // "left" meanwhile
      this._rooms.delete(room); // refused now: no longer a member
      this._positions.delete(room);
      this._gap(room, "recovery", since || null, null, `could not re-join: ${error.message}`);
      this._fire("error", error);
      return { ack: null, recovered: false };
    }
  }

  _startHeartbeat() {
    const interval = this.heartbeat;
    if (!interval) return;
    const ws = this._ws;
    this._timers.heartbeat = setInterval(() => {
      this.ping({ timeout: interval }).catch((error) => {
        if (error.code === "timeout") this._drop(ws, "heartbeat timeout");
      });
    }, interval);
  }

  /** The socket closed (or was given up): fail what waited on it, then reconnect or stop. */
  _lost(ws, code, reason) {
    if (ws !== this._ws || this.state === "closed") return;
    if (ws) ws.onmessage = ws.onclose = null;
    this._ws = null;
    clearTimeout(this._timers.open);
    clearTimeout(this._timers.ws);
    clearTimeout(this._timers.probe);
    clearInterval(this._timers.heartbeat);
    if (this._probing) this._drop(this._probing, "lost");
    const wasOpen = this.state === "open";
    // Failed before the welcome: a WebSocket counts against it; the fallback too: the server is down.
    if (ws && !wasOpen) this._wsFailures = ws.kind ? this._wsFailures * (code !== 1006) : this._wsFailures + 1;
    this._why = { code, reason };
    const policy = this.reconnectPolicy;
    const again = !this._closing && policy !== null && shouldReconnect(code) &&
      (policy.maxAttempts == null || this._attempt < policy.maxAttempts);
    // What follows on is delivered; what is past a hole, the re-join after the reconnection recovers.
    for (const room of [...this._held.keys()]) this._release(room, true);
    this._early = [];
    // Sent but unanswered: it may or may not have run (PROTOCOL.md §4).
    const failed = this._closing ? "closed" : "disconnected";
    for (const request of [...this._pending.values()]) {
      this._settle(request, null, new ConnectionClosed(failed, code, reason));
    }
    if (wasOpen || !again) this._fire("disconnect", { code, reason, reconnect: again });
    if (again) this._schedule(retryAfter(reason));
    else this._stop();
  }

  _schedule(hint = null) {
    this.state = "reconnecting";
    const attempt = ++this._attempt;
    if (attempt === 1) this._hinted = hint !== null;
    // The server's suggested delay comes first (bounded by maxDelay); the backoff
    // of the attempts after it starts from its first step.
    const delay = attempt === 1 && hint !== null
      ? Math.min(hint, this.reconnectPolicy.maxDelay)
      : backoffDelay(attempt - (this._hinted ? 1 : 0), this.reconnectPolicy);
    this._fire("reconnecting", { attempt, delay });
    this._timers.retry = setTimeout(() => this._open(), delay);
  }

  _stop() {
    this.state = "closed";
    clearTimeout(this._timers.retry);
    const error = this._closedError();
    for (const item of this._queue.splice(0)) if (item.reject) this._settle(item, null, error);
    for (const waiter of this._waiters.splice(0)) waiter.reject(error);
  }
}

/** Whether position `b` comes after `a`: a greater offset, or another epoch (no order known). */
function after(a, b) {
  return a.epoch !== b.epoch || b.offset > a.offset;
}

/** Entries of `epoch` first, then other epochs in order of arrival; by offset, a notice last. */
function ordered(entries, epoch) {
  const rank = new Map([[epoch, 0]]);
  for (const e of entries) if (!rank.has(e.pos.epoch)) rank.set(e.pos.epoch, rank.size);
  return [...entries].sort((a, b) => rank.get(a.pos.epoch) - rank.get(b.pos.epoch) ||
    a.pos.offset - b.pos.offset || (a.notice !== undefined) - (b.notice !== undefined));
}

/** A Client of the event endpoint at `url` (relative to the page is fine); it connects at once. */
function connect(url = "/ws", options = {}) {
  return new Client(url, options);
}

export {
  CallError,
  CallTimeout,
  Client,
  CLIENT_ERROR_CODES,
  CLOSE_CODES,
  ConnectionClosed,
  ERROR_CODES,
  PROTOCOL_VERSION,
  WirehubError,
  backoffDelay,
  connect,
  retryAfter,
  shouldReconnect,
};
