"""Protocol v1 through fake transports: every message, error and close code.

Each test drives a real PlayerProtocol with real WebSocket frames over a
StringTransport (protocols.testing.FakeClient); time is a task.Clock.
"""

import json

import msgpack
import pytest

from arbiter.config import Config, World
from arbiter.app.testing import InMemoryServer
from protocols.testing import FakeClient
from protocols import wire

TICK = 0.05


Harness = InMemoryServer      # the server under test, on a task.Clock


@pytest.fixture
def h(txaio_clock):
    harness = Harness(Config(port=0))
    yield harness
    harness.service.stopService()


def make(config):
    return Harness(config)


def types(msgs):
    return [m["t"] for m in msgs]


def of(msgs, t, **fields):
    return [m for m in msgs if m["t"] == t and all(m.get(k) == v for k, v in fields.items())]


def avatar_of(c, msgs=None):
    state = c.state
    for eid, e in state["entities"].items():
        if e["kind"] == "avatar" and e["owner"] == c.you:
            return int(eid), e


# -- handshake and subprotocols --------------------------------------------------

def test_subprotocol_json_chosen(h):
    """A client offering the JSON subprotocol gets it and text frames."""
    c = h.client([wire.JSON])
    assert c.status == 101 and c.subprotocol == wire.JSON


def test_subprotocol_first_supported_offer_wins(h):
    """The server picks the first of the client's offers it supports."""
    c = h.client(["x.unknown", wire.MSGPACK, wire.JSON])
    assert c.subprotocol == wire.MSGPACK


def test_no_subprotocol_means_json(h):
    """A client that offers none gets JSON (and no subprotocol header)."""
    c = h.client([])
    assert c.status == 101 and c.subprotocol is None
    msgs = c.hello(name="x")
    assert types(msgs[:2]) == ["welcome", "snapshot"]


def test_only_unknown_subprotocols_refused_with_400(h):
    """Offering only unknown subprotocols is refused at the handshake with HTTP 400."""
    c = h.client(["chat", "x.y"])
    assert c.status == 400


def test_msgpack_session_uses_binary_frames(h):
    """In a msgpack session the server answers with binary msgpack frames."""
    c = h.client([wire.MSGPACK])
    c.send({"t": "hello", "v": 1, "name": "M"})
    frames = c.frames()
    assert [op for op, _ in frames[:2]] == [2, 2]
    assert msgpack.unpackb(frames[0][1])["t"] == "welcome"


# -- session ------------------------------------------------------------------------

def test_hello_gives_welcome_then_snapshot_with_avatar(h):
    """welcome then snapshot are the first two messages; the snapshot holds my avatar."""
    c = h.join("Ann")
    w = c.welcome
    assert w["name"] == "Ann" and w["room"] == "main" and w["rate"] == 20 and w["ack"] == 0
    assert isinstance(w["you"], str) and isinstance(w["token"], str)
    assert set(w["world"]) >= {"size", "speed", "avatar_speed", "tag_radius", "max_cubes", "max_players"}
    eid, av = avatar_of(c)
    assert av["owner"] == c.you and av["pos"][1] == 0.5 and av["color"].startswith("#")
    assert c.state["players"][c.you] == {"name": "Ann", "connected": True, "ping": 0, "score": 0}


def test_join_event_goes_to_others(h):
    """A second player's join is an event for the first."""
    a = h.join("A")
    b = h.join("B")
    assert of(a.received(), "event", kind="join") == [
        {"t": "event", "kind": "join", "player": b.you, "name": "B"}]


def test_delta_carries_changes_and_ack(h):
    """An input's effect and its ack arrive in the same state message."""
    a = h.join()
    a.send({"t": "spawn", "seq": 1, "at": [2, 3]})
    h.tick()
    (d,) = of(a.received(), "delta")
    assert d["ack"] == 1
    cubes = [e for e in d["patch"]["entities"].values() if e.get("kind") == "cube"]
    assert cubes[0]["pos"] == [2, 0.5, 3] and cubes[0]["owner"] == a.you


def test_silent_when_nothing_changed(h):
    """With no change and no new ack the server sends no delta."""
    a = h.join()
    h.tick(2)
    a.received()
    h.tick(3)
    assert of(a.received(), "delta") == []


def test_rooms_are_isolated(h):
    """Players in another room see nothing of this one."""
    a = h.join("A", room="red")
    b = h.join("B", room="blue")
    a.send({"t": "spawn", "seq": 1})
    a.send({"t": "say", "seq": 2, "text": "hi"})
    h.tick()
    got = b.received()
    assert of(got, "event") == []
    assert all(a.you not in json.dumps(m) for m in got)
    assert a.you not in b.state["players"]


