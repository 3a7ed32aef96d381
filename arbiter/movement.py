"""The pure movement step, identical on server and client.

``web/static/js/arbiter/movement.js`` is a line-by-line port: client-side prediction is
exact only while the two agree (tests/test_movement_parity.py runs both on the
same inputs). Plain IEEE double arithmetic in a fixed order, no ``hypot`` (its
last bit differs between libms), rounding half away from zero.
"""

import math


def round2(v):
    """Round to 0.01, half away from zero (Math.round differs only for negatives)."""
    return math.floor(abs(v) * 100 + 0.5) / 100 * (1 if v >= 0 else -1) if v else 0.0


def clamp(v, lo, hi):
    return lo if v < lo else hi if v > hi else v


def step_avatar(x, z, dx, dz, dt_ms, speed, size):
    """Position after moving ``dt_ms`` toward (dx, dz) at ``speed`` units/s.

    A direction longer than 1 is scaled down to 1; the result is clamped to the
    closed plane [-size/2, size/2] and rounded to 0.01.
    """
    length = math.sqrt(dx * dx + dz * dz)
    if length > 1:
        dx = dx / length
        dz = dz / length
    dist = speed * dt_ms / 1000
    half = size / 2
    nx = clamp(x + dx * dist, -half, half)
    nz = clamp(z + dz * dist, -half, half)
    return round2(nx), round2(nz)


def step_toward(x, z, tx, tz, dist):
    """Move (x, z) up to ``dist`` toward (tx, tz). Returns (x, z, arrived)."""
    ddx = tx - x
    ddz = tz - z
    remaining = math.sqrt(ddx * ddx + ddz * ddz)
    if remaining <= dist or remaining == 0:
        return tx, tz, True
    f = dist / remaining
    return x + ddx * f, z + ddz * f, False
