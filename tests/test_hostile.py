"""Hostile input (issue 9's findings 1-3): strict decoding at the edge, inputs that
fail alone, quiet logs, player ids that a restart does not hand out again.

Real PlayerProtocols over StringTransports (protocols.testing.FakeClient), time on
a task.Clock.
"""

import json

import msgpack
import pytest
from twisted.logger import globalLogPublisher

from arbiter.config import Config
from arbiter.games.cubes import CubeGame
from arbiter.ids import PlayerIds
from arbiter.app.testing import InMemoryServer
from protocols.testing import FakeClient
from protocols import wire


@pytest.fixture
def srv(txaio_clock):
    s = InMemoryServer()
    yield s
    s.service.stopService()


@pytest.fixture
def logged():
    """Every log event while the test runs."""
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def tracebacks(events):
    return [e for e in events if "log_failure" in e]


def errors(msgs):
    return [(m["code"], m["msg"]) for m in msgs if m["t"] == "error"]


def merge(target, patch):
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict) and isinstance(target.get(k), dict):
            merge(target[k], v)
        else:
            target[k] = v
    return target


def nested(depth, leaf=1):
    """A list ``depth`` levels deep (the top-level map of the message adds one)."""
    v = leaf
    for _ in range(depth):
        v = [v]
    return v


# -- finding 1: a lone surrogate poisons a room ----------------------------------------

def test_lone_surrogate_in_hello_name_is_bad_message_and_room_stays_healthy(srv):
    """A hello whose name holds a lone surrogate is bad_message naming the field;
    the room goes on: a newcomer gets welcome then snapshot, resync is answered."""
    bystander = srv.join("B")
    c = FakeClient(srv.factory)
    c.send_text('{"t":"hello","v":1,"name":"ev\\udfffil"}')
    msgs = c.received()
    assert [m["code"] for m in msgs if m["t"] == "error"] == ["bad_message"]
    assert "name" in msgs[0]["msg"] and "Unicode" in msgs[0]["msg"]
    assert not [m for m in msgs if m["t"] == "welcome"]
    newcomer = srv.join("N")
    assert set(newcomer.state["players"]) == {bystander.you, newcomer.you}
    bystander.received()
    bystander.send({"t": "resync"})
    srv.tick()
    assert [m["t"] for m in bystander.received()] == ["snapshot"]


@pytest.mark.parametrize("raw", [
    '{"t":"say","seq":1,"text":"\\ud800"}',
    '{"t":"say","seq":1,"text":"hi","extra":{"deep":["\\udc00"]}}',
    '{"t":"say","seq":1,"text":"hi","\\udfff":1}',
    '{"t":"move","seq":1,"dt":16,"dir":[0,0],"note":"a\\ud83dz"}',
])
def test_lone_surrogate_anywhere_is_bad_message(srv, raw):
    """A lone surrogate in any string of a message, unknown fields and keys
    included, makes the message bad_message; nothing is queued or acked."""
    a = srv.join("A")
    a.send_text(raw)
    srv.tick()
    msgs = a.received()
    assert [m["code"] for m in msgs if m["t"] == "error"] == ["bad_message"]
    assert all(m.get("ack", 0) == 0 for m in msgs)


def test_valid_surrogate_pair_and_non_ascii_text_are_fine(srv):
    """An escaped surrogate *pair* is a real character: names and say text with
    emoji and non-Latin letters pass and come back intact."""
    a = FakeClient(srv.factory)
    msgs = a.hello(name="Zoë \\ud83d\\ude00".encode().decode("unicode_escape")[:0] + "Zoë 😀")
    assert msgs[0]["name"] == "Zoë 😀"
    a.send_text('{"t":"say","seq":1,"text":"\\ud83d\\ude00 привет"}')
    srv.tick()
    says = [m for m in a.received() if m.get("kind") == "say"]
    assert says[0]["text"] == "😀 привет"


