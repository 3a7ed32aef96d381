"""Lockstep turn packets: their limits, their validation at the edge, turn timing.

``turn`` (client -> server) is checked by :func:`check_turn`, part of the lockstep
room kind's ``messages`` (arbiter/schema.py); :func:`adapt_timing` picks the turn length and the frames per turn
for the slowest client (docs/LOCKSTEP.md, "Turn timing").
"""

import json
import math

from arbiter.schema import MAX_SEQ, bad as _bad

MAX_CMDS = 64               # commands in one packet
MAX_CMD_BYTES = 2048        # a packet's commands, as compact JSON
MAX_AHEAD = 16              # packets accepted up to this many turns past the last closed one
MAX_TURN_MS = 1000


def check_turn(f):
    turn = f.get("turn")
    if not isinstance(turn, int) or isinstance(turn, bool) or not 1 <= turn <= MAX_SEQ:
        raise _bad("expected integer >= 1 for turn, got %r" % (turn,))
    cmds = f.get("cmds", [])
    if not isinstance(cmds, (list, tuple)):
        raise _bad("expected a list for cmds, got %s" % type(cmds).__name__)
    if len(cmds) > MAX_CMDS:
        raise _bad("cmds has %d commands, at most %d allowed" % (len(cmds), MAX_CMDS))
    try:
        size = len(json.dumps(cmds, separators=(",", ":"), allow_nan=False))
    except (TypeError, ValueError) as e:
        raise _bad("cmds must be plain JSON: %s" % e)
    out = {"turn": turn, "cmds": list(cmds), "size": size}
    if "check" in f:
        check = f["check"]
        if (not isinstance(check, (list, tuple)) or len(check) != 2
                or not isinstance(check[0], int) or isinstance(check[0], bool) or check[0] < 1
                or not isinstance(check[1], (int, str)) or isinstance(check[1], bool)
                or (isinstance(check[1], str) and len(check[1]) > 64)):
            raise _bad("expected [turn, checksum] for check (turn >= 1, checksum an integer "
                       "or a string of at most 64 characters), got %r" % (check,))
        out["check"] = (check[0], check[1])
    for name, hi in (("lat", 60000), ("fps", 1000)):
        if name in f:
            v = f[name]
            if (not isinstance(v, (int, float)) or isinstance(v, bool)
                    or not math.isfinite(v) or not 0 <= v <= hi):
                raise _bad("expected a number in [0, %d] for %s, got %r" % (hi, name, v))
            out[name] = v
    return out


def adapt_timing(base_ms, reports, input_delay, current_ms):
    """The turn length and frames per turn for the slowest client.

    ``reports`` are (latency ms, fps) pairs, either may be None. A command sent
    on receipt of master N must reach the server before turn N + delay closes,
    so a turn lasts at least rtt / delay; and at least one frame of the slowest
    client. Growth is immediate, shrinking at most 10% per adaptation.
    Returns (turn_ms, frames)."""
    lats = [lat for lat, _ in reports if lat is not None]
    fpss = [fps for _, fps in reports if fps]
    frame_ms = 1000.0 / min(fpss) if fpss else 1000.0 / 60
    want = max(base_ms, math.ceil(max(lats) / input_delay) if lats else 0,
               math.ceil(frame_ms) if fpss else 0)
    want = min(MAX_TURN_MS, want)
    if want < current_ms:
        want = max(want, int(current_ms * 0.9))
    frames = max(1, int(round(want / frame_ms)))
    return int(want), frames
