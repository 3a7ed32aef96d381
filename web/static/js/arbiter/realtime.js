// The higher layer of the Arbiter client: a realtime room as a player sees it.
//
// RealtimeClient mirrors the authoritative state (snapshot + RFC 7386 merge
// patch deltas), predicts your own avatar with your game's step function (by
// default the cube movement, the very function the server runs), reconciles
// with the server (drops inputs up to `ack`, replays the rest, blends small
// errors and snaps large ones), and interpolates everything else about 100 ms
// in the past. Any sync mode (`sync` option): the merge patches of "state",
// the compact frames of "compact" (the connection turns them into the same
// mirror), or the motions of "intent" (moving cubes extrapolated to the tick
// drawn). It draws nothing: call view() once per frame and render what it
// returns.

import { Connection } from "./connection.js";
import { Emitter } from "./emitter.js";
import { applyMergePatch } from "./merge-patch.js";
import { StateBuffer, TickClock } from "./interpolation.js";
import { extrapolate, isExtrapolated, roundMotion } from "./intent.js";
import { clamp, stepAvatar } from "./movement.js";

const now = () => (globalThis.performance ? performance.now() : Date.now());

/** Largest `dt` a `move` may carry (docs/PROTOCOL.md). */
export const MAX_MOVE_DT = 250;
/** Most cubes one `order` may name (docs/PROTOCOL.md). */
export const MAX_ORDER_IDS = 16;

/**
 * The cube game's prediction step, RealtimeClient's default `step`: a `move`
 * input moves the avatar (pos [x, y, z]) with stepAvatar, exactly as the
 * server does; any other input leaves it where it is.
 */
export function stepMove(pos, input, world) {
  if (input.t !== "move") return pos;
  const [x, z] = stepAvatar(pos[0], pos[2], input.dir[0], input.dir[1], input.dt, world.avatar_speed, world.size);
  return [x, pos[1], z];
}

/** stepMove for drawing only, without the 0.01 rounding, so tiny steps still show. */
export function glideMove(pos, input, world) {
  if (input.t !== "move") return pos;
  const [dx, dz] = input.dir;
  const len = Math.sqrt(dx * dx + dz * dz);
  const s = len > 1 ? 1 / len : 1;
  const dist = (world.avatar_speed * input.dt) / 1000;
  const half = world.size / 2;
  return [clamp(pos[0] + dx * s * dist, -half, half), pos[1], clamp(pos[2] + dz * s * dist, -half, half)];
}

/**
 * Options: everything Connection takes (url, room, name, encoding, latency,
 * sync, ...), or `connection` to use one you made, plus
 *   step (stepMove): step(pos, input, world) -> pos, applies one of your own
 *     inputs (the message as sent, with its seq) to your avatar's position
 *     [x, y, z] and returns the new position (a new array); it runs when the
 *     input is sent and again in every replay until the server acks it
 *   glide (glideMove with the default step, else step): the same for drawing
 *     only, with the part of a held direction not yet sent ({t: "move", dir, dt})
 *   predict (true): predict your own avatar; off, it is drawn where the server last said
 *   interpolate (true): draw others ~interpolationDelay ms in the past; off, at the latest state
 *   interpolationDelay (100 ms, plus the measured jitter)
 *   sampleRate (30): `move` messages per second while a direction is held
 *   snapDistance (2 units): a prediction error larger than this snaps, a smaller one blends
 *   blendTime (100 ms): time constant of the blend
 *
 * Events: everything Connection emits, plus "state" (msg, after the mirror
 * was updated), "correction" ({id, error: [dx, dz], snapped, reason}),
 * "join"/"leave"/"say"/"tag" (the `event` message by kind; any other kind
 * too, e.g. the cube game's "hit", "pickup", "round_end" and "round_start"),
 * and "phase" (the `phase` message: a room with rounds goes to "ended"
 * between rounds and back to "running"; see `round`).
 */
