// A lockstep client on top of the Connection layer.
//
//   import { Connection, LockstepClient } from "/js/arbiter/index.js";
//   const conn = new Connection({ room: "arena", name: "ada" });
//   const ls = new LockstepClient(conn, { makeGame: (start) => new MyGame(start) });
//   ls.on("turn", (game) => draw(game));
//   await conn.connect();
//   ls.ready();
//
// It follows docs/LOCKSTEP.md: keeps the setup lobby and the phase, builds the
// game from `start` (or rebuilds it from `catchup` after a reconnection),
// applies master packets in order, and sends one `turn` packet per turn
// `input_delay` turns ahead with the queued commands, the checksum of the turn
// it just applied, its round trip and frame rate. The game is yours
// (options.makeGame); the client only needs it deterministic. No DOM.

import { Emitter } from "./emitter.js";

const KEEP_CHECKSUMS = 512;

export class LockstepClient extends Emitter {
  /**
   * connection: a Connection (not yet connected, or connected).
   * options.makeGame(start) -> your game, built from the `start` (or `catchup`)
   *   message: an object with applyMaster(master), checksum() (an integer or
   *   a string of at most 64 characters) and turn (the last turn applied); required.
   * options.fps() -> the current frame rate.
   * Events: "setup" (msg), "phase" (phase, msg), "start" (game), "turn" (game, master),
   * "desync" (msg), "reject" (msg), "event" (msg), "late" (turn).
   */
  constructor(connection, options = {}) {
    super();
    this.conn = connection;
    if (typeof options.makeGame !== "function") {
      throw new TypeError("LockstepClient needs options.makeGame(start) -> your game");
    }
    this.makeGame = options.makeGame;
    this.fps = options.fps ?? (() => 60);
    this.phase = null;
    this.setup = null;
    this.start = null;
    this.game = null;
    this.inputDelay = 2;
    this.sentUpto = 0;
    this.queued = [];
    this.checksums = new Map(); // turn -> this client's checksum
    this.lastMaster = null;
    this.lateTurns = 0;
    this.desync = null;
    const on = (t, fn) => connection.on(t, fn.bind(this));
    on("welcome", this._onWelcome);
    on("setup", this._onSetup);
    on("phase", this._onPhase);
    on("start", this._onStart);
    on("catchup", this._onCatchup);
    on("master", this._onMaster);
    on("desync", this._onDesync);
    on("reject", (msg) => this.emit("reject", msg));
    on("event", (msg) => this.emit("event", msg));
  }

  get you() {
    return this.conn.you;
  }

  /** The WebSocket url the connection is on (after a cluster's redirect, the room's node). */
  get url() {
    return this.conn.url;
  }

  get turn() {
    return this.game ? this.game.turn : 0;
  }

  get isPlayer() {
    return !!(this.start && this.start.players.includes(this.you));
  }

  // -- what the player does ---------------------------------------------------
  ready(flag = true) {
    return this.conn.send({ t: "ready", ready: flag });
  }

  configure(changes) {
    return this.conn.send({ t: "configure", config: changes });
  }

  /** Queue a game command for the next packet this client sends. */
  command(cmd) {
    this.queued.push(cmd);
  }

  // -- the wire ---------------------------------------------------------------
  _onWelcome(msg) {
    this._setPhase(msg.phase, msg);
  }

  _onSetup(msg) {
    this.setup = msg;
    if (msg.phase) this._setPhase(msg.phase, msg);
    this.emit("setup", msg);
  }

  _onPhase(msg) {
    this._setPhase(msg.phase, msg);
  }

  _setPhase(phase, msg) {
    if (!phase || phase === this.phase) return;
    this.phase = phase;
    this.emit("phase", phase, msg);
  }

  _begin(msg) {
    this.start = msg;
    this.inputDelay = msg.input_delay;
    this.game = this.makeGame(msg);
    this.sentUpto = 0;
    this.checksums.clear();
    this.desync = null;
  }

  _onStart(msg) {
    this._begin(msg);
    this.emit("start", this.game);
    this._sendAhead(0, null);
  }

  _onCatchup(msg) {
    this._begin(msg);
    for (const master of msg.masters) this._apply(master);
    this._setPhase(msg.phase, msg);
    if (msg.desync) this._onDesync({ t: "desync", ...msg.desync });
    this.emit("start", this.game);
    if (msg.masters.length) this.emit("turn", this.game, msg.masters[msg.masters.length - 1]);
    if (typeof msg.next === "number") {
      this.sentUpto = msg.next - 1;
      this._sendAhead(this.game.turn, null);
    }
  }

  _onMaster(msg) {
    if (!this.game || msg.turn !== this.game.turn + 1) return;
    this._apply(msg);
    if ((msg.late ?? []).includes(this.you)) {
      this.lateTurns++;
      this.emit("late", msg.turn);
    }
    this.emit("turn", this.game, msg);
    this._sendAhead(msg.turn, [msg.turn, this.checksums.get(msg.turn)]);
  }

  _onDesync(msg) {
    this.desync = msg;
    this.emit("desync", msg);
  }

  _apply(master) {
    this.game.applyMaster(master);
    this.lastMaster = master;
    this.checksums.set(master.turn, this.game.checksum());
    if (this.checksums.size > KEEP_CHECKSUMS) {
      this.checksums.delete(this.checksums.keys().next().value);
    }
  }

  _sendAhead(applied, check) {
    if (!this.isPlayer || this.desync) return;
    const rtt = this.conn.clock.medianRtt();
    while (this.sentUpto < applied + this.inputDelay) {
      this.sentUpto += 1;
      const packet = { t: "turn", turn: this.sentUpto, cmds: this.queued.splice(0, 64) };
      if (check && check[1] !== undefined) packet.check = check;
      check = null;
      if (rtt !== null) packet.lat = Math.max(0, Math.min(60000, Math.round(rtt)));
      const fps = this.fps();
      if (fps) packet.fps = Math.max(0, Math.min(1000, Math.round(fps)));
      this.conn.send(packet);
    }
  }
}
