// The lower layer of the Arbiter client: one player's link to a room.
//
// Connection knows the wire (docs/PROTOCOL.md) but no game: it opens the WebSocket
// with the `arbiter.v1.json` or `arbiter.v1.msgpack` subprotocol, says `hello`,
// follows a cluster's redirects (error `moved`, close 4005) to the room's node,
// keeps the `welcome`, numbers inputs (`seq`), syncs the clock with ping/pong,
// reconnects with the token (kept in sessionStorage) and back-off, counts bytes,
// and can add simulated latency on send and receive. It asks for a sync mode
// (`hello.sync`) and reads the compact sync's binary frames into the same
// `snapshot`/`delta` messages as the others (compact.js). Higher layers (the
// realtime client, a lockstep client) subscribe to its messages.

import { CLOSE_CODES, SUBPROTOCOLS } from "./codes.js";
import { COMPACT_VERSION, CompactMirror, isCompactFrame } from "./compact.js";
import { Emitter } from "./emitter.js";

export const [SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK] = SUBPROTOCOLS;

export const CLOSE_TAKEN_OVER = CLOSE_CODES.TAKEN_OVER; // another tab resumed this player: stop
export const CLOSE_BAD_TOKEN = CLOSE_CODES.BAD_TOKEN; // forget the token, join afresh at once
export const CLOSE_ROOM_FULL = CLOSE_CODES.ROOM_FULL; // stop
export const CLOSE_MOVED = CLOSE_CODES.MOVED; // after error moved: join again at its url, at once

/**
 * Closes after which joining again the same way cannot succeed, so the join is refused
 * (status "refused", no reconnection): the login was refused (4006), a private room
 * takes join tokens only (4007).
 */
const REFUSING_CLOSES = new Set([CLOSE_CODES.UNAUTHORIZED, CLOSE_CODES.PRIVATE_ROOM]);

/** Redirects (`moved`) followed in a row before the join fails with "too many redirects". */
export const MAX_REDIRECTS = 3;

/** The sync modes of `hello.sync` (docs/PROTOCOL.md 11 and 20); "state" is v1's. */
export const SYNC_MODES = Object.freeze(["state", "intent", "compact"]);

/** Connection states, in the order a healthy session goes through them. */
export const Status = Object.freeze({
  IDLE: "idle",
  CONNECTING: "connecting", // socket opening
  JOINING: "joining", // hello sent, waiting for welcome
  OPEN: "open", // welcome received
  RECONNECTING: "reconnecting", // waiting for the next attempt
  TAKEN_OVER: "taken_over", // another tab resumed this player (close 4000)
  ROOM_FULL: "room_full", // close 4003
  REFUSED: "refused", // close 4006 (unauthorized) or 4007 (private_room): joining again would not help
  CLOSED: "closed", // close() was called, or the join failed for good (too many redirects)
});

const now = () => (globalThis.performance ? performance.now() : Date.now());

function defaultUrl() {
  const loc = globalThis.location;
  if (!loc) throw new Error("Connection needs a url outside a browser page");
  return `${loc.protocol === "https:" ? "wss" : "ws"}://${loc.host}/ws`;
}

function defaultStorage() {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null; // storage disabled by the browser
  }
}

/** A sliding one-second sum, for bytes/s and the like. */
export class RateMeter {
  constructor(windowMs = 1000) {
    this.windowMs = windowMs;
    this._events = [];
    this._sum = 0;
  }

  add(amount, t = now()) {
    this._events.push([t, amount]);
    this._sum += amount;
    this._trim(t);
  }

  perSecond(t = now()) {
    this._trim(t);
    return (this._sum * 1000) / this.windowMs;
  }

  _trim(t) {
    const cutoff = t - this.windowMs;
    let i = 0;
    while (i < this._events.length && this._events[i][0] < cutoff) {
      this._sum -= this._events[i][1];
      i++;
    }
    if (i) this._events.splice(0, i);
  }
}

/**
 * Round trip and server clock from ping/pong. The offset comes from the
 * sample with the smallest round trip among the last few (the least queued).
 */