def test_invalid_utf8_string_in_msgpack_is_bad_message(srv):
    """In msgpack a str holding invalid UTF-8 (an encoded surrogate) is bad_message."""
    c = FakeClient(srv.factory, (wire.MSGPACK,))
    # {"t": "hello", "v": 1, "name": <str 0xED 0xBF 0xBF>}
    payload = b"\x83\xa1t\xa5hello\xa1v\x01\xa4name\xa3\xed\xbf\xbf"
    c.send_binary(payload)
    msgs = c.received()
    assert [m["code"] for m in msgs if m["t"] == "error"] == ["bad_message"]
    assert "UTF-8" in msgs[0]["msg"]
    assert srv.join("N").state["players"]


# -- finding 2: one player's say loses other players' inputs ---------------------------

def test_hostile_say_does_not_cost_others_their_inputs(srv):
    """A say with a lone surrogate is refused at the edge; the other player's five
    spawns in that tick are all applied, its ack covers exactly them, and the
    sender's next move is applied."""
    bad, good = srv.join("bad"), srv.join("good")
    for seq in range(1, 6):
        good.send({"t": "spawn", "seq": seq})
    bad.send_text('{"t":"say","seq":1,"text":"\\udfff"}')
    bad.send({"t": "move", "seq": 2, "dt": 50, "dir": [1, 0]})
    srv.tick()
    gm = good.received()
    bm = bad.received()
    assert [m["code"] for m in bm if m["t"] == "error"] == ["bad_message"]
    good_state = good.state
    for m in gm:
        if m["t"] == "delta":
            merge(good_state, m["patch"])
    cubes = [e for e in good_state["entities"].values()
             if e["kind"] == "cube" and e["owner"] == good.you]
    assert len(cubes) == 5
    assert [m["ack"] for m in gm if m["t"] == "delta"][-1] == 5
    assert [m["ack"] for m in bm if m["t"] == "delta"][-1] == 2
    assert not [m for m in gm + bm if m["t"] == "reject"]


class FlakyGame(CubeGame):
    """The cube game with a bug: an order to (13, 13) raises, and so does a move
    with dt 13 after touching the state."""

    def handle(self, player, msg):
        if msg.t == "order" and list(msg["to"]) == [13, 13]:
            raise RuntimeError("bug in the game")
        if msg.t == "move" and msg["dt"] == 13:
            raise ZeroDivisionError("another bug")
        return super().handle(player, msg)


@pytest.fixture
def flaky(txaio_clock):
    s = InMemoryServer(game_factory=FlakyGame)
    yield s
    s.service.stopService()


def test_an_input_that_fails_in_the_game_fails_alone(flaky, logged):
    """When the game raises on one input, that input alone gets reject
    internal_error; every other input of the tick, the sender's and others', is
    applied and acked as if it had not been there; the traceback is logged once."""
    a, b = flaky.join("A"), flaky.join("B")
    a.send({"t": "spawn", "seq": 1, "at": [1, 1]})
    b.send({"t": "spawn", "seq": 1, "at": [2, 2]})
    flaky.tick()
    a.received(), b.received()
    cube = next(k for k, e in flaky.service.rooms.get("main").state.snapshot()["entities"].items()
                if e["kind"] == "cube" and e["owner"] == a.you)
    a.send({"t": "order", "seq": 2, "ids": [cube], "to": [13, 13]})
    b.send({"t": "spawn", "seq": 2, "at": [3, 3]})
    a.send({"t": "spawn", "seq": 3, "at": [4, 4]})
    a.send({"t": "order", "seq": 4, "ids": [cube], "to": [13, 13]})
    b.send({"t": "say", "seq": 3, "text": "still here"})
    flaky.tick()
    am, bm = a.received(), b.received()
    assert [(m["seq"], m["code"]) for m in am if m["t"] == "reject"] == \
        [(2, "internal_error"), (4, "internal_error")]
    assert not [m for m in bm if m["t"] in ("reject", "error")]
    assert [m["ack"] for m in am if m["t"] == "delta"][-1] == 4
    assert [m["ack"] for m in bm if m["t"] == "delta"][-1] == 3
    patch = [m for m in bm if m["t"] == "delta"][-1]["patch"]
    new = sorted(e["pos"] for e in patch["entities"].values() if e and e.get("kind") == "cube")
    assert new == [[3, 0.5, 3], [4, 0.5, 4]]
    assert [m["text"] for m in am if m.get("kind") == "say"] == ["still here"]
    assert len(tracebacks(logged)) == 1