def test_ping_pong(h):
    """ping is answered at once with pong: ts echoed, the server clock in ms, the tick."""
    a = h.join()
    h.tick(3)
    a.received()
    a.send({"t": "ping", "ts": 123.5})
    (p,) = a.received()
    assert p == {"t": "pong", "ts": 123.5, "now": round(h.clock.seconds() * 1000, 3), "tick": 3}


def test_resync_sends_snapshot_on_next_tick(h):
    """resync is answered with a full snapshot on the next state tick."""
    a = h.join()
    h.tick()
    a.received()
    a.send({"t": "resync"})
    assert a.received() == []
    h.tick()
    (s,) = a.received()
    assert s["t"] == "snapshot" and a.you in s["state"]["players"]


def test_say_goes_to_everyone_including_sender(h):
    """say becomes an event for everyone in the room, the sender included."""
    a, b = h.join("A"), h.join("B")
    a.received()
    a.send({"t": "say", "seq": 1, "text": "héllo"})
    h.tick()
    ev = {"t": "event", "kind": "say", "player": a.you, "text": "héllo"}
    assert of(a.received(), "event") == [ev]
    assert of(b.received(), "event") == [ev]


def test_server_measures_ping(txaio_clock):
    """The player's ping is the measured WebSocket round trip, published on a tick."""
    h = make(Config(port=0))
    a = h.join()
    h.clock.advance(1.0)          # the server pings every second
    h.clock.advance(0.03)
    a.received()                  # the client answers the ping 30 ms later
    h.tick()
    d = of(a.received(), "delta")
    assert d and d[-1]["patch"]["players"][a.you]["ping"] == 30


# -- inputs, acks and rules ---------------------------------------------------------

def test_inputs_processed_in_order_none_lost(h):
    """Several inputs in one tick are all processed, in order, and acked once."""
    a = h.join()
    for seq in range(1, 6):
        a.send({"t": "spawn", "seq": seq, "at": [seq, 0]})
    h.tick()
    (d,) = of(a.received(), "delta")
    assert d["ack"] == 5
    xs = sorted(e["pos"][0] for e in d["patch"]["entities"].values() if e.get("kind") == "cube")
    assert xs == [1, 2, 3, 4, 5]


def test_bad_seq(h):
    """A seq not above the last processed one is rejected bad_seq; ack stays."""
    a = h.join()
    a.send({"t": "spawn", "seq": 5})
    a.send({"t": "spawn", "seq": 5})
    a.send({"t": "spawn", "seq": 3})
    h.tick()
    msgs = a.received()
    assert [(r["seq"], r["code"]) for r in of(msgs, "reject")] == [(5, "bad_seq"), (3, "bad_seq")]
    assert of(msgs, "delta")[0]["ack"] == 5


def test_reject_precedes_the_state_that_acks_it(h):
    """A reject is sent before any state message whose ack covers it."""
    a = h.join()
    a.send({"t": "delete", "seq": 1, "id": 999})
    h.tick()
    msgs = a.received()
    assert types(msgs) == ["reject", "delta"]
    assert msgs[0] == {"t": "reject", "seq": 1, "code": "not_owner", "msg": msgs[0]["msg"]}
    assert msgs[1]["ack"] == 1


def test_not_owner_for_avatar_foreign_cube_and_unknown_id(h):
    """delete/order take only your own cubes: avatars, others' cubes and unknown ids are not_owner."""
    a, b = h.join("A"), h.join("B")
    b.send({"t": "spawn", "seq": 1, "at": [0, 0]})
    h.tick()
    bcube = [int(k) for k, e in of(b.received(), "delta")[0]["patch"]["entities"].items()
             if e.get("kind") == "cube"][0]
    my_avatar, _ = avatar_of(a)
    a.send({"t": "delete", "seq": 1, "id": my_avatar})
    a.send({"t": "delete", "seq": 2, "id": str(bcube)})
    a.send({"t": "order", "seq": 3, "ids": [bcube], "to": [1, 1]})
    a.send({"t": "delete", "seq": 4, "id": 4242})
    h.tick()
    assert [r["code"] for r in of(a.received(), "reject")] == ["not_owner"] * 4


def test_delete_and_order_own_cube_with_string_id(h):
    """Entity ids are accepted as integers or decimal strings."""
    a = h.join()
    a.send({"t": "spawn", "seq": 1, "at": [0, 0]})
    h.tick()
    cid = [k for k, e in of(a.received(), "delta")[0]["patch"]["entities"].items()
           if e.get("kind") == "cube"][0]
    a.send({"t": "order", "seq": 2, "ids": [cid], "to": [1, 0]})
    h.tick()
    assert of(a.received(), "delta")[0]["patch"]["entities"][cid]["to"] == [1, 0]
    a.send({"t": "delete", "seq": 3, "id": int(cid)})
    h.tick()
    assert of(a.received(), "delta")[0]["patch"]["entities"][cid] is None