export class ClockSync {
  constructor(keep = 8) {
    this.keep = keep;
    this.samples = [];
    this.rtt = null; // the latest round trip, ms
    this.offset = null; // server clock - local clock, ms
    this.pongTick = null;
    this.pongLocal = null;
  }

  observe(sentAt, receivedAt, serverNow, serverTick) {
    const rtt = receivedAt - sentAt;
    this.rtt = rtt;
    this.samples.push({ rtt, offset: serverNow + rtt / 2 - receivedAt });
    if (this.samples.length > this.keep) this.samples.shift();
    let best = this.samples[0];
    for (const s of this.samples) if (s.rtt < best.rtt) best = s;
    this.offset = best.offset;
    if (serverTick !== undefined) {
      this.pongTick = serverTick;
      this.pongLocal = receivedAt - rtt / 2;
    }
  }

  /** The median of the kept round trips (steadier than the latest), or null. */
  medianRtt() {
    if (!this.samples.length) return null;
    const sorted = this.samples.map((s) => s.rtt).sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)];
  }

  /** The server's monotonic clock now, estimated, or null before the first pong. */
  serverNow(t = now()) {
    return this.offset === null ? null : t + this.offset;
  }
}

/**
 * One player's link to one room.
 *
 * Options: url (default ws(s)://this-host/ws), room ("main"), name,
 * encoding ("json" | "msgpack"), storage (sessionStorage; null to keep the
 * token only in memory), reconnect (true), backoff ({min: 250, max: 8000}),
 * pingInterval (1000 ms; 0 = off), latency ({send, recv, jitter} in ms),
 * hello (extra fields merged into `hello`), WebSocket (constructor),
 * maxRedirects (3: `moved` errors followed in a row; one more fails the join),
 * sync ("state" | "intent" | "compact": `hello.sync`; "compact" forces the
 * msgpack encoding, its frames are binary), auth (credentials for the
 * server's authenticator: `hello.auth`, sent in a hello without a token).
 *
 * With sync "compact" the binary state frames (first byte 0xC1) are applied
 * to a CompactMirror (`compact`, made at each `welcome`) and come out as
 * "snapshot" and "delta" messages {t, tick, ack, state, compact: true} whose
 * `state` is the whole mirror (no `patch`). A broken frame drops the mirror,
 * sends `resync` and emits "compact_error" (err) until the next snapshot.
 *
 * `url` is where the connection is, or goes next: after a redirect, the node
 * that owns the room (reconnections go there first); `originUrl` is the url
 * it was made with.
 *
 * Events (subscribe with on(type, fn)): "status" (status, detail), "welcome"
 * (msg), "message" (msg, every message from the server but a followed
 * `moved`), one event per message type ("snapshot", "delta", "reject",
 * "correct", "event", "pong", "error", and any other `t`), "redirect" ({url,
 * from, hops, msg}: a `moved` being followed), "close" ({code, reason}),
 * "send" (msg).
 */