def test_rejects_for_failed_inputs_precede_the_state_that_acks_them(flaky):
    """The internal_error reject goes out before the delta whose ack covers it."""
    a = flaky.join("A")
    a.send({"t": "move", "seq": 1, "dt": 13, "dir": [1, 0]})
    flaky.tick()
    msgs = a.received()
    assert [m["t"] for m in msgs] == ["reject", "delta"]
    assert msgs[1]["ack"] == 1


class BrokenStepGame(CubeGame):
    """A game whose step raises every tick."""

    def step(self, dt):
        raise RuntimeError("step is broken")


def test_a_failing_game_stage_does_not_stop_acks_or_grace(txaio_clock, logged):
    """With a game whose step raises on every tick, inputs are still acked, state
    ticks still go out, grace periods still end; one traceback, then counts."""
    s = InMemoryServer(game_factory=BrokenStepGame, config=Config(port=0, grace=1.0))
    try:
        a, b = s.join("A"), s.join("B")
        s.tick()
        a.received()
        a.send({"t": "say", "seq": 7, "text": "hi"})
        b.lose()
        s.tick(30)
        msgs = a.received()
        deltas = [m for m in msgs if m["t"] == "delta"]
        assert deltas and deltas[0]["ack"] == 7
        patches = [m["patch"] for m in deltas]
        assert {"players": {b.you: {"connected": False}}} in patches
        assert any(p.get("players", {}).get(b.you, 0) is None for p in patches)
        assert len(tracebacks(logged)) == 1
    finally:
        s.service.stopService()


# -- finding 3: deep nesting --------------------------------------------------------------

@pytest.mark.parametrize("encoding", [wire.JSON, wire.MSGPACK])
@pytest.mark.parametrize("depth", [1010, 10000])
def test_deep_nesting_is_bad_message_without_traceback(srv, logged, encoding, depth):
    """JSON or msgpack nested thousands of levels deep is bad_message (not
    internal_error), with no traceback; 20 such frames log a few lines at most."""
    a = srv.join("A", protocols=(encoding,))
    a.received()
    before = len(logged)
    for _ in range(19):
        if encoding == wire.JSON:
            a.send_text('{"t":"say","seq":1,"text":"x","x":' + "[" * depth + "]" * depth + "}")
        else:
            a.send_binary(b"\x84\xa1t\xa3say\xa3seq\x01\xa4text\xa1x\xa1x"
                          + b"\x91" * depth + b"\x01")
    msgs = a.received()
    assert [m["code"] for m in msgs if m["t"] == "error"] == ["bad_message"] * 19
    assert "deeper than 32" in msgs[0]["msg"]
    assert not tracebacks(logged)
    text = "".join(str(e.get("log_format", "")) + repr(e.get("msg", "")) for e in logged[before:])
    assert len(logged) - before <= 2 and len(text) < 1000


@pytest.mark.parametrize("encoding", [wire.JSON, wire.MSGPACK])
def test_nesting_limit_is_32_levels(srv, encoding):
    """32 levels of maps and arrays (the message itself counted) pass; 33 do not."""
    a = srv.join("A", protocols=(encoding,))
    a.received()
    a.send({"t": "say", "seq": 1, "text": "ok", "x": nested(31)})
    a.send({"t": "say", "seq": 2, "text": "no", "x": nested(32)})
    a.send({"t": "say", "seq": 3, "text": "no", "x": {"a": nested(31, leaf={})}})
    srv.tick()
    msgs = a.received()
    assert [m["code"] for m in msgs if m["t"] == "error"] == ["bad_message", "bad_message"]
    assert [m["text"] for m in msgs if m.get("kind") == "say"] == ["ok"]


def test_brackets_inside_strings_do_not_count_as_nesting(srv):
    """A say text full of brackets is text, not nesting."""
    a = srv.join("A")
    a.send({"t": "say", "seq": 1, "text": "[{" * 100})
    srv.tick()
    assert [m["text"] for m in a.received() if m.get("kind") == "say"] == ["[{" * 100]


# -- the rest of strict decoding -------------------------------------------------------------

