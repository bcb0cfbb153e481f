// Types of wirehub.js, the browser client of the wirehub event protocol v1.
// docs/browser.md is the guide; docs/PROTOCOL.md the wire format.

/** Any value JSON can carry. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Bytes to send in a binary message. */
export type Bytes = ArrayBuffer | ArrayBufferView;

/** Data an event or call may carry: JSON, or bytes (sent as a binary message). */
export type EventData = Json | Bytes | undefined;

export type State = "connecting" | "open" | "reconnecting" | "closed";

export declare const PROTOCOL_VERSION: 1;

export interface CloseCodeEntry {
  readonly code: number;
  /** Whether a client closed with this code reconnects (wirehub.codes.should_reconnect). */
  readonly reconnect: boolean;
}

/** wirehub.codes.CloseCode, with should_reconnect for each code. */
export declare const CLOSE_CODES: {
  readonly NORMAL: CloseCodeEntry;
  readonly GOING_AWAY: CloseCodeEntry;
  readonly PROTOCOL_ERROR: CloseCodeEntry;
  readonly UNSUPPORTED_DATA: CloseCodeEntry;
  readonly ABNORMAL: CloseCodeEntry;
  readonly INVALID_DATA: CloseCodeEntry;
  readonly POLICY_VIOLATION: CloseCodeEntry;
  readonly MESSAGE_TOO_BIG: CloseCodeEntry;
  readonly INTERNAL_ERROR: CloseCodeEntry;
  readonly SERVICE_RESTART: CloseCodeEntry;
  readonly TRY_AGAIN_LATER: CloseCodeEntry;
  readonly UNAUTHORIZED: CloseCodeEntry;
  readonly FORBIDDEN: CloseCodeEntry;
  readonly TOKEN_EXPIRED: CloseCodeEntry;
  readonly SLOW_CONSUMER: CloseCodeEntry;
  readonly RATE_LIMITED: CloseCodeEntry;
};

/** wirehub.codes.ErrorCode: the `code` of the server's `error` messages. */
export declare const ERROR_CODES: {
  readonly BAD_MESSAGE: "bad_message";
  readonly UNKNOWN_EVENT: "unknown_event";
  readonly INVALID_DATA: "invalid_data";
  readonly FORBIDDEN: "forbidden";
  readonly LIMIT_EXCEEDED: "limit_exceeded";
  readonly RATE_LIMITED: "rate_limited";
  readonly INTERNAL_ERROR: "internal_error";
  readonly UNAVAILABLE: "unavailable";
};

/** Codes the client raises by itself. */
export declare const CLIENT_ERROR_CODES: {
  readonly TIMEOUT: "timeout";
  readonly DISCONNECTED: "disconnected";
  readonly CLOSED: "closed";
  readonly QUEUE_FULL: "queue_full";
  readonly TOKEN_EXPIRING: "token_expiring";
};

export type ServerErrorCode = (typeof ERROR_CODES)[keyof typeof ERROR_CODES];
export type ClientErrorCode = (typeof CLIENT_ERROR_CODES)[keyof typeof CLIENT_ERROR_CODES];
/** Built-in codes; applications may answer with codes of their own. */
export type ErrorCode = ServerErrorCode | ClientErrorCode | (string & {});

/** Whether a client closed with `code` should reconnect (wirehub.codes.should_reconnect). */
export declare function shouldReconnect(code: number): boolean;

/** Root of the errors wirehub.js throws or rejects with. */
export declare class WirehubError extends Error {
  constructor(code: string, message: string, details?: Record<string, unknown> | null);
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | null;
}

/** The server answered a request with an `error` message. */
export declare class CallError extends WirehubError {}

/** No answer within the timeout: code "timeout", details {timeout}. */
export declare class CallTimeout extends CallError {
  constructor(what: string, timeout: number);
  readonly code: "timeout";
}

/** The connection closed before the answer: "disconnected" (it may come back) or "closed". */
export declare class ConnectionClosed extends WirehubError {
  constructor(code: "disconnected" | "closed", closeCode: number, reason: string);
  readonly code: "disconnected" | "closed";
  /** The WebSocket close code (1006 when the connection dropped). */
  readonly closeCode: number;
  readonly reason: string;
}