export class RealtimeClient extends Emitter {
  constructor(options = {}) {
    super();
    this.connection = options.connection ?? new Connection(options);
    this.step = options.step ?? stepMove;
    this.glide = options.glide ?? (options.step ? options.step : glideMove);
    if (typeof this.step !== "function" || typeof this.glide !== "function") {
      throw new TypeError("RealtimeClient: step and glide must be functions (pos, input, world) -> pos");
    }
    this.predict = options.predict ?? true;
    this.interpolate = options.interpolate ?? true;
    this.interpolationDelay = options.interpolationDelay ?? 100;
    // the render clock runs with the local clock and eases (at most 10% faster or slower)
    // toward where the tick clock says it should be, instead of jumping when its base or
    // the jitter estimate moves (docs/NETCODE.md); false: it follows the tick clock as is
    this.smoothClock = options.smoothClock ?? true;
    // when the next state is late (a stall), others go on along their last motion for at
    // most this many ms past the newest state, then stop. Off (0) by default: a server
    // sends nothing when nothing changed, so the client cannot tell a stall from an entity
    // that stopped with its last state, and would draw it past where it stopped, for good
    // (docs/NETCODE.md). For a game whose server sends every tick, 100-150 ms hides stalls.
    this.maxExtrapolation = options.maxExtrapolation ?? 0;
    this.sampleRate = options.sampleRate ?? 30;
    this.snapDistance = options.snapDistance ?? 2;
    this.blendTime = options.blendTime ?? 100;
    // sync "intent": an entity in motion drawn where it is at the tick drawn (else null: interpolated)
    this._motion = (e, tick) => {
      if (!isExtrapolated(e) || !this.connection.rate || !this.world) return null;
      const [x, z] = extrapolate(e, tick, this.connection.rate, this.world.speed);
      return [x, e.pos[1], z];
    };

    this.state = { entities: {}, players: {} }; // the authoritative mirror
    this.tick = null; // tick of the latest state message
    this.ack = 0; // ack of the latest state message
    this.buffer = new StateBuffer();
    this.tickClock = null;

    this.pendingInputs = []; // predicted inputs ({t, ..., seq}) sent, not yet acked
    this.sentSeqs = []; // their seqs, for the backlog
    this.corrections = []; // times of recent corrections, for corrections/s
    this._rt = null; // the smoothed render tick, as of local time _rtAt
    this._rtAt = null;
    this._lastViewAt = null; // local time of the last view() (the last frame drawn)
    this._lastRenderTick = null; // ... and the render tick it drew others at
    this.correctionCount = 0;

    this._dir = [0, 0];
    this._segmentStart = 0;
    this._sampleTimer = null;
    this._authPos = null; // own avatar [x, y, z] at `ack`
    this._predicted = null; // own avatar [x, y, z] after the pending inputs
    this._error = [0, 0]; // visual offset being blended away
    this._errorAt = 0;
    this._correctedUpTo = 0; // a `correct` covered inputs up to this seq
    this._avatarId = null;

    const c = this.connection;
    const forwarded = ["status", "welcome", "message", "close", "send", "pong", "error", "event", "reject", "correct", "snapshot", "delta"];
    for (const t of [...forwarded, "redirect", "phase"]) {
      c.on(t, (...args) => this.emit(t, ...args));
    }
    c.on("welcome", (msg) => this._onWelcome(msg));
    c.on("snapshot", (msg) => this._onState(msg, true));
    c.on("delta", (msg) => this._onState(msg, false));
    c.on("reject", (msg) => this._onReject(msg));
    c.on("correct", (msg) => this._onCorrect(msg));
    c.on("event", (msg) => this.emit(msg.kind, msg));
    c.on("status", (status) => {
      if (status !== "open") this._stopSampling();
    });
  }

  // -- the session ------------------------------------------------------------

  connect() {
    return this.connection.connect();
  }

  close() {
    this._stopSampling();
    this.connection.close();
  }

  get you() {
    return this.connection.you;
  }

  get world() {
    return this.connection.world;
  }

  get status() {
    return this.connection.status;
  }

  /** The sync mode asked for: "state", "intent" or "compact" (the `sync` option). */
  get sync() {
    return this.connection.sync;
  }

  /** The WebSocket url the connection is on (after a cluster's redirect, the room's node). */
  get url() {
    return this.connection.url;
  }

  /**
   * The room's round when it runs rounds (the state's `round`: {n, phase:
   * "running" | "ended", points?, ends_at?, next_at?, result?}, ticks are
   * state ticks), else null.
   */
  get round() {
    const r = this.state.round;
    return r && typeof r === "object" ? r : null;
  }

  /** welcome.view_radius: you see only what is within this of your avatar; 0 when you see all. */
  get viewRadius() {
    const r = this.connection.welcome?.view_radius;
    return typeof r === "number" && r > 0 ? r : 0;
  }

  /** The entity id (a string) of your avatar, or null. */
  get avatarId() {
    const e = this._avatarId && this.state.entities[this._avatarId];
    if (e && e.kind === "avatar" && e.owner === this.you) return this._avatarId;
    this._avatarId = null;
    for (const [id, ent] of Object.entries(this.state.entities)) {
      if (ent && ent.kind === "avatar" && ent.owner === this.you) this._avatarId = id;
    }
    return this._avatarId;
  }