export class Connection extends Emitter {
  constructor(options = {}) {
    super();
    this.originUrl = options.url ?? defaultUrl();
    this.url = this.originUrl; // where the next socket goes: the room's node after a redirect
    this.room = options.room ?? "main";
    this.name = options.name;
    this.encoding = options.encoding ?? "json";
    this.storage = options.storage === undefined ? defaultStorage() : options.storage;
    this.reconnect = options.reconnect ?? true;
    this.backoff = { min: 250, max: 8000, ...(options.backoff ?? {}) };
    this.pingInterval = options.pingInterval ?? 1000;
    this.helloExtra = options.hello ?? {};
    this.auth = options.auth ?? null; // credentials (`hello.auth`) for a join without a token
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.latency = { send: 0, recv: 0, jitter: 0, ...(options.latency ?? {}) };
    this.maxRedirects = options.maxRedirects ?? MAX_REDIRECTS;
    this.sync = options.sync ?? this.helloExtra.sync ?? "state";
    if (!SYNC_MODES.includes(this.sync)) {
      throw new TypeError(`Connection: sync is "state", "intent" or "compact", got ${JSON.stringify(this.sync)}`);
    }
    if (this.sync === "compact") this.encoding = "msgpack"; // compact frames are binary

    this.status = Status.IDLE;
    this.welcome = null; // the latest welcome message
    this.you = null;
    this.world = null;
    this.rate = null;
    this.ack = 0; // highest ack seen in welcome / snapshot / delta
    this.lastSeq = 0; // highest seq sent
    this.attempts = 0; // failed attempts since the last welcome
    this.redirects = 0; // `moved` followed in a row since the last welcome or back-off
    this.clock = new ClockSync();
    this.bytesIn = new RateMeter();
    this.bytesOut = new RateMeter();
    this.totalBytesIn = 0;
    this.messagesIn = 0;
    this.compact = null; // the CompactMirror of this session (sync "compact", after welcome)
    this.compactErrors = 0; // broken compact frames seen (each one asks for a resync)
    this._resyncAsked = false; // a resync for a broken compact frame is on its way

    this._ws = null;
    this._codec = null;
    this._pingTimer = null;
    this._retryTimer = null;
    this._outQueue = []; // latency simulator: [{at, fn}] in order
    this._inQueue = [];
    this._firstWelcome = null;
    this._reached = false; // the current socket opened (its server is up)
  }

  get tokenKey() {
    return `arbiter.token.${this.room}`;
  }

  get token() {
    try {
      return this.storage ? this.storage.getItem(this.tokenKey) : this._token ?? null;
    } catch {
      return this._token ?? null;
    }
  }

  set token(value) {
    this._token = value;
    try {
      if (!this.storage) return;
      if (value) this.storage.setItem(this.tokenKey, value);
      else this.storage.removeItem(this.tokenKey);
    } catch {
      // storage full or disabled: the in-memory copy still serves reconnects
    }
  }

  /** Open the link; resolves with the first `welcome`. */
  connect() {
    if (!this._firstWelcome) {
      this._firstWelcome = new Promise((resolve, reject) => {
        this._resolveWelcome = resolve;
        this._rejectWelcome = reject;
      });
      this._firstWelcome.catch(() => {}); // a caller that does not await must not see an unhandled rejection
    }
    if (this.status === Status.IDLE || this.status === Status.CLOSED || this.status === Status.RECONNECTING) {
      if (this.status !== Status.RECONNECTING) this.redirects = 0; // a new join attempt
      this._open();
    }
    return this._firstWelcome;
  }

  /** Close for good (no reconnection). The token stays stored for a later resume. */
  close(code = 1000, reason = "bye") {
    clearTimeout(this._retryTimer);
    this._stopPing();
    this._setStatus(Status.CLOSED);
    const ws = this._ws;
    this._ws = null;
    if (ws && ws.readyState <= 1) ws.close(code, reason);
  }

  /** Forget the stored token, so the next connect() joins as a new player. */
  forgetToken() {
    this.token = null;
  }

  /** Change the simulated latency: {send, recv, jitter} in ms (each way). */
  setLatency(latency) {
    Object.assign(this.latency, latency);
  }

  get isOpen() {
    return this.status === Status.OPEN;
  }

  /** Send one message (a plain object with `t`). Returns false when not joined. */
  send(msg) {
    if (!this._ws || (this.status !== Status.OPEN && msg.t !== "hello")) return false;
    const ws = this._ws;
    const data = this._codec.encode(msg);
    this.bytesOut.add(typeof data === "string" ? data.length : data.byteLength);
    this.emit("send", msg);
    this._delay("send", () => {
      if (ws.readyState === 1) ws.send(data);
    });
    return true;
  }

  /** Number and send an input (`move`, `spawn`, ...). Returns its seq, or 0 when not joined. */
  sendInput(msg) {
    if (!this.isOpen) return 0;
    const seq = this.lastSeq + 1;
    this.lastSeq = seq;
    this.send({ ...msg, seq });
    return seq;
  }