@pytest.mark.parametrize("raw,field", [
    ('{"t":"move","seq":9007199254740992,"dt":16,"dir":[0,0]}', "seq"),
    ('{"t":"say","seq":1,"text":"x","n":-9007199254740992}', "n"),
    ('{"t":"say","seq":1,"text":"x","big":[1e400]}', "big[0]"),
    ('{"t":"say","seq":1,"text":"x","big":1%s}' % ("0" * 400), "big"),
    ('{"t":"delete","seq":1,"id":"9007199254740992"}', "id"),
])
def test_numbers_beyond_what_clients_hold_are_bad_message(srv, raw, field):
    """Integers past +-(2^53 - 1) and numbers that overflow to infinity are
    bad_message naming the field."""
    a = srv.join("A")
    a.send_text(raw)
    msgs = a.received()
    assert [m["code"] for m in msgs if m["t"] == "error"] == ["bad_message"]
    assert field in msgs[0]["msg"]


def test_largest_safe_integer_is_a_valid_seq(srv):
    """seq 2^53 - 1 is accepted and acked."""
    a = srv.join("A")
    a.send({"t": "move", "seq": 2 ** 53 - 1, "dt": 16, "dir": [0, 0]})
    srv.tick()
    assert [m["ack"] for m in a.received() if m["t"] == "delta"] == [2 ** 53 - 1]


@pytest.mark.parametrize("payload,field", [
    (msgpack.packb({"t": "say", "seq": 1, "text": "x", "blob": b"\x00\x01"}), "blob"),
    (msgpack.packb({"t": "say", "seq": 1, "text": "x", "e": msgpack.ExtType(5, b"z")}), "e"),
    (msgpack.packb({"t": "say", "seq": 1, "text": "x", "m": {1: "int key"}}), "m"),
    (msgpack.packb({"t": "say", "seq": 1, "text": "x", 7: "int key"}), "message"),
    (msgpack.packb({"t": "say", "seq": 1, "text": "x", "f": float("nan")}), "f"),
    (msgpack.packb({"t": "say", "seq": 1, "text": "x", "u": 2 ** 63}), "u"),
])
def test_msgpack_values_json_cannot_carry_are_bad_message(srv, payload, field):
    """In msgpack, bin and ext values, non-string keys, NaN and integers past
    2^53 - 1 are bad_message naming the field: nothing a msgpack client sends
    can later fail to encode for a JSON client."""
    a = srv.join("A", protocols=(wire.MSGPACK,))
    srv.tick()
    a.received()
    a.send_binary(payload)
    srv.tick()
    msgs = a.received()
    assert [m["code"] for m in msgs if m["t"] == "error"] == ["bad_message"]
    assert field in msgs[0]["msg"]
    assert not [m for m in msgs if m["t"] == "delta"]     # nothing queued, ack unmoved


def test_msgpack_say_reaches_json_players(srv):
    """A say from a msgpack player with non-ASCII text reaches a JSON player
    (the two encodings carry the same maps)."""
    m, j = srv.join("M", protocols=(wire.MSGPACK,)), srv.join("J")
    m.send({"t": "say", "seq": 1, "text": "ünïcødé ✓"})
    srv.tick()
    assert [x["text"] for x in j.received() if x.get("kind") == "say"] == ["ünïcødé ✓"]


# -- logs no client can flood ----------------------------------------------------------------

def test_bad_messages_log_one_line_then_a_count(srv, logged):
    """A connection's first bad message is logged, the rest only counted, and the
    count is logged once when the connection closes."""
    a = srv.join("A")
    for i in range(15):
        a.send_text('{"t":"nope%d"}' % i)
    assert len(errors(a.received())) == 15
    a.lose()
    lines = [e for e in logged if "bad" in str(e.get("log_format", ""))
             or e.get("key") == "bad_message"]
    assert len(lines) == 2
    assert lines[1]["n"] == 14


# -- player ids -------------------------------------------------------------------------------

def test_player_ids_are_not_reused_by_a_restarted_server(txaio_clock):
    """Two runs of the server (two services) hand out different player ids."""
    first, second = InMemoryServer(), InMemoryServer()
    try:
        a, b = first.join("A"), second.join("B")
        assert a.you != b.you
        assert a.you.startswith("p1-") and b.you.startswith("p1-")
    finally:
        first.service.stopService()
        second.service.stopService()