def test_out_of_bounds(h):
    """Spawn points and order targets outside the plane are out_of_bounds; edges are inside."""
    a = h.join()
    half = a.welcome["world"]["size"] / 2
    a.send({"t": "spawn", "seq": 1, "at": [half + 0.01, 0]})
    a.send({"t": "spawn", "seq": 2, "at": [half, -half]})
    h.tick()
    msgs = a.received()
    assert [(r["seq"], r["code"]) for r in of(msgs, "reject")] == [(1, "out_of_bounds")]
    cid = [k for k, e in of(msgs, "delta")[0]["patch"]["entities"].items() if e.get("kind") == "cube"][0]
    a.send({"t": "order", "seq": 3, "ids": [cid], "to": [0, -half - 1]})
    h.tick()
    assert of(a.received(), "reject")[0]["code"] == "out_of_bounds"


def test_limit_on_cubes(txaio_clock):
    """Spawning past max_cubes is rejected with limit."""
    h = make(Config(port=0, world=World(max_cubes=2)))
    a = h.join()
    for seq in (1, 2, 3):
        a.send({"t": "spawn", "seq": seq})
    h.tick()
    assert [(r["seq"], r["code"]) for r in of(a.received(), "reject")] == [(3, "limit")]


def test_rate_limited_say_and_spawn(h):
    """Over a rate bucket the input is rate_limited, spends nothing, and still moves ack."""
    a = h.join()
    for seq in range(1, 7):
        a.send({"t": "say", "seq": seq, "text": "x"})
    for seq in range(7, 19):
        a.send({"t": "spawn", "seq": seq, "at": [0, 0]})
    h.tick()
    msgs = a.received()
    rejects = [(r["seq"], r["code"]) for r in of(msgs, "reject")]
    # say: 5 burst; spawn+delete: 10 burst, but max_cubes (16) not reached
    assert rejects == [(6, "rate_limited"), (17, "rate_limited"), (18, "rate_limited")]
    assert len(of(msgs, "event", kind="say")) == 5
    assert of(msgs, "delta")[-1]["ack"] == 18
    h.clock.advance(1.0)       # buckets refill
    a.received()
    a.send({"t": "say", "seq": 19, "text": "again"})
    h.tick()
    assert of(a.received(), "reject") == []


def test_all_inputs_bucket(h):
    """More than 120 inputs at once: the 121st and later are rate_limited."""
    a = h.join()
    for seq in range(1, 131):
        a.send({"t": "move", "seq": seq, "dt": 1, "dir": [0, 0]})
    h.tick()
    rejects = of(a.received(), "reject")
    assert [r["seq"] for r in rejects] == list(range(121, 131))
    assert {r["code"] for r in rejects} == {"rate_limited"}


def test_rate_limit_comes_before_ownership(h):
    """When several rules refuse an input, rate_limited names it before not_owner."""
    a = h.join()
    for seq in range(1, 11):
        a.send({"t": "spawn", "seq": seq, "at": [0, 0]})
    a.send({"t": "delete", "seq": 11, "id": 9999})
    h.tick()
    assert of(a.received(), "reject")[-1]["code"] == "rate_limited"


def test_move_drives_avatar_with_shared_step(h):
    """move advances the avatar by avatar_speed * dt toward dir, clamped and rounded."""
    from arbiter.movement import step_avatar
    a = h.join()
    eid, av = avatar_of(a)
    w = a.welcome["world"]
    a.send({"t": "move", "seq": 1, "dt": 100, "dir": [1, 1]})   # longer than 1: scaled down
    h.tick()
    (d,) = of(a.received(), "delta")
    assert d["ack"] == 1
    want = step_avatar(av["pos"][0], av["pos"][2], 1, 1, 100, w["avatar_speed"], w["size"])
    assert d["patch"]["entities"][str(eid)]["pos"] == [want[0], 0.5, want[1]]
    assert abs(want[0] - av["pos"][0] - 8 * 0.1 / 2 ** 0.5) < 0.006


def test_avatar_clamped_to_plane(h):
    """The avatar stops at the plane's edge."""
    a = h.join()
    eid, _ = avatar_of(a)
    half = a.welcome["world"]["size"] / 2
    for seq in range(1, 40):
        a.send({"t": "move", "seq": seq, "dt": 250, "dir": [1, 0]})
        h.clock.advance(0.25)
    h.tick()
    state = {}
    for m in a.received():
        if m["t"] == "delta":
            state.update(m["patch"].get("entities", {}).get(str(eid), {}))
    assert state["pos"][0] == half