  // -- internals ------------------------------------------------------------

  _setStatus(status, detail) {
    if (this.status === status) return;
    this.status = status;
    this.emit("status", status, detail);
  }

  async _open() {
    clearTimeout(this._retryTimer);
    this._setStatus(Status.CONNECTING);
    try {
      this._codec = await makeCodec(this.encoding);
    } catch (err) {
      this._setStatus(Status.CLOSED, String(err));
      this._rejectWelcome?.(err);
      return;
    }
    if (this.status !== Status.CONNECTING) return; // closed meanwhile
    let ws;
    try {
      ws = new this.WebSocket(this.url, [this._codec.subprotocol]);
    } catch (err) {
      this._scheduleRetry({ code: 0, reason: String(err) });
      return;
    }
    ws.binaryType = "arraybuffer";
    this._ws = ws;
    this._reached = false;
    ws.onopen = () => {
      if (this._ws !== ws) return;
      this._reached = true;
      this._setStatus(Status.JOINING);
      const hello = { t: "hello", v: 1, room: this.room, ...this.helloExtra };
      if (this.sync !== "state") hello.sync = this.sync;
      else delete hello.sync; // v1's default: a plain v1 hello
      if (this.name) hello.name = this.name;
      const token = this.token;
      if (token) hello.token = token;
      else if (this.auth) hello.auth = this.auth; // a token says who this is; without one, the login does
      this.send(hello);
    };
    ws.onmessage = (ev) => {
      const size = typeof ev.data === "string" ? utf8Length(ev.data) : ev.data.byteLength;
      this._delay("recv", () => {
        if (this._ws !== ws) return;
        this.bytesIn.add(size);
        this.totalBytesIn += size;
        this.messagesIn++;
        if (isCompactFrame(ev.data)) {
          this._receiveCompact(ev.data, ws);
          return;
        }
        let msg;
        try {
          msg = this._codec.decode(ev.data);
        } catch (err) {
          console.warn("arbiter: undecodable frame from the server", err);
          return;
        }
        this._receive(msg, ws);
      });
    };
    ws.onclose = (ev) => {
      const info = { code: ev.code, reason: ev.reason };
      this._delay("recv", () => {
        if (this._ws !== ws) return;
        this._ws = null;
        this._closed(info);
      });
    };
    ws.onerror = () => {
      // Always followed by close; the close code says more.
    };
  }

  _receive(msg, ws) {
    if (!msg || typeof msg !== "object") return;
    if (msg.t === "error" && msg.code === "moved" && ws && this._moved(msg, ws)) return;
    switch (msg.t) {
      case "welcome":
        this.welcome = msg;
        this.you = msg.you;
        this.name = msg.name ?? this.name;
        this.world = msg.world;
        this.rate = msg.rate;
        this.ack = msg.ack ?? 0;
        this.lastSeq = Math.max(this.lastSeq, this.ack);
        this.token = msg.token;
        this.attempts = 0;
        this.redirects = 0;
        this._resyncAsked = false;
        this.compact = this._compactMirror(msg);
        this._setStatus(Status.OPEN);
        this._startPing();
        break;
      case "snapshot":
      case "delta":
        if (typeof msg.ack === "number") this.ack = msg.ack;
        break;
      case "pong":
        if (typeof msg.ts === "number") this.clock.observe(msg.ts, now(), msg.now, msg.tick);
        break;
      case "error":
        if (msg.code === "bad_token") this.token = null; // dead or foreign: join afresh
        break;
    }
    this.emit("message", msg);
    this.emit(msg.t, msg);
    if (msg.t === "welcome" && this._resolveWelcome) {
      this._resolveWelcome(msg);
      this._resolveWelcome = this._rejectWelcome = null;
    }
  }