  // -- inputs -----------------------------------------------------------------

  /**
   * Hold a direction (dx, dz in [-1, 1]; [0, 0] to stop). While it is held
   * the client sends one `move` per 1/sampleRate s with the elapsed time as
   * `dt`, and your avatar moves at once (prediction). A press from rest
   * moves one sample ahead right away, so even a tap moves you.
   */
  setDirection(dx, dz) {
    dx = Math.max(-1, Math.min(1, dx || 0));
    dz = Math.max(-1, Math.min(1, dz || 0));
    if (dx === this._dir[0] && dz === this._dir[1]) return;
    const t = now();
    this._flushMove(t);
    const wasIdle = !this._dir[0] && !this._dir[1];
    this._dir = [dx, dz];
    if (!dx && !dz) {
      this._stopSampling();
      return;
    }
    if (wasIdle) {
      // From rest: the first sample goes out now, the segment starts after it.
      const lead = Math.round(1000 / this.sampleRate);
      this._segmentStart = t;
      this._sendMove(lead);
      this._segmentStart = t + lead;
    } else {
      this._segmentStart = Math.min(this._segmentStart, t);
    }
    this._startSampling();
  }

  get direction() {
    return [...this._dir];
  }

  spawn(at) {
    return this.connection.sendInput(at ? { t: "spawn", at: [at[0], at[1]] } : { t: "spawn" });
  }

  /** Delete one of your cubes. */
  remove(id) {
    return this.connection.sendInput({ t: "delete", id: Number(id) });
  }

  /** Send your cubes toward [x, z]; more than 16 ids go out as several orders. Returns the seqs. */
  order(ids, to) {
    const seqs = [];
    const list = ids.map(Number);
    for (let i = 0; i < list.length; i += MAX_ORDER_IDS) {
      seqs.push(this.connection.sendInput({ t: "order", ids: list.slice(i, i + MAX_ORDER_IDS), to: [to[0], to[1]] }));
    }
    return seqs;
  }

  /**
   * Tag another player's avatar as you see it on screen: lag compensation takes the
   * target where the last frame drew it (the render tick of the last view(), with its
   * fraction: `view` + `view_frac`) and your avatar where that frame drew it (the part
   * of your held direction not yet sent goes first, as a move, so the server has you
   * there too).
   */
  tag(id) {
    const t = this._lastViewAt ?? now();
    this._flushMove(Math.max(t, this._segmentStart));
    const rt = this._lastViewAt !== null ? this._lastRenderTick : this.renderTick(t);
    const msg = { t: "tag", id: Number(id), view: this.viewTick(t) };
    if (rt !== null && rt !== undefined && rt >= 0) {
      msg.view = Math.floor(rt);
      const frac = Math.round((rt - msg.view) * 1000) / 1000;
      if (frac > 0 && frac < 1) msg.view_frac = frac;
    }
    return this.connection.sendInput(msg);
  }

  say(text) {
    return this.connection.sendInput({ t: "say", text });
  }

  /**
   * Send one of your own inputs (numbered like every input) and predict it:
   * `step` applies it to your avatar at once and again in every replay until
   * the server acks it (a reject takes it out). Returns its seq, 0 when not joined.
   */
  sendInput(msg) {
    const seq = this.connection.sendInput(msg);
    if (!seq) return 0;
    const input = { ...msg, seq };
    this.sentSeqs.push(seq);
    this.pendingInputs.push(input);
    if (this._predicted) this._predicted = this.step(this._predicted, input, this.world);
    return seq;
  }

  resync() {
    return this.connection.send({ t: "resync" });
  }

  // -- what to draw -----------------------------------------------------------

  /** The server tick others are drawn at now (an integer, for `tag`'s `view`). */
  viewTick(t = now()) {
    const rt = this.renderTick(t);
    return Math.max(0, Math.round(rt ?? this.tick ?? 0));
  }

  /**
   * The fractional server tick others are drawn at, or null before the first
   * state. With sync "intent" it runs on with the tick clock past the latest
   * state (moving cubes move without messages); else it stops there.
   */
  renderTick(t = now()) {
    const clock = this.tickClock;
    if (!clock || clock.base === null) return this.tick;
    if (this.sync === "intent") {
      if (!this.interpolate) return Math.max(clock.tickAt(t), this.tick);
      const target = clock.tickAt(t - this.interpolationDelay - clock.spread);
      // eased too: a render tick that leapt back would draw a cube where it was before
      // its order (tests/browser/test_compact_page.py saw one drawn back at its start)
      return this.smoothClock ? this._slew(t, target, clock.period) : target;
    }
    if (!this.interpolate) return this.tick;
    const target = clock.tickAt(t - this.interpolationDelay - clock.spread);
    if (!this.smoothClock) return Math.min(target, this.tick);
    return Math.min(this._slew(t, target, clock.period), this.tick + this.maxExtrapolation / clock.period);
  }

