// The intent sync (docs/PROTOCOL.md section 11), the reading side.
//
// A client that says hello with `sync: "intent"` gets a moving cube once per
// order (its `pos`, its target `to` and `since`, the state tick at which `pos`
// was true) instead of once per tick, and works out where it is at any tick:
// from `pos` toward `to` at `world.speed` units/s, stopping at `to`, rounded
// to 0.01. A port of arbiter.games.cubes.extrapolate, with the movement step
// of movement.js (a line-by-line port of arbiter/movement.py).

import { round2, stepToward } from "./movement.js";

/** True when an entity is in motion as the intent sync sends it (numeric `since`, a [tx, tz] `to`). */
export function isExtrapolated(entity) {
  return (
    !!entity &&
    typeof entity.since === "number" &&
    Array.isArray(entity.to) &&
    entity.to.length === 2 &&
    Array.isArray(entity.pos) &&
    entity.pos.length === 3
  );
}

/**
 * [x, z] of a cube at state tick `tick` (fractional ticks are fine) as an
 * intent client computes it from its mirror: from `pos` at `since` toward
 * `to`, `speed` units/s, `rate` ticks a second, stopping at `to`, rounded to
 * 0.01. An entity without motion (no `to` or no `since`) is where its `pos` is.
 */
export function extrapolate(entity, tick, rate, speed) {
  const pos = entity.pos;
  const to = entity.to;
  const since = entity.since;
  if (to === null || to === undefined || since === null || since === undefined) return [pos[0], pos[2]];
  const [x, z] = stepToward(pos[0], pos[2], to[0], to[1], (speed * Math.max(0, tick - since)) / rate);
  return [round2(x), round2(z)];
}

/**
 * The 0.01 grid values of an entity's `pos` and `to` (MessagePack bodies for
 * intent clients carry float32: PROTOCOL.md 11 says to round when reading).
 * Changes `entity` in place (new arrays); returns it.
 */
export function roundMotion(entity) {
  if (!entity || typeof entity !== "object") return entity;
  const r = (v) => (typeof v === "number" ? round2(v) : v);
  if (Array.isArray(entity.pos)) entity.pos = entity.pos.map(r);
  if (Array.isArray(entity.to)) entity.to = entity.to.map(r);
  return entity;
}