  /**
   * A fresh mirror for the compact frames of the session a `welcome` opens
   * (they start again with a snapshot, the first one at the next tick), or null
   * when the server does not sync this connection compactly.
   */
  _compactMirror(welcome) {
    const info = welcome.compact;
    if (this.sync !== "compact" || !info || typeof info !== "object" || !this._codec?.unpack) return null;
    if (info.v !== COMPACT_VERSION) console.warn(`arbiter: compact sync version ${info.v}, this client reads ${COMPACT_VERSION}`);
    try {
      return new CompactMirror(info.pos, this._codec.unpack);
    } catch (err) {
      console.warn("arbiter: unusable compact sync in welcome:", err.message);
      return null;
    }
  }

  /**
   * A compact state frame: apply it to the mirror and pass it on as a
   * `snapshot` or `delta` message carrying the whole mirror. A broken one
   * drops the mirror and asks for a snapshot (`resync`), once until it comes.
   */
  _receiveCompact(data, ws) {
    const mirror = this.compact;
    if (!mirror) {
      console.warn("arbiter: a compact frame on a connection that did not get compact in its welcome");
      return;
    }
    let head;
    try {
      head = mirror.apply(data);
    } catch (err) {
      this.compactErrors++;
      console.warn("arbiter: broken compact frame, the mirror is dropped until a snapshot:", err.message);
      this.emit("compact_error", err);
      if (!this._resyncAsked && this.send({ t: "resync" })) this._resyncAsked = true;
      return;
    }
    if (head.kind === "snapshot") this._resyncAsked = false;
    this._receive({ t: head.kind, tick: head.tick, ack: head.ack, state: mirror.state, compact: true }, ws);
  }

  /**
   * The server says the room lives on another node (error `moved`, then close
   * 4005): say the same hello there at once, without back-off, and without
   * showing the error to the application (a "redirect" event instead). Past
   * maxRedirects in a row, or without a ws(s) url, the join fails for good.
   * Returns true when the message was taken care of (not to be emitted).
   */
  _moved(msg, ws) {
    this._ws = null; // this socket is done: its close (4005) is no drop
    this._stopPing();
    if (ws.readyState <= 1) ws.close(1000, "moved");
    const from = this.url;
    const url = validWsUrl(msg.url);
    if (!url || this.redirects >= this.maxRedirects) {
      const why = !url
        ? `moved without a ws:// or wss:// url (${JSON.stringify(msg.url)})`
        : `too many redirects: ${this.redirects} followed in a row, then ${from} moved the room to ${url}`;
      const error = { ...msg, msg: why };
      this.url = this.originUrl; // a later connect() starts over
      this.redirects = 0;
      this.emit("message", error);
      this.emit("error", error);
      this._setStatus(Status.CLOSED, { code: CLOSE_MOVED, reason: why });
      this._failJoin(why);
      return true;
    }
    this.redirects++;
    this.url = url;
    this.emit("redirect", { url, from, hops: this.redirects, msg: msg.msg });
    this._open();
    return true;
  }

  _closed(info) {
    this._stopPing();
    this.emit("close", info);
    if (this.status === Status.CLOSED) return;
    if (info.code === CLOSE_TAKEN_OVER) {
      this._setStatus(Status.TAKEN_OVER, info);
      return;
    }
    if (info.code === CLOSE_ROOM_FULL) {
      this._setStatus(Status.ROOM_FULL, info);
      this._rejectWelcome?.(new Error("room_full"));
      return;
    }
    if (REFUSING_CLOSES.has(info.code)) {
      this._setStatus(Status.REFUSED, info);
      this._failJoin(`join refused (${info.code} ${info.reason ?? ""})`);
      return;
    }
    if (info.code === CLOSE_BAD_TOKEN) {
      this.token = null;
      this.attempts = 0; // the next attempt is a fresh join, at once
    }
    this._scheduleRetry(info);
  }