  /** The smoothed render tick at local time t, easing toward `target`. */
  _slew(t, target, period) {
    if (this._rt === null || Math.abs(target - this._rt) > 20) {
      this._rt = target; // the first state, or far off (a rejoin, a long stall): jump
      this._rtAt = t;
      return target;
    }
    if (t <= this._rtAt) return this._rt + (t - this._rtAt) / period;
    const ticks = (t - this._rtAt) / period;
    const free = this._rt + ticks;
    const most = 0.1 * ticks;
    this._rt = free + Math.max(-most, Math.min(most, target - free));
    this._rtAt = t;
    return this._rt;
  }

  /**
   * Where an entity of the mirror is at (fractional) server tick `tick`, by
   * default the tick drawn now: [x, y, z]. With sync "intent" a cube in motion
   * (`to` and `since`) is extrapolated (docs/PROTOCOL.md 11); otherwise it is
   * its `pos`. `entity` is an entity map or its id.
   */
  positionAt(entity, tick = this.renderTick()) {
    const e = typeof entity === "object" ? entity : this.state.entities[entity];
    if (!e || !Array.isArray(e.pos)) return null;
    if (this.sync === "intent" && tick !== null) {
      const p = this._motion(e, tick);
      if (p) return p;
    }
    return [...e.pos];
  }

  /** The render delay behind the newest state, ms (interpolationDelay + jitter). */
  get renderDelay() {
    return this.interpolate && this.tickClock ? this.interpolationDelay + this.tickClock.spread : 0;
  }

  /**
   * Everything to draw at local time t: a Map id -> {kind, owner, pos: [x, y, z],
   * color, to?, predicted?}. Your avatar is predicted (when on), the rest
   * interpolated (when on) at renderTick(t); with sync "intent", cubes in
   * motion are where they are at that tick.
   */
  view(t = now()) {
    this.connection.pump(t);
    const rt = this.renderTick(t);
    this._lastViewAt = t; // what the last frame showed: tag() aims at it
    this._lastRenderTick = rt;
    const ahead =
      this.smoothClock && this.interpolate && this.tickClock && this.sync !== "intent" ? this.maxExtrapolation / this.tickClock.period : 0;
    const src = this.buffer.sample(rt, this.sync === "intent" ? this._motion : null, ahead);
    const out = new Map(src);
    const id = this.avatarId;
    if (id !== null) {
      const own = this.state.entities[id];
      out.set(id, { ...own, pos: this.predictedPosition(t) ?? own.pos, predicted: this.predict });
    }
    return out;
  }

  /** Your avatar as drawn at time t: [x, y, z], or null. */
  predictedPosition(t = now()) {
    if (!this._authPos) return null;
    if (!this.predict) return [...this._authPos];
    let pos = this._predicted;
    // The part of the held direction not yet sent, so motion is smooth between samples.
    const elapsed = Math.min(MAX_MOVE_DT, t - this._segmentStart);
    if ((this._dir[0] || this._dir[1]) && elapsed > 0) {
      pos = this.glide(pos, { t: "move", dir: [...this._dir], dt: elapsed }, this.world);
    }
    const k = this._errorDecay(t);
    return [pos[0] + this._error[0] * k, pos[1], pos[2] + this._error[1] * k];
  }

  /** Inputs sent and not yet acked. */
  get backlog() {
    return this.sentSeqs.length;
  }

  /** Prediction corrections in the last second. */
  correctionsPerSecond(t = now()) {
    while (this.corrections.length && this.corrections[0] < t - 1000) this.corrections.shift();
    return this.corrections.length;
  }

  // -- internals ----------------------------------------------------------------

  _startSampling() {
    if (this._sampleTimer) return;
    this._sampleTimer = setInterval(() => this._flushMove(now()), 1000 / this.sampleRate);
  }

  _stopSampling() {
    clearInterval(this._sampleTimer);
    this._sampleTimer = null;
  }

  _flushMove(t) {
    if (!this._dir[0] && !this._dir[1]) return;
    const elapsed = t - this._segmentStart;
    if (elapsed < 1) return;
    const dt = Math.min(MAX_MOVE_DT, Math.round(elapsed));
    this._sendMove(dt);
    this._segmentStart = elapsed > MAX_MOVE_DT ? t : this._segmentStart + dt;
  }