/** Exponential backoff with jitter; every delay in milliseconds. */
export interface ReconnectOptions {
  /** Delay before the first attempt (default 500). */
  initialDelay?: number;
  /** Upper bound of any delay (default 30000). */
  maxDelay?: number;
  /** Growth from one attempt to the next (default 2). */
  factor?: number;
  /** Fraction of each delay that is random, 0 to 1 (default 0.5). */
  jitter?: number;
  /** Attempts after one loss before giving up; null: no limit (default). */
  maxAttempts?: number | null;
}

/** Milliseconds to wait before reconnection attempt `attempt` (1 for the first). */
export declare function backoffDelay(
  attempt: number,
  policy?: ReconnectOptions,
  random?: () => number,
): number;

/**
 * Milliseconds a close reason asks to wait before reconnecting (`retry_after`
 * from a server shutting down, PROTOCOL.md §6), or null. The client waits that
 * long (at most `maxDelay`) instead of its first backoff delay.
 */
export declare function retryAfter(reason: string): number | null;

export interface ConnectOptions {
  /**
   * Sent in a first `auth` message (browsers cannot set handshake headers;
   * see `tokenIn`). A function is called before every connection attempt,
   * so a short-lived token can be fetched fresh each time.
   */
  token?: string | (() => string | Promise<string>);
  /**
   * Where the token goes: "message" (default): a first `auth` message, which
   * keeps it out of URLs and so out of proxies' access logs (the server's
   * `hub.authenticate` takes it with a TokenAuth: PROTOCOL.md §13); or
   * "query": the `?token=` query parameter, for a server that reads it
   * there. A server's `refresh` request is answered with a new token from
   * the `token` function either way.
   */
  tokenIn?: "query" | "message";
  /** false: never reconnect. Default: reconnect with the default backoff. */
  reconnect?: boolean | ReconnectOptions;
  /** Messages kept while disconnected (default 100); one more throws "queue_full". */
  queueLimit?: number;
  /** Default timeout of call/join/leave/ping in ms (default 10000); null waits forever. */
  callTimeout?: number | null;
  /** Handshake plus welcome, in ms (default 10000). */
  openTimeout?: number;
  /** Application ping period in ms to detect a dead connection (default 25000); 0 or null: off. */
  heartbeat?: number | null;
  /**
   * The transports to use (default all three): WebSocket first; the HTTP
   * fallback (PROTOCOL.md §14) when WebSocket is missing or keeps failing,
   * streaming where the path lets bytes through as they come, else
   * long-polling. `["long-polling"]` forces it. Over the fallback, a token
   * goes in an `Authorization` header, never in the URL.
   */
  transports?: Transport[];
  /** WebSocket attempts in a row that fail before their welcome, before the fallback (default 2). */
  fallbackAfter?: number;
  /** A WebSocket handshake not done within this many ms counts as failed (default 4000). */
  wsTimeout?: number;
  /** On the fallback, how often to try a WebSocket again, in ms (default 30000). */
  probeInterval?: number;
}

export type Transport = "websocket" | "streaming" | "long-polling";

/** Where an event came from; room events carry their position in the room's stream. */
export interface EventMeta {
  event: string;
  room: string | null;
  epoch: string | null;
  offset: number | null;
}

export interface Limits {
  max_message_size: number | null;
  max_rooms: number | null;
  max_pending: number | null;
}

/** The server's first message on every connection. */
export interface Welcome {
  type: "welcome";
  v: number;
  peer: string;
  ping_interval: number | null;
  limits: Limits;
  /** Rooms the server joined this peer to before the welcome, with their positions. */
  rooms?: Record<string, Position>;
  /** On a reconnection: how the server closed the lost connection, when its close
   * frame may not have reached this client (4008 while the page was not reading). */
  closed?: { code: number; reason: string } | null;
}

export interface Member {
  id: string;
  info: Record<string, unknown>;
}

/** The data of a join's acknowledgement. */
export interface JoinAck {
  epoch: string;
  offset: number;
  /** Only for re-joins with `since`: whether every missed event was replayed. */
  recovered?: boolean;
  /** When the hub announces presence: the room's members, this client included. */
  members?: Member[];
}

export interface PresenceChange {
  room: string;
  joined: Member | null;
  left: Member | null;
}