def test_speed_correction_when_moves_exceed_credit(h):
    """Moves beyond the 400 ms credit are undone and answered with correct(speed)."""
    a = h.join()
    eid, av = avatar_of(a)
    speed = a.welcome["world"]["avatar_speed"]
    x0 = av["pos"][0]
    for seq in range(1, 5):                     # 4 x 250 ms at once = 1000 ms > 400 ms
        a.send({"t": "move", "seq": seq, "dt": 250, "dir": [1, 0]})
    h.tick()
    msgs = a.received()
    (c,) = of(msgs, "correct")
    assert c["id"] == eid and c["reason"] == "speed" and c["seq"] == 4
    expected_x = round(x0 + speed * 0.4, 2)
    assert c["pos"] == [expected_x, 0.5, av["pos"][2]]
    assert msgs.index(c) < msgs.index(of(msgs, "delta")[0])


def test_honest_moves_get_no_correction(h):
    """A client moving in real time (dt = elapsed) is never corrected."""
    a = h.join()
    for seq in range(1, 41):
        a.send({"t": "move", "seq": seq, "dt": 50, "dir": [0, 1]})
        h.tick()
    assert of(a.received(), "correct") == []


def test_tag_uses_position_at_view_tick(h):
    """A tag is checked against where the target was at the view tick (lag compensation)."""
    a, b = h.join("A"), h.join("B")
    a_id, a_av = avatar_of(a)
    b_id, b_av = avatar_of(b)
    # walk B onto A's spot over time, then away again
    game = h.service.rooms.get("main").game
    game.place_avatar(a.you, 0, 0)
    game.place_avatar(b.you, 0.5, 0)
    h.tick()
    view = h.service.rooms.get("main").tick
    game.place_avatar(b.you, 10, 10)
    h.tick(4)
    a.received()
    b.received()
    a.send({"t": "tag", "seq": 1, "id": b_id, "view": view})
    a.send({"t": "tag", "seq": 2, "id": b_id, "view": view + 4})
    h.tick()
    msgs = a.received()
    assert of(msgs, "event", kind="tag") == [
        {"t": "event", "kind": "tag", "player": a.you, "target": b.you}]
    assert [(r["seq"], r["code"]) for r in of(msgs, "reject")] == [(2, "miss")]
    assert of(msgs, "delta")[-1]["patch"]["players"][a.you]["score"] == 1
    assert of(b.received(), "event", kind="tag")


def test_tag_view_clamped_to_one_second(h):
    """A view older than 1 s is clamped: the target's position then is used."""
    a, b = h.join("A"), h.join("B")
    a_id, _ = avatar_of(a)
    b_id, _ = avatar_of(b)
    game = h.service.rooms.get("main").game
    game.place_avatar(a.you, 0, 0)
    game.place_avatar(b.you, 0.5, 0)
    h.tick(5)
    game.place_avatar(b.you, 15, 15)
    h.tick(40)                          # 2 s later
    a.received()
    a.send({"t": "tag", "seq": 1, "id": b_id, "view": 1})   # 2 s old -> clamped to 1 s: far away
    h.tick()
    assert of(a.received(), "reject")[0]["code"] == "miss"


def test_tag_own_avatar_or_a_cube_is_miss(h):
    """Tagging yourself or something that is not an avatar is a miss."""
    a = h.join()
    a_id, _ = avatar_of(a)
    a.send({"t": "tag", "seq": 1, "id": a_id, "view": 0})
    a.send({"t": "tag", "seq": 2, "id": 777, "view": 0})
    h.tick()
    assert [r["code"] for r in of(a.received(), "reject")] == ["miss", "miss"]


def test_recenter_rule_sends_correct(txaio_clock):
    """The example authority rule puts the second cube back at the centre with correct."""
    h = make(Config(port=0, recenter_every=3))
    a = h.join()
    a.send({"t": "spawn", "seq": 1, "at": [5, 5]})
    a.send({"t": "spawn", "seq": 2, "at": [6, 6]})
    h.tick()
    msgs = a.received()
    cubes = sorted(int(k) for k, e in of(msgs, "delta")[0]["patch"]["entities"].items()
                   if e.get("kind") == "cube")
    a.send({"t": "order", "seq": 3, "ids": [cubes[1]], "to": [10, 10]})
    h.tick(2)
    msgs = a.received()
    (c,) = of(msgs, "correct")
    assert c == {"t": "correct", "id": cubes[1], "pos": [0.0, 0.5, 0.0], "reason": "recenter", "seq": 3}
    last = {}
    for d in of(msgs, "delta"):
        last.update(d["patch"]["entities"].get(str(cubes[1]), {}))
    assert last["pos"] == [0, 0.5, 0] and last.get("to") is None