  _scheduleRetry(info) {
    // A node we were redirected to cannot be reached (gone, say): the next attempt
    // asks the url we were given, which redirects to wherever the room is now.
    if (!this._reached && this.url !== this.originUrl) this.url = this.originUrl;
    this.redirects = 0; // after a back-off, a new join attempt
    if (!this.reconnect) {
      this._setStatus(Status.CLOSED, info);
      this._failJoin(`connection closed (${info.code} ${info.reason ?? ""})`);
      return;
    }
    const base = Math.min(this.backoff.max, this.backoff.min * 2 ** this.attempts);
    const wait = this.attempts === 0 && info.code === CLOSE_BAD_TOKEN ? 0 : base * (0.5 + Math.random() / 2);
    this.attempts++;
    this._setStatus(Status.RECONNECTING, { ...info, wait });
    this._retryTimer = setTimeout(() => this._open(), wait);
  }

  /** Reject a pending connect() (a later connect() starts a new one). */
  _failJoin(why) {
    if (!this._rejectWelcome) return;
    this._rejectWelcome(new Error(why));
    this._resolveWelcome = this._rejectWelcome = null;
    this._firstWelcome = null;
  }

  _startPing() {
    this._stopPing();
    if (!this.pingInterval) return;
    const ping = () => this.send({ t: "ping", ts: now() });
    ping();
    this._pingTimer = setInterval(ping, this.pingInterval);
  }

  _stopPing() {
    clearInterval(this._pingTimer);
    this._pingTimer = null;
  }

  /**
   * Deliver what the latency simulator holds and is due. Timers do it too, but
   * a busy page runs timers late: a render loop that calls pump() every frame
   * (RealtimeClient.view() does) keeps the simulated delay accurate.
   */
  pump(t = now()) {
    for (const queue of [this._outQueue, this._inQueue]) {
      while (queue.length && queue[0].at <= t) queue.shift().fn();
    }
  }

  /** Run fn after the simulated latency, keeping order in each direction (like TCP). */
  _delay(direction, fn) {
    const queue = direction === "send" ? this._outQueue : this._inQueue;
    const base = (direction === "send" ? this.latency.send : this.latency.recv) || 0;
    const jitter = this.latency.jitter || 0;
    if (!base && !jitter && !queue.length) {
      fn();
      return;
    }
    const t = now();
    const last = queue.length ? queue[queue.length - 1].at : 0;
    const at = Math.max(t + base + Math.random() * jitter, last);
    queue.push({ at, fn });
    this._wake(at);
  }

  /** A timer that pumps at `at` (timers may fire a little early: then try again). */
  _wake(at) {
    setTimeout(() => {
      const t = now();
      this.pump(t);
      if (t < at) this._wake(at);
    }, Math.max(0, Math.ceil(at - now())));
  }
}

/** The url of a `moved` error if it is a ws:// or wss:// url, else null. */
function validWsUrl(url) {
  if (typeof url !== "string") return null;
  try {
    const u = new URL(url);
    return u.protocol === "ws:" || u.protocol === "wss:" ? url : null;
  } catch {
    return null;
  }
}

/** Bytes of a string once encoded as UTF-8 (what went over the wire). */
function utf8Length(s) {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : c >= 0xd800 && c <= 0xdfff ? 2 : 3; // a surrogate pair is 4
  }
  return n;
}

/** The encoder/decoder for a subprotocol; msgpack is loaded only when asked for. */
export async function makeCodec(encoding) {
  if (encoding === "msgpack") {
    const { encode, decode } = await import("@msgpack/msgpack");
    return {
      subprotocol: SUBPROTOCOL_MSGPACK,
      unpack: decode, // bytes (Uint8Array) -> value: the compact sync's REST sections
      encode: (msg) => encode(msg),
      decode: (data) => {
        if (typeof data === "string") throw new Error("text frame in a msgpack session");
        return decode(new Uint8Array(data));
      },
    };
  }
  if (encoding === "json") {
    return {
      subprotocol: SUBPROTOCOL_JSON,
      encode: (msg) => JSON.stringify(msg),
      decode: (data) => {
        if (typeof data !== "string") throw new Error("binary frame in a JSON session");
        return JSON.parse(data);
      },
    };
  }
  throw new Error(`unknown encoding ${JSON.stringify(encoding)}, expected "json" or "msgpack"`);
}