export interface Disconnected {
  code: number;
  reason: string;
  /** Whether the client will try to reconnect. */
  reconnect: boolean;
}

export interface Reconnecting {
  /** 1 for the first attempt after a loss. */
  attempt: number;
  /** Milliseconds until this attempt. */
  delay: number;
}

export interface Reconnected {
  /** How many attempts it took. */
  attempts: number;
  /** Every re-joined room: were the missed events replayed? */
  recovered: Record<string, boolean>;
  /** The rooms with a gap (recovered false): refetch their state. */
  gaps: string[];
  /** The ack of each room's re-join (members, position). */
  acks: Record<string, JoinAck>;
  /** How the server closed the lost connection when "disconnect" could only say 1006
   * (e.g. 4008: cut as a slow consumer while not reading); null otherwise. */
  closed: { code: number; reason: string } | null;
}

/** A room position: offsets count up by one within an epoch. */
export interface Position {
  epoch: string;
  offset: number;
}

/** Events of `room` after `last` up to and including `position` may never arrive. */
export interface Gap {
  room: string;
  /** "recovery" (re-join after a reconnection), "jump" (offsets skipped), "epoch", "server" (a gap notice). */
  reason: "recovery" | "jump" | "epoch" | "server";
  /** The last position processed, or null. */
  last: Position | null;
  /** Where the stream goes on (the next event follows it); null when the room could not be re-joined. */
  position: Position | null;
  /** More text: the server's reason for a "server" gap. */
  detail: string;
}

export interface LifecycleEvents {
  connect: (welcome: Welcome) => void;
  disconnect: (info: Disconnected) => void;
  reconnecting: (info: Reconnecting) => void;
  reconnect: (info: Reconnected) => void;
  error: (error: WirehubError) => void;
  presence: (change: PresenceChange) => void;
  /** Reported before any later event of that room. */
  gap: (gap: Gap) => void;
  /** The server put this client in a room (re-joined after a reconnect from now on). */
  joined: (room: string) => void;
  /** The server took this client out of a room (a kick): not re-joined. */
  left: (room: string) => void;
}

/** Event data as received: JSON, or a Uint8Array for a binary event. */
export type Received = Json | Uint8Array;

/** A server event's handler; the first one of an event answers the server's calls with its value. */
export type EventHandler<T = Received> = (data: T, meta: EventMeta) => unknown;

export declare class Client {
  constructor(url: string, options?: ConnectOptions);
  readonly url: string;
  readonly state: State;
  /** This connection's peer id (new after every reconnect), or null when not open. */
  readonly id: string | null;
  readonly welcome: Welcome | null;
  /** How the client is connected now (null when not open). */
  readonly transport: Transport | null;
  /** The rooms joined, by this client or by the server (re-joined after a reconnect). */
  readonly rooms: string[];
  readonly queueLimit: number;

  /** Register a handler; returns a function that unregisters it. */
  on<K extends keyof LifecycleEvents>(event: K, handler: LifecycleEvents[K]): () => void;
  on<T = Received>(event: string, handler: EventHandler<T>): () => void;
  /** Unregister `handler`, or every handler of `event` when omitted. */
  off(event: string, handler?: (...args: any[]) => void): void;

  /** Fire and forget; queued while disconnected. Throws WirehubError (queue_full, limit_exceeded, closed). */
  emit(event: string, data?: EventData): void;
  /** Resolve with the ack data; reject with CallError, CallTimeout or ConnectionClosed. */
  call<T = Received>(event: string, data?: EventData, options?: { timeout?: number | null }): Promise<T>;
  /** Join a room, replaying its last `history` events first. */
  join(room: string, options?: { history?: number; timeout?: number | null }): Promise<JoinAck>;
  leave(room: string, options?: { timeout?: number | null }): Promise<void>;
  /** Application ping: the round trip in milliseconds. */
  ping(options?: { timeout?: number | null }): Promise<number>;
  /** Resolve once welcomed (at once if open); reject if the client closes for good. */
  ready(): Promise<Client>;
  /** Close with 1000 and stop reconnecting. */
  close(reason?: string): Promise<void>;
}

/** A Client of the event endpoint (default "/ws", relative to the page); it connects at once. */
export declare function connect(url?: string, options?: ConnectOptions): Client;