# -- errors ----------------------------------------------------------------------------

BAD_AFTER_HELLO = [
    "[1, 2]", '"hello"', "{}", '{"t": 5}', '{"t": "fly"}', "not json", '{"t": "move"}',
    '{"t": "move", "seq": "7", "dt": 10, "dir": [0, 0]}',
    '{"t": "move", "seq": 0, "dt": 10, "dir": [0, 0]}',
    '{"t": "move", "seq": 1.5, "dt": 10, "dir": [0, 0]}',
    '{"t": "move", "seq": true, "dt": 10, "dir": [0, 0]}',
    '{"t": "move", "seq": 1, "dt": 0.5, "dir": [0, 0]}',
    '{"t": "move", "seq": 1, "dt": 251, "dir": [0, 0]}',
    '{"t": "move", "seq": 1, "dt": 10, "dir": [1.5, 0]}',
    '{"t": "move", "seq": 1, "dt": 10, "dir": [0]}',
    '{"t": "move", "seq": 1, "dt": NaN, "dir": [0, 0]}',
    '{"t": "spawn", "seq": 1, "at": "here"}',
    '{"t": "delete", "seq": 1, "id": -3}',
    '{"t": "delete", "seq": 1, "id": "abc"}',
    '{"t": "delete", "seq": 1, "id": 0}',
    '{"t": "order", "seq": 1, "ids": [], "to": [0, 0]}',
    '{"t": "order", "seq": 1, "ids": [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17], "to": [0, 0]}',
    '{"t": "order", "seq": 1, "ids": [1], "to": [0, "x"]}',
    '{"t": "tag", "seq": 1, "id": 1, "view": -1}',
    '{"t": "say", "seq": 1, "text": ""}',
    '{"t": "say", "seq": 1, "text": "%s"}' % ("x" * 201),
    '{"t": "ping", "ts": "now"}',
]


@pytest.mark.parametrize("raw", BAD_AFTER_HELLO)
def test_bad_message_is_answered_and_not_queued(h, raw):
    """Malformed or out-of-range messages get bad_message at once; ack does not move."""
    a = h.join()
    a.send_text(raw)
    (e,) = a.received()
    assert e["t"] == "error" and e["code"] == "bad_message" and e["msg"]
    h.tick()
    assert all(m.get("ack", 0) == 0 for m in a.received())
    assert a.open


def test_bad_message_names_field_and_value(h):
    """The error text names the field, the value and what was expected."""
    a = h.join()
    a.send_text('{"t": "move", "seq": "7", "dt": 10, "dir": [0, 0]}')
    (e,) = a.received()
    assert e["msg"] == "expected integer for seq, got '7'"


def test_unknown_fields_are_ignored(h):
    """Extra fields in a client message are ignored."""
    a = h.join()
    a.send({"t": "spawn", "seq": 1, "at": [0, 0], "colour": "red", "x": {"y": 1}})
    h.tick()
    assert of(a.received(), "delta")[0]["ack"] == 1


@pytest.mark.parametrize("fields", [
    {"v": 2}, {"v": "1"}, {"name": ""}, {"name": "x" * 33}, {"name": "a\nb"},
    {"room": "no spaces"}, {"room": "r" * 65}, {"token": 5},
])
def test_bad_hello_is_bad_message(h, fields):
    """A hello with a field out of its range is bad_message and does not join."""
    c = h.client()
    msg = {"t": "hello", "v": 1}
    msg.update(fields)
    c.send(msg)
    assert [(m["t"], m["code"]) for m in c.received()] == [("error", "bad_message")]
    c.send({"t": "hello", "v": 1})
    assert types(c.received()[:2]) == ["welcome", "snapshot"]


def test_name_of_32_code_points_is_fine(h):
    """Names are counted in code points: 32 emoji are allowed."""
    c = h.client()
    msgs = c.hello(name="😀" * 32)
    assert msgs[0]["name"] == "😀" * 32


def test_binary_frame_in_json_session(h):
    """A binary frame in a JSON session is bad_message."""
    a = h.join()
    a.send_binary(msgpack.packb({"t": "ping", "ts": 1}))
    assert a.received()[0]["code"] == "bad_message"


def test_text_frame_in_msgpack_session(h):
    """A text frame in a msgpack session is bad_message."""
    a = h.join(protocols=[wire.MSGPACK])
    a.send_text('{"t": "ping", "ts": 1}')
    assert a.received()[0]["code"] == "bad_message"