  _sendMove(dt) {
    this.sendInput({ t: "move", dt, dir: [...this._dir] });
  }

  _errorDecay(t) {
    if (!this._error[0] && !this._error[1]) return 0;
    const k = Math.exp(-(t - this._errorAt) / this.blendTime);
    if (k < 0.01) {
      this._error = [0, 0];
      return 0;
    }
    return k;
  }

  _onWelcome(msg) {
    // A (re)join: whatever was in flight is either in `ack` or lost.
    this.pendingInputs = [];
    this.sentSeqs = [];
    this._authPos = null;
    this._predicted = null;
    this._correctedUpTo = 0;
    this._error = [0, 0];
    this.buffer.clear();
    this.tickClock = new TickClock(msg.rate);
    this._rt = null;
    this.state = { entities: {}, players: {} };
    this.tick = null;
    if (this._dir[0] || this._dir[1]) {
      this._segmentStart = now();
      this._startSampling();
    }
  }

  _onState(msg, whole) {
    const t = now();
    if (this.sync === "intent") {
      // MessagePack bodies for intent clients carry float32 (PROTOCOL.md 11): back to the 0.01 grid.
      const ents = (whole ? msg.state : msg.patch)?.entities;
      if (ents && typeof ents === "object") for (const e of Object.values(ents)) roundMotion(e);
    }
    if (whole || msg.compact) {
      // a snapshot, or a compact frame: `state` is the connection's whole mirror
      this.state = msg.state && typeof msg.state === "object" ? msg.state : {};
    } else {
      this.state = applyMergePatch(this.state, msg.patch);
    }
    this.state.entities ??= {};
    this.state.players ??= {};
    this.tick = msg.tick;
    this.ack = msg.ack ?? this.ack;
    this.tickClock?.observe(msg.tick, t);
    this.buffer.push(msg.tick, this.state.entities);

    while (this.sentSeqs.length && this.sentSeqs[0] <= this.ack) this.sentSeqs.shift();
    this._reconcile(t, "state");
    this.emit("state", msg);
  }

  /** Authoritative own position at `ack`, replay the moves after it, measure the error. */
  _reconcile(t, reason) {
    const id = this.avatarId;
    if (id === null) {
      this._authPos = this._predicted = null;
      return;
    }
    if (this.ack < this._correctedUpTo && this._authPos) {
      // A `correct` already told us a newer truth than this state carries.
      return;
    }
    const pos = this.state.entities[id].pos;
    this._authPos = [pos[0], pos[1], pos[2]];
    this.pendingInputs = this.pendingInputs.filter((m) => m.seq > this.ack);
    this._replay(t, reason);
  }

  _replay(t, reason) {
    let pos = [...this._authPos];
    for (const input of this.pendingInputs) pos = this.step(pos, input, this.world);
    const old = this._predicted;
    this._predicted = pos;
    if (!old) return;
    // Errors are measured and blended on the ground plane (x, z).
    const ex = old[0] - pos[0];
    const ez = old[2] - pos[2];
    if (Math.abs(ex) < 1e-6 && Math.abs(ez) < 1e-6) return;
    const snapped = Math.sqrt(ex * ex + ez * ez) > this.snapDistance;
    if (snapped) {
      this._error = [0, 0];
    } else {
      const k = this._errorDecay(t);
      this._error = [this._error[0] * k + ex, this._error[1] * k + ez];
      this._errorAt = t;
    }
    this.corrections.push(t);
    this.correctionCount++;
    this.emit("correction", { id: this._avatarId, error: [ex, ez], snapped, reason });
  }

  _onReject(msg) {
    // A refused input has no effect on the server: take it out of the prediction.
    const before = this.pendingInputs.length;
    this.pendingInputs = this.pendingInputs.filter((m) => m.seq !== msg.seq);
    if (this.pendingInputs.length !== before && this._authPos) this._replay(now(), "reject");
  }

  _onCorrect(msg) {
    const id = this.avatarId;
    if (id === null || String(msg.id) !== id || !Array.isArray(msg.pos)) return;
    this._correctedUpTo = Math.max(this._correctedUpTo, msg.seq ?? 0);
    this._authPos = [msg.pos[0], msg.pos[1], msg.pos[2]];
    this.pendingInputs = this.pendingInputs.filter((m) => m.seq > (msg.seq ?? 0));
    this._replay(now(), msg.reason ?? "correct");
  }
}