def test_player_ids_count_up_with_one_suffix():
    """Within one process ids are p1-<suffix>, p2-<suffix>, ..."""
    ids = PlayerIds("abcde")
    assert [next(ids) for _ in range(3)] == ["p1-abcde", "p2-abcde", "p3-abcde"]
    assert PlayerIds().suffix != PlayerIds().suffix


# -- a message that cannot be encoded ---------------------------------------------------------

class LeakyGame(CubeGame):
    """A game with a bug: a spawn at (7, 7) sends its owner a message holding a
    Python object, and one at (8, 8) puts bytes (which JSON cannot carry) in the state."""

    def handle(self, player, msg):
        if msg.t == "spawn" and msg.get("at") == [7, 7]:
            self.room.out.send(player, {"t": "event", "kind": "oops", "what": object()})
        if msg.t == "spawn" and msg.get("at") == [8, 8]:
            self.room.state["junk"] = b"\xff"
        return super().handle(player, msg)


@pytest.fixture
def leaky(txaio_clock):
    s = InMemoryServer(game_factory=LeakyGame)
    yield s
    s.service.stopService()


def test_a_message_that_cannot_be_encoded_fails_alone(leaky, logged):
    """A server message that cannot be encoded reaches its player as error
    internal_error; the input is still applied, the others' ticks go on."""
    a, b = leaky.join("A"), leaky.join("B")
    leaky.tick()
    a.received(), b.received()
    a.send({"t": "spawn", "seq": 1, "at": [7, 7]})
    b.send({"t": "spawn", "seq": 1, "at": [1, 1]})
    leaky.tick()
    am, bm = a.received(), b.received()
    assert [m["code"] for m in am if m["t"] == "error"] == ["internal_error"]
    assert [m["ack"] for m in am if m["t"] == "delta"] == [1]
    assert [m["ack"] for m in bm if m["t"] == "delta"] == [1]
    assert len([e for e in bm[-1]["patch"]["entities"].values() if e["kind"] == "cube"]) == 2
    assert len(tracebacks(logged)) == 1


def test_state_one_encoding_cannot_carry_does_not_stop_the_others(leaky):
    """When a game's state cannot be encoded in JSON, msgpack players in the room
    and players in other rooms still get every state tick; JSON players get a
    snapshot as soon as the state can be encoded again."""
    j = leaky.join("J")
    m = leaky.join("M", protocols=(wire.MSGPACK,))
    other = leaky.join("O", room="elsewhere")
    leaky.tick()
    j.received(), m.received(), other.received()
    m.send({"t": "spawn", "seq": 1, "at": [8, 8]})
    other.send({"t": "spawn", "seq": 1})
    leaky.tick()
    assert [x["ack"] for x in m.received() if x["t"] == "delta"] == [1]
    assert [x["ack"] for x in other.received() if x["t"] == "delta"] == [1]
    assert not [x for x in j.received() if x["t"] in ("delta", "snapshot")]
    del leaky.service.rooms.get("main").state["junk"]
    leaky.tick()
    got = j.received()
    assert [x["t"] for x in got] == ["snapshot"]
    assert "junk" not in got[0]["state"]


def test_reconnecting_clients_cannot_flood_the_log(srv, logged):
    """200 connections in a row, each breaking a rule (a bad message, then an
    oversize frame that closes it 1009), log at most the server's budget of
    lines about clients, and the next line says how many were held back."""
    for _ in range(200):
        c = FakeClient(srv.factory)
        c.send_text('{"t":"nope"}')
        c.send_text("x" * 70000)
        msgs = c.received()
        assert c.close_code == 1009 and errors(msgs)[0][0] == "bad_message"
        c.lose()
    lines = len(logged)
    assert lines <= 25
    srv.clock.advance(30)
    c = FakeClient(srv.factory)
    c.send_text('{"t":"nope"}')
    held = [e for e in logged[lines:] if "held back" in str(e.get("log_format"))]
    assert held and held[0]["n"] > 300