def test_twentieth_bad_message_in_ten_seconds_closes_1008(h):
    """The 20th bad_message within 10 s is answered and the connection closed with 1008."""
    a = h.join()
    for _ in range(19):
        a.send_text("nope")
    assert len(a.received()) == 19 and a.close_code is None
    a.send_text("nope")
    msgs = a.received()
    assert msgs[0]["code"] == "bad_message" and a.close_code == 1008


def test_bad_messages_spread_out_keep_connection(h):
    """Bad messages slower than 20 per 10 s never close the connection."""
    a = h.join()
    for _ in range(30):
        a.send_text("nope")
        h.clock.advance(0.6)
        a.received()
    assert a.close_code is None


def test_not_joined_before_hello(h):
    """Any known message but hello before hello is not_joined, whatever its fields."""
    c = h.client()
    c.send({"t": "move", "seq": "garbage"})
    c.send({"t": "ping"})
    c.send({"t": "fly"})
    assert [m["code"] for m in c.received()] == ["not_joined", "not_joined", "bad_message"]
    assert c.open


def test_already_joined(h):
    """A second hello is already_joined; the connection stays."""
    a = h.join()
    a.send({"t": "hello", "v": 1})
    assert a.received() == [{"t": "error", "code": "already_joined",
                             "msg": "this connection has joined already"}]
    assert a.open


@pytest.mark.parametrize("mangle", ["forged", "tampered", "other_room", "garbage"])
def test_bad_token_closes_4001(h, mangle):
    """A forged, tampered or foreign token gets bad_token and close 4001."""
    from arbiter.tokens import Signer
    a = h.join("A", room="main")
    token = a.welcome["token"]
    room = "main"
    if mangle == "forged":
        token = Signer(b"not the secret").seal(room="main", pid=a.you, n="00")
    elif mangle == "tampered":
        body, mac = token.split(".")
        token = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + mac
    elif mangle == "other_room":
        room = "elsewhere"
    else:
        token = "x.y.z"
    c = h.client()
    msgs = c.hello(room=room, token=token)
    assert [(m["t"], m["code"]) for m in msgs] == [("error", "bad_token")]
    assert c.close_code == 4001


def test_room_full_closes_4003_and_grace_players_count(txaio_clock):
    """A room at max_players refuses with room_full and 4003; players in grace count."""
    h = make(Config(port=0, world=World(max_players=2)))
    a, b = h.join("A"), h.join("B")
    b.lose()                       # B is in its grace period: still counts
    c = h.client()
    msgs = c.hello(name="C")
    assert [(m["t"], m["code"]) for m in msgs] == [("error", "room_full")]
    assert c.close_code == 4003
    other = h.join("D", room="other")        # other rooms are unaffected
    assert other.you


# -- reconnection ------------------------------------------------------------------------

def test_disconnect_leave_then_resume_with_token(h):
    """A dropped player shows connected:false, others get leave; the token resumes it."""
    a, b = h.join("A"), h.join("B")
    a.send({"t": "spawn", "seq": 1, "at": [1, 1]})
    h.tick()
    a.received()
    b.received()
    a.lose()
    h.tick()
    msgs = b.received()
    assert of(msgs, "event", kind="leave") == [{"t": "event", "kind": "leave", "player": a.you}]
    assert of(msgs, "delta")[0]["patch"]["players"][a.you] == {"connected": False}
    h.clock.advance(10)
    b.received()
    a2 = h.client()
    msgs = a2.hello(token=a.welcome["token"])
    w, snap = msgs[0], msgs[1]
    assert w["you"] == a.you and w["ack"] == 1
    assert snap["state"]["players"][a.you]["connected"] is True
    assert [e for e in snap["state"]["entities"].values() if e["owner"] == a.you and e["kind"] == "cube"]
    assert of(b.received(), "event", kind="join")
    a2.send({"t": "spawn", "seq": 1, "at": [0, 0]})       # seq continues above ack
    a2.send({"t": "spawn", "seq": 2, "at": [0, 0]})
    h.tick()
    assert [(r["seq"], r["code"]) for r in of(a2.received(), "reject")] == [(1, "bad_seq")]


def test_grace_over_removes_player_and_kills_token(txaio_clock):
    """After the grace period the player and its entities are null in a delta; the token is dead."""
    h = make(Config(port=0, grace=5))
    a, b = h.join("A"), h.join("B")
    a.send({"t": "spawn", "seq": 1, "at": [1, 1]})
    h.tick()
    ids = [k for k, e in of(a.received(), "delta")[0]["patch"]["entities"].items() if e.get("owner") == a.you]
    a.lose()
    h.clock.advance(5.05)
    h.tick()
    patches = [d["patch"] for d in of(b.received(), "delta")]
    merged = {}
    for p in patches:
        for k, v in p.get("entities", {}).items():
            merged[k] = v
        if a.you in p.get("players", {}):
            merged["player"] = p["players"][a.you]
    assert merged["player"] is None and all(merged[k] is None for k in ids)
    c = h.client()
    assert [(m["t"], m["code"]) for m in c.hello(token=a.welcome["token"])] == [("error", "bad_token")]
    assert c.close_code == 4001


