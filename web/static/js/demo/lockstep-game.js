// The lockstep demo game: a port of arbiter/lockstep_game.py, bit for bit.
//
// Integer-only, 32-bit: xorshift32 PRNG, FNV-1a checksum, wrapping grid. Python
// and JS reach the same checksum every turn from the same seed, config and
// master packets (tests/test_lockstep_game_parity.py). No DOM, no imports.

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

export function xorshift32(x) {
  x = (x ^ (x << 13)) >>> 0;
  x = (x ^ (x >>> 17)) >>> 0;
  x = (x ^ (x << 5)) >>> 0;
  return x;
}

/** FNV-1a (32-bit) over 32-bit integers, 4 little-endian bytes each. */
export function fnv1a(values) {
  let h = FNV_OFFSET;
  for (const value of values) {
    const v = value >>> 0;
    for (let shift = 0; shift < 32; shift += 8) {
      h = (h ^ ((v >>> shift) & 0xff)) >>> 0;
      h = Math.imul(h, FNV_PRIME) >>> 0;
    }
  }
  return h;
}

/** v if it is an integral number (JSON cannot tell 2 from 2.0), else null. */
export function asInt(v) {
  return typeof v === "number" && Number.isInteger(v) ? v : null;
}

function intOption(config, key, dflt, lo, hi) {
  const v = asInt(config[key] ?? dflt);
  return v === null ? dflt : Math.max(lo, Math.min(hi, v));
}

const mod = (a, n) => ((a % n) + n) % n;

export class DemoGame {
  constructor(seed, players, config = {}) {
    config = config ?? {};
    this.size = intOption(config, "size", 64, 8, 1024);
    this.coinsN = intOption(config, "coins", 5, 0, 64);
    this.rng = Number(seed) >>> 0 || 0x9e3779b9;
    this.turn = 0;
    this.frame = 0;
    this.players = [...players];
    this.units = new Map(); // pid -> [x, y, vx, vy, score]
    this.players.forEach((pid, i) => {
      this.units.set(pid, [(i * 11 + 3) % this.size, (i * 7 + 5) % this.size, 0, 0, 0]);
    });
    this.coins = [];
    for (let i = 0; i < this.coinsN; i++) this.coins.push(this._place());
  }

  _next() {
    this.rng = xorshift32(this.rng);
    return this.rng;
  }

  _place() {
    const x = this._next() % this.size;
    const y = this._next() % this.size;
    return [x, y];
  }

  apply(pid, cmd) {
    const unit = this.units.get(pid);
    if (!unit || !Array.isArray(cmd) || cmd.length !== 3 || cmd[0] !== "v") return;
    const dx = asInt(cmd[1]);
    const dy = asInt(cmd[2]);
    if (dx === null || dy === null || dx < -2 || dx > 2 || dy < -2 || dy > 2) return;
    unit[2] = dx;
    unit[3] = dy;
  }

  step() {
    this.frame += 1;
    const size = this.size;
    for (const pid of this.players) {
      const unit = this.units.get(pid);
      if (!unit) continue;
      unit[0] = mod(unit[0] + unit[2], size);
      unit[1] = mod(unit[1] + unit[3], size);
      for (const coin of this.coins) {
        if (coin[0] === unit[0] && coin[1] === unit[1]) {
          unit[4] += 1;
          const [x, y] = this._place();
          coin[0] = x;
          coin[1] = y;
        }
      }
    }
  }

  /** One master packet: drops, commands in player order, then `frames` steps. */
  applyMaster(master) {
    for (const pid of master.dropped ?? []) this.units.delete(pid);
    const cmds = master.cmds ?? {};
    for (const pid of this.players) {
      for (const cmd of cmds[pid] ?? []) this.apply(pid, cmd);
    }
    const frames = Math.max(1, asInt(master.frames ?? 1) || 1);
    for (let i = 0; i < frames; i++) this.step();
    this.turn = master.turn;
  }

  checksum() {
    const values = [this.turn, this.frame, this.rng];
    for (const pid of this.players) {
      const unit = this.units.get(pid);
      if (unit) values.push(...unit);
    }
    for (const coin of this.coins) values.push(...coin);
    return fnv1a(values);
  }
}
