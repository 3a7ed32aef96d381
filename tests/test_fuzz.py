"""Hostile input must not poison a room (issue 9): property-based fuzzing of the
whole pipeline (decode -> validate -> room -> tick -> encode), in memory.

Each example is a plan: hostile frames (a JSON and a msgpack hostile connection,
``arbiter.tools.fuzzing.generate(kind, seed, ...)``), ticks and quiet gaps, while an
honest JSON player and an honest msgpack player play in the same room. The
``arbiter.tools.fuzzing.Fuzzer`` checks every answer against the contract as the
clients see it on the wire, and at the end the honest players' mirrors against
a ``resync`` snapshot and a newcomer's snapshot. Reproducible: derandomized, no
example database. ``bench/fuzz.py`` runs the same pipeline for longer.
"""

import math
import os

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from arbiter.tools import fuzzing
from arbiter.games.cubes import CubeGame
from arbiter.tools.fuzzing import Deep, Fuzzer, Lit, Pairs, Frame, message_frame
from protocols import wire

JSON, MSGPACK = wire.JSON, wire.MSGPACK

# ARBITER_FUZZ_EXAMPLES=2000 for a longer local run; CI uses the default
FUZZ = settings(max_examples=int(os.environ.get("ARBITER_FUZZ_EXAMPLES", 100)), deadline=None,
                derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def plans(kinds, max_steps=40):
    """Lists of steps: ("frame", slot, kind, seed, fragmented), ("tick",), ("gap", s).

    Everything shrinks toward fewer steps, frames rather than ticks, slot 0,
    the first kind, seed 0 and no fragmentation."""
    step = st.tuples(st.integers(0, 11), st.integers(0, 1), st.sampled_from(kinds),
                     st.integers(0, 2 ** 32 - 1), st.integers(0, 9))

    def as_step(s):
        op, slot, kind, seed, frag = s
        if op <= 7:
            return ("frame", slot, kind, seed, frag == 9)
        if op <= 10:
            return ("tick",)
        return ("gap", (0.4, 2.5, 6.0, 10.5)[seed % 4])

    return st.lists(step.map(as_step), min_size=1, max_size=max_steps)


def run(plan, seed=0, **kwargs):
    """Play ``plan`` on a fresh server; the final checks; the Report."""
    with Fuzzer(seed=seed, **kwargs) as fz:
        for step in plan:
            if step[0] == "frame":
                fz.hostile(step[1] % len(fz.slots), step[2], step[3], fragment=step[4])
            elif step[0] == "tick":
                fz.tick()
            else:
                fz.gap(step[1])
        return fz.finish()


def assert_clean(report):
    """Nothing went wrong that a client could see, nor in the log."""
    assert report.internal_errors == 0, report.summary()
    assert report.tracebacks == [], report.summary()
    assert not report.violation_counts, report.summary()
    assert report.honest_sent == report.honest_acked == report.honest_applied > 0, report.summary()


# -- properties ------------------------------------------------------------------------------

@FUZZ
@given(plan=plans(fuzzing.KINDS), seed=st.integers(0, 2 ** 16))
def test_any_hostile_frames_leave_honest_players_whole(plan, seed):
    """Hostile frames of every kind get their documented answer and cost honest players nothing."""
    assert_clean(run(plan, seed))


@FUZZ
@given(plan=plans(fuzzing.MAP_KINDS + ("valid",)), seed=st.integers(0, 2 ** 16))
def test_hostile_maps_are_bad_message_or_answered_normally(plan, seed):
    """Hostile maps get bad_message (the normal answer if valid) and cost honest players nothing."""
    assert_clean(run(plan, seed))


@FUZZ
@given(plan=plans(fuzzing.RAW_KINDS), seed=st.integers(0, 2 ** 16))
def test_raw_frames_get_bad_message_or_the_documented_close(plan, seed):
    """Raw and odd frames get bad_message, 1007 (text not UTF-8) or 1009 (over 64 KiB), no harm."""
    assert_clean(run(plan, seed))


@settings(FUZZ, max_examples=30)
@given(bursts=st.lists(st.tuples(st.integers(1, 25), st.sampled_from([0.0, 0.5, 4.0, 9.9, 10.5])),
                       min_size=1, max_size=6))
def test_the_twentieth_bad_message_within_ten_seconds_closes_1008(bursts):
    """The 20th bad_message within 10 s closes 1008, never earlier, however bursts are spread."""
    bad = message_frame({"t": "ping", "ts": 1, "x": "\udfff"}, JSON)
    hello = message_frame({"t": "hello", "v": 1, "name": "hostile"}, JSON)
    with Fuzzer(hostiles=(JSON,)) as fz:
        window, closed = [], True
        for n, pause in bursts:
            for _ in range(n):
                if closed:                               # a new connection: it joins first
                    msgs, _ = fz.send(0, hello)
                    assert [m["t"] for m in msgs] == ["welcome", "snapshot"]
                    window, closed = [], False
                msgs, close = fz.send(0, bad)
                now = fz.clock.seconds()
                window = [t for t in window if t > now - 10] + [now]
                assert [(m["t"], m["code"]) for m in msgs] == [("error", "bad_message")]
                assert close == (1008 if len(window) >= 20 else None), (len(window), close)
                closed = close is not None
            if pause:
                fz.gap(pause)
            else:
                fz.tick()
        report = fz.finish()
    assert_clean(report)


# -- the hostile inputs issue 9 lists, one by one -------------------------------------------------

S = "\udfff"
B = "bad_message"
# name: (message, answer once joined, answer before hello); "" = nothing until the tick
LISTED = {
    "lone surrogate in hello name": ({"t": "hello", "v": 1, "name": "ev" + S + "il"}, B, B),
    "lone surrogate in hello room": ({"t": "hello", "v": 1, "room": "r" + S}, B, B),
    "lone surrogate in say text": ({"t": "say", "seq": 1, "text": "\ud800"}, B, B),
    "lone surrogate in an unknown field": ({"t": "ping", "ts": 1, "x": ["a" + S]}, B, B),
    "lone surrogate in a key": ({"t": "ping", "ts": 1, S: 1}, B, B),
    "surrogates in the wrong order": ({"t": "say", "seq": 1, "text": "\udc00\ud800"}, B, B),
    "10,000 levels of lists": ({"t": "ping", "ts": 1, "x": Deep(10000)}, B, B),
    "1,010 levels of lists": ({"t": "ping", "ts": 1, "x": Deep(1010)}, B, B),
    "1,010 levels of maps": ({"t": "move", "seq": 1, "dt": 5, "dir": [0, 0],
                              "x": Deep(1010, maps=True)}, B, B),
    "33 levels": ({"t": "ping", "ts": 1, "x": Deep(32)}, B, B),
    "32 levels": ({"t": "ping", "ts": 1, "x": Deep(31)}, "pong", "not_joined"),
    "the message itself 10,000 levels deep": (Deep(10000), B, B),
    "seq 2^53": ({"t": "spawn", "seq": 2 ** 53}, B, B),
    "seq 2^53 - 1": ({"t": "spawn", "seq": 2 ** 53 - 1}, "", "not_joined"),
    "ts -2^63": ({"t": "ping", "ts": -2 ** 63}, B, B),
    "id 2^64 - 1": ({"t": "delete", "seq": 1, "id": 2 ** 64 - 1}, B, B),
    "an unknown field 2^63 - 1": ({"t": "resync", "x": 2 ** 63 - 1}, B, B),
    "ts NaN": ({"t": "ping", "ts": math.nan}, B, B),
    "dt Infinity": ({"t": "move", "seq": 1, "dt": math.inf, "dir": [0, 0]}, B, B),
    "ts 1e400": ({"t": "ping", "ts": Lit("1e400")}, B, B),
    "an unknown field -Infinity": ({"t": "resync", "x": [-math.inf]}, B, B),
    "seq as a string": ({"t": "move", "seq": "7", "dt": 10, "dir": [0, 0]}, B, "not_joined"),
    "name as a list": ({"t": "hello", "v": 1, "name": ["x"]}, "already_joined", B),
    "dir as a map": ({"t": "move", "seq": 1, "dt": 10, "dir": {"x": 0}}, B, "not_joined"),
    "move with no fields": ({"t": "move"}, B, "not_joined"),
    "t as a number": ({"t": 5}, B, B),
    "an unknown type": ({"t": "fly"}, B, B),
    "a lockstep message": ({"t": "ready", "seq": 1, "ready": True}, B, "not_joined"),
}
LISTED_JSON = {
    "10^30 in seq": ({"t": "spawn", "seq": 10 ** 30}, B, B),
    "5,000 digits": ({"t": "ping", "ts": Lit("9" * 5000)}, B, B),
    "NaN in an unknown field": ({"t": "resync", "x": Lit("NaN")}, B, B),
}
LISTED_MSGPACK = {
    "bin in hello name": ({"t": "hello", "v": 1, "name": b"bin"}, B, B),
    "bin in an unknown field": ({"t": "ping", "ts": 1, "x": b"\x00"}, B, B),
    "ext in say text": ({"t": "say", "seq": 1, "text": msgpack.ExtType(1, b"x")}, B, B),
    "a timestamp": ({"t": "ping", "ts": msgpack.Timestamp(1)}, B, B),
    "an integer key": (Pairs([("t", "ping"), ("ts", 1), (1, 2)]), B, B),
    "a nested bytes key": ({"t": "ping", "ts": 1, "x": Pairs([(b"k", 1)])}, B, B),
    "a nil key": (Pairs([("t", "resync"), (None, 1)]), B, B),
    "float32 NaN": ({"t": "ping", "ts": fuzzing.F32(math.nan)}, B, B),
    "a string that is not UTF-8": ({"t": "say", "seq": 1, "text": "\ud800"}, B, B),
}


def listed(encoding):
    cases = dict(LISTED, **(LISTED_JSON if encoding == JSON else LISTED_MSGPACK))
    return [pytest.param(encoding, joined, obj, when_joined if joined else fresh,
                         id="%s-%s-%s" % (encoding.split(".")[-1],
                                          "joined" if joined else "fresh", name))
            for name, (obj, when_joined, fresh) in cases.items() for joined in (True, False)]


@pytest.mark.parametrize("encoding, joined, obj, want", listed(JSON) + listed(MSGPACK))
def test_listed_hostile_input(encoding, joined, obj, want):
    """Each hostile input issue 9 lists gets its answer, next to honest players who lose nothing."""
    with Fuzzer(hostiles=(encoding,)) as fz:
        if joined:
            msgs, _ = fz.send(0, message_frame({"t": "hello", "v": 1, "name": "hostile"}, encoding))
            assert [m["t"] for m in msgs] == ["welcome", "snapshot"]
        msgs, close = fz.send(0, message_frame(obj, encoding))
        if want == "pong":
            assert [m["t"] for m in msgs] == ["pong"]
        elif want:
            assert [(m["t"], m["code"]) for m in msgs] == [("error", want)]
        else:
            assert msgs == []
        assert close is None
        fz.tick()
        report = fz.finish()
    assert_clean(report)


@pytest.mark.parametrize("encoding", [JSON, MSGPACK])
@pytest.mark.parametrize("payload, binary, close", [
    (b'{"t":"say","seq":1,"text":"\xed\xbf\xbf"}', False, 1007),     # a raw surrogate
    (b"\xff\xfe", False, 1007),
    (b'{"t":"ping","ts":1,"pad":"' + b"x" * 65600 + b'"}', False, 1009),
    (b"\x82\xa1t\xa4ping\xa2ts" + b"\x01" * 65600, True, 1009),
])
def test_documented_closes(encoding, payload, binary, close):
    """A text frame that is not UTF-8 closes 1007, a message over 64 KiB closes 1009."""
    with Fuzzer(hostiles=(encoding,)) as fz:
        msgs, got = fz.send(0, Frame("explicit", payload, binary))
        assert (msgs, got) == ([], close)
        report = fz.finish()
    assert_clean(report)


@pytest.mark.parametrize("encoding", [JSON, MSGPACK])
def test_frames_of_the_other_type_and_random_bytes_are_bad_message(encoding):
    """A frame of the wrong type for the session, empty or random bytes: bad_message."""
    other = MSGPACK if encoding == JSON else JSON
    frames = [message_frame({"t": "ping", "ts": 1}, other),
              Frame("explicit", b"", encoding == MSGPACK),
              Frame("explicit", b"\x00\x01 \x7f", encoding == MSGPACK),
              Frame("explicit", message_frame({"t": "ping", "ts": 1}, encoding).payload[:-1],
                    encoding == MSGPACK)]
    with Fuzzer(hostiles=(encoding,)) as fz:
        for frame in frames:
            msgs, close = fz.send(0, frame)
            assert [(m["t"], m["code"]) for m in msgs] == [("error", "bad_message")], frame
            assert close is None
        report = fz.finish()
    assert_clean(report)


# -- the fuzzer itself notices what it is there to notice ------------------------------------

class Sabotaged(CubeGame):
    """The cube game with two planted bugs: tags raise, every 3rd spawn does nothing."""

    spawns = 0

    def _tag(self, player, msg):
        raise RuntimeError("planted bug")

    def _spawn(self, player, msg):
        Sabotaged.spawns += 1
        if Sabotaged.spawns % 3 == 0:
            return None
        return super()._spawn(player, msg)


def test_fuzzer_reports_internal_errors_tracebacks_and_lost_inputs():
    """A game that raises on some inputs and drops others is caught: the fuzzer fails the run."""
    with Fuzzer(seed=1, game_factory=Sabotaged) as fz:
        msgs, _ = fz.send(0, message_frame({"t": "hello", "v": 1}, JSON))
        assert [m["t"] for m in msgs] == ["welcome", "snapshot"]
        fz.send(0, message_frame({"t": "tag", "seq": 1, "id": 1, "view": 0}, JSON))
        for _ in range(30):
            fz.tick()
        report = fz.finish()
    assert report.internal_errors >= 1
    assert any("planted bug" in tb for tb in report.tracebacks)
    assert report.honest_lost > 0 and report.violation_counts["honest"] > 0
    assert not report.ok