def test_takeover_closes_old_connection_4000_without_leave(h):
    """A hello with the token while the old connection is open takes over: 4000, no leave."""
    a, b = h.join("A"), h.join("B")
    b.received()
    a2 = h.client()
    msgs = a2.hello(token=a.welcome["token"])
    assert msgs[0]["you"] == a.you
    a.received()
    assert a.close_code == 4000
    a.lose()
    h.tick()
    assert of(b.received(), "event") == []
    assert h.service.rooms.get("main").players[a.you].connected


# -- size cap, slow consumers, shutdown -----------------------------------------------------

def _padded_ping(size):
    base = '{"t":"ping","ts":1,"pad":""}'
    return base[:-2] + "x" * (size - len(base)) + '"}'


def test_message_of_exactly_the_cap_is_allowed(h):
    """A 65,536-byte message is accepted."""
    a = h.join()
    raw = _padded_ping(65536)
    assert len(raw) == 65536
    a.send_text(raw)
    assert a.received()[0]["t"] == "pong" and a.open


def test_message_over_the_cap_closes_1009(h):
    """A 65,537-byte message closes the connection with 1009."""
    a = h.join()
    a.send_text(_padded_ping(65537))
    a.received()
    assert a.close_code == 1009


def test_slow_consumer_gets_snapshot_after_draining(h):
    """While a client's socket is full it gets no deltas; once drained, one snapshot."""
    a, b = h.join("A"), h.join("B")
    a.received()
    a.proto.pauseProducing()            # what the transport does when its buffer is full
    b.send({"t": "spawn", "seq": 1})
    h.tick(5)
    assert of(a.received(), "delta") == []
    a.proto.resumeProducing()
    h.tick()
    msgs = a.received()
    assert types(msgs) == ["snapshot"]
    assert any(e["kind"] == "cube" for e in msgs[0]["state"]["entities"].values())


def test_slow_consumer_dropped_past_buffer_limit(txaio_clock):
    """A client that never reads is cut off past the buffer limit; it stays in its grace period."""
    h = make(Config(port=0, send_buffer_limit=2000))
    a, b = h.join("A"), h.join("B")
    a.proto.pauseProducing()
    for seq in range(1, 40):
        b.send({"t": "say", "seq": seq, "text": "y" * 150})
        h.clock.advance(0.2)
    assert a.transport.disconnecting
    assert h.service.rooms.get("main").players[a.you] is not None


def test_flood_of_inputs_pauses_reading(h):
    """A client with hundreds of queued inputs stops being read until the next tick."""
    a = h.join()
    for seq in range(1, 300):
        a.send({"t": "move", "seq": seq, "dt": 1, "dir": [0, 0]})
    assert a.transport.producerState == "paused"
    h.tick()
    assert a.transport.producerState == "producing"


def test_shutdown_closes_clients_with_1001(h):
    """Stopping the service closes every client with 1001."""
    a = h.join()
    h.service.stopService()
    a.received()
    assert a.close_code == 1001


def test_batched_movement_audit_undoes_unexplained_motion(h):
    """Every 100 ms the batched audit undoes avatar motion no accepted move explains."""
    a = h.join()
    eid, av = avatar_of(a)
    h.tick(2)                              # a batch window opens with the avatar at rest
    a.received()
    game = h.service.rooms.get("main").game
    game.entities[str(eid)]["pos"] = [av["pos"][0] + 5, 0.5, av["pos"][2]]   # a teleport
    h.tick(2)
    msgs = a.received()
    (c,) = of(msgs, "correct")
    assert c["reason"] == "speed" and c["pos"] == av["pos"]
    assert game.entities[str(eid)]["pos"] == av["pos"]


def test_batched_audit_accepts_real_moves(h):
    """Moves within the credit pass the batched audit untouched."""
    a = h.join()
    h.tick(2)
    for seq in range(1, 21):
        a.send({"t": "move", "seq": seq, "dt": 50, "dir": [1, 0.3]})
        h.tick()
    assert of(a.received(), "correct") == []


