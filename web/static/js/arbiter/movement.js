// The pure movement step, identical on server and client.
//
// A line-by-line port of arbiter/movement.py: client-side prediction is exact
// only while the two agree (tests/test_movement_parity.py runs both on the same
// inputs). Plain IEEE double arithmetic in a fixed order, no Math.hypot (its
// last bit differs between libms), rounding half away from zero.

/** Round to 0.01, half away from zero (Math.round differs only for negatives). */
export function round2(v) {
  return v ? (Math.floor(Math.abs(v) * 100 + 0.5) / 100) * (v >= 0 ? 1 : -1) : 0;
}

export function clamp(v, lo, hi) {
  return v < lo ? lo : v > hi ? hi : v;
}

/**
 * Position after moving `dtMs` toward (dx, dz) at `speed` units/s.
 *
 * A direction longer than 1 is scaled down to 1; the result is clamped to the
 * closed plane [-size/2, size/2] and rounded to 0.01. Returns [x, z].
 */
export function stepAvatar(x, z, dx, dz, dtMs, speed, size) {
  const length = Math.sqrt(dx * dx + dz * dz);
  if (length > 1) {
    dx = dx / length;
    dz = dz / length;
  }
  const dist = (speed * dtMs) / 1000;
  const half = size / 2;
  const nx = clamp(x + dx * dist, -half, half);
  const nz = clamp(z + dz * dist, -half, half);
  return [round2(nx), round2(nz)];
}

/** Move (x, z) up to `dist` toward (tx, tz). Returns [x, z, arrived]. */
export function stepToward(x, z, tx, tz, dist) {
  const ddx = tx - x;
  const ddz = tz - z;
  const remaining = Math.sqrt(ddx * ddx + ddz * ddz);
  if (remaining <= dist || remaining === 0) {
    return [tx, tz, true];
  }
  const f = dist / remaining;
  return [x + ddx * f, z + ddz * f, false];
}
