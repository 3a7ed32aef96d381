// Interpolation of the entities you do not predict, from timestamped states.
//
// TickClock maps server ticks to local time from the arrival times of state
// messages; StateBuffer keeps the last second or so of entity states by tick
// and answers "where was everything at (fractional) tick T".

/**
 * Local time of server ticks. Each state message for tick T that arrives at
 * local time a gives a sample a - T * period; the smallest of the recent
 * samples is the least delayed one (the clock's base), their spread is the
 * jitter the render delay has to absorb.
 */
export class TickClock {
  constructor(rate, keep = 40) {
    this.period = 1000 / rate;
    this.keep = keep;
    this.samples = [];
    this.base = null;
    this.spread = 0;
  }

  reset() {
    this.samples = [];
    this.base = null;
    this.spread = 0;
  }

  observe(tick, arrivedAt) {
    this.samples.push(arrivedAt - tick * this.period);
    if (this.samples.length > this.keep) this.samples.shift();
    const sorted = [...this.samples].sort((a, b) => a - b);
    this.base = sorted[0];
    // The 90th percentile, so one stall does not push the view back for long.
    this.spread = sorted[Math.floor((sorted.length - 1) * 0.9)] - this.base;
  }

  /** The fractional tick whose state arrives (at the earliest) at local time t. */
  tickAt(t) {
    return this.base === null ? null : (t - this.base) / this.period;
  }
}

function lerp(a, b, f) {
  return a + (b - a) * f;
}

/**
 * Entity states by tick. push() copies what it needs, so the caller may keep
 * mutating its mirror.
 */
export class StateBuffer {
  constructor(keepTicks = 60) {
    this.keepTicks = keepTicks;
    this.frames = []; // [{tick, entities: Map<id, entity copy>}], oldest first
  }

  clear() {
    this.frames = [];
  }

  get latest() {
    return this.frames.length ? this.frames[this.frames.length - 1] : null;
  }

  push(tick, entities) {
    const copy = new Map();
    for (const id of Object.keys(entities ?? {})) {
      const e = entities[id];
      if (e && typeof e === "object") copy.set(id, { ...e, pos: e.pos ? [...e.pos] : e.pos });
    }
    const last = this.latest;
    if (last && tick <= last.tick) {
      // A resent snapshot for a tick we have (or an older one): it wins over what we had.
      this.frames = this.frames.filter((f) => f.tick < tick);
    }
    this.frames.push({ tick, entities: copy });
    const cutoff = tick - this.keepTicks;
    while (this.frames.length > 2 && this.frames[0].tick < cutoff) this.frames.shift();
  }

  /**
   * The entities as they were at fractional tick `t`: positions interpolated
   * between the two frames around it; an entity that appears (or disappears)
   * between them does so at the later frame. Before the first frame the first
   * one is used, after the last one the last one (a silent server means
   * nothing changed). Returns a Map id -> entity.
   *
   * `motion(entity, t)`, if given, places an entity that moves by itself (the
   * intent sync's cubes): it returns the entity's [x, y, z] at tick t from the
   * frame at or before t (or the first frame), or null to interpolate it.
   *
   * `ahead`: past the newest frame, an entity that moved between the last two
   * frames goes on along that motion for at most `ahead` ticks (extrapolation,
   * while the next state is late), then stays there.
   */
  sample(t, motion = null, ahead = 0) {
    const frames = this.frames;
    if (!frames.length) return new Map();
    const last = frames[frames.length - 1];
    if (t !== null && t > last.tick && ahead > 0 && frames.length > 1) {
      return placed(extrapolated(frames[frames.length - 2], last, Math.min(t - last.tick, ahead)), t, motion);
    }
    if (t === null || t >= last.tick) return placed(last.entities, t ?? last.tick, motion);
    if (t <= frames[0].tick) return placed(frames[0].entities, t, motion);
    let i = frames.length - 2;
    while (i > 0 && frames[i].tick > t) i--;
    const a = frames[i];
    const b = frames[i + 1];
    const f = (t - a.tick) / (b.tick - a.tick);
    const out = new Map();
    for (const [id, ea] of a.entities) {
      const moved = motion?.(ea, t);
      if (moved) {
        out.set(id, { ...ea, pos: moved }); // its motion holds until b (a change comes in a state)
        continue;
      }
      const eb = b.entities.get(id);
      if (!eb || !ea.pos || !eb.pos) {
        out.set(id, ea); // gone by b (or no position): shown as it was until then
        continue;
      }
      out.set(id, { ...ea, pos: ea.pos.map((v, k) => lerp(v, eb.pos[k], f)) });
    }
    return out;
  }
}

/** The entities of frame `b`, those that moved since frame `a` carried on `dt` ticks further. */
function extrapolated(a, b, dt) {
  const span = b.tick - a.tick;
  if (span <= 0) return b.entities;
  let out = null;
  for (const [id, eb] of b.entities) {
    const ea = a.entities.get(id);
    if (!ea || !ea.pos || !eb.pos) continue;
    const k = dt / span;
    const pos = eb.pos.map((v, i) => v + (v - ea.pos[i]) * k);
    if (pos.every((v, i) => v === eb.pos[i])) continue;
    out ??= new Map(b.entities);
    out.set(id, { ...eb, pos });
  }
  return out ?? b.entities;
}

/** `entities` with those `motion` places at tick t moved there (the same Map when none moves). */
function placed(entities, t, motion) {
  if (!motion) return entities;
  let out = null;
  for (const [id, e] of entities) {
    const pos = motion(e, t);
    if (!pos) continue;
    out ??= new Map(entities);
    out.set(id, { ...e, pos });
  }
  return out ?? entities;
}