def test_batched_audit_allows_the_rounding_of_many_small_moves(h):
    """Found by the netcode lab: a burst of honest 32 ms moves in one window (a jittery link
    delivers them together) goes 8 x 0.26 = 2.08 units once each step is rounded to 0.01,
    more than 8 x 0.256 = 2.048 + 0.015; that is rounding, not cheating."""
    a = h.join()
    h.tick(2)
    a.received()
    for seq in range(1, 9):
        a.send({"t": "move", "seq": seq, "dt": 32, "dir": [1, 0]})
    h.tick(2)
    assert of(a.received(), "correct") == []


def test_send_rate_below_tick_rate(txaio_clock):
    """With 60 simulation ticks and 20 state ticks a second, deltas come 20 times a second."""
    h = make(Config(port=0, tick_rate=60, send_rate=20))
    a = h.join()
    assert a.welcome["rate"] == 20
    a.send({"t": "spawn", "seq": 1, "at": [0, 0]})
    h.tick(3)                           # three simulation ticks make one state tick
    cid = None
    for m in a.received():
        for k, e in m.get("patch", {}).get("entities", {}).items() if m["t"] == "delta" else ():
            if e.get("kind") == "cube":
                cid = k
    a.send({"t": "order", "seq": 2, "ids": [cid], "to": [15, 0]})
    h.tick(60)                          # one second of simulation
    deltas = of(a.received(), "delta")
    assert len(deltas) == 20 and [d["tick"] for d in deltas] == list(range(deltas[0]["tick"], deltas[0]["tick"] + 20))
    pos = [d["patch"]["entities"][cid]["pos"][0] for d in deltas if cid in d["patch"].get("entities", {})]
    assert pos[-1] == pytest.approx(5.0, abs=0.1)     # 5 units/s for about a second


def test_daemon_options_reach_the_config():
    """twistd/python -m options land in the one Config."""
    from arbiter.app.tap import Options
    o = Options()
    o.parseOptions(["--port", "0", "--tick-rate", "60", "--send-rate", "30", "--max-players", "4",
                    "--max-cubes", "8", "--grace", "5", "--recenter-every", "3",
                    "--lockstep-turn-ms", "50", "--lockstep-drop-after", "10", "--secret", "s"])
    c = o.config()
    assert (c.tick_rate, c.send_rate, c.grace, c.recenter_every, c.secret) == (60, 30, 5.0, 3, b"s")
    assert (c.world.max_players, c.world.max_cubes) == (4, 8)
    assert (c.lockstep_turn_ms, c.lockstep_drop_after) == (50, 10.0)


def test_bad_options_are_usage_errors():
    """A send rate that does not divide the tick rate, or cluster mode without a shared
    secret, is refused while the options are read, before anything starts."""
    from twisted.python import usage
    from arbiter.app.tap import Options
    with pytest.raises(usage.UsageError, match="send_rate must divide"):
        Options().parseOptions(["--tick-rate", "20", "--send-rate", "15"])
    with pytest.raises(usage.UsageError, match="needs --secret"):
        Options().parseOptions(["--redis", "redis://127.0.0.1:6379/0",
                                "--public-url", "ws://127.0.0.1:8080/ws"])
    with pytest.raises(usage.UsageError, match="needs --public-url"):
        Options().parseOptions(["--redis", "redis://127.0.0.1:6379/0", "--secret", "s"])


def test_spread_ticks_every_room_once_per_period(txaio_clock):
    """With tick_spread, rooms tick in different slots of the period, each at the full rate."""
    h = make(Config(port=0, tick_spread=4))
    clients = [h.join(name="p%d" % i, room="r%d" % i) for i in range(6)]
    rooms = [h.service.rooms.get("r%d" % i) for i in range(6)]
    assert sorted(r.tick_slot for r in rooms) == [0, 0, 1, 1, 2, 3]
    ticked_at = {}
    for _ in range(4):                          # one period = four calls of the loop
        due = h.service._loop.call.getTime()
        h.clock.advance(max(0.0, due - h.clock.seconds()) + 1e-9)
        for r in rooms:
            if r.tick and r.name not in ticked_at:
                ticked_at[r.name] = h.clock.seconds()
    assert [r.tick for r in rooms] == [1] * 6
    assert len(set(round(t, 4) for t in ticked_at.values())) == 4     # four distinct instants
    for _ in range(4 * 19):
        due = h.service._loop.call.getTime()
        h.clock.advance(max(0.0, due - h.clock.seconds()) + 1e-9)
    assert [r.tick for r in rooms] == [20] * 6                        # 20 ticks in a second
    clients[0].send({"t": "spawn", "seq": 1, "at": [0, 0]})
    for _ in range(4):
        due = h.service._loop.call.getTime()
        h.clock.advance(max(0.0, due - h.clock.seconds()) + 1e-9)
    assert of(clients[0].received(), "delta")[-1]["ack"] == 1
