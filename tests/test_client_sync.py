"""The Python client's sync modes against a real server on 127.0.0.1: ``compact``
(docs/PROTOCOL.md 20) builds the very mirror a ``state`` client builds, tick for tick;
``intent`` (11) extrapolates to what ``state`` clients see."""

import copy

import pytest
import pytest_twisted

from arbiter.compact import varuint
from arbiter.config import Config, World
from protocols import wire
from protocols.client import ArbiterClient, JoinRefused, connect, join


class History:
    """A client's mirror after every state message, by tick."""

    def __init__(self, client):
        self.client = client
        self.by_tick = {}
        client.on_message = self.seen

    def seen(self, msg):
        if msg.get("t") in ("snapshot", "delta"):
            self.by_tick[msg["tick"]] = copy.deepcopy(self.client.state)

    def first(self):
        return min(self.by_tick)

    def last(self):
        return max(self.by_tick)

    def at(self, tick):
        """The mirror as of ``tick``: after the last state message at or before it."""
        return self.by_tick[max(t for t in self.by_tick if t <= tick)]


def moving(client):
    return [k for k, e in client.state.get("entities", {}).items() if e.get("to") is not None]


@pytest_twisted.inlineCallbacks
def test_compact_client_sees_what_a_state_client_sees(make_server):
    """A state, a compact and an intent client in one room; spawns, orders, a delete and
    arrivals: at every tick the compact mirror equals the state mirror, and the intent
    client's position() is within 0.01 of the state client's positions."""
    server = make_server(Config(port=0, world=World(size=40, speed=5)))
    s = yield connect(server.url, name="S", room="r", encoding=wire.MSGPACK)
    c = yield connect(server.url, name="C", room="r", sync="compact")
    i = yield connect(server.url, name="I", room="r", sync="intent")
    assert c.encoding == wire.MSGPACK and c.sync == "compact" and c.joined
    assert c.compact == {"v": 1, "pos": 2}
    assert c.messages[0]["t"] == "welcome" and c.messages[1]["t"] == "snapshot"
    assert c.messages[1]["compact"] > 0                 # a compact frame, its size
    assert i.sync == "intent" and s.sync == "state"
    hs, hc, hi = History(s), History(c), History(i)

    seqs = {}
    for who, points in ((s, [[-5, -5], [5, 5]]), (c, [[0, 3], [-8, 2], [9, -9]]),
                        (i, [[1, 1]])):
        for at in points:
            seqs[who.name] = who.spawn(at=at)
    for who in (s, c, i):
        yield who.wait_ack(seqs[who.name])
    yield c.wait_for(lambda cl: len(cl.entities("cube")) == 6)
    assert len(c.my_cubes()) == 3
    targets = [[10, -10], [-12, 4], [3, 3], [-2, -15], [15, 0], [0, -12]]
    for who in (s, c, i):
        for k, cid in enumerate(sorted(who.my_cubes())):
            seqs[who.name] = who.order([cid], targets[(k + len(who.name)) % len(targets)])
    gone = sorted(c.my_cubes())[0]
    seqs["C"] = c.delete(gone)
    for who in (s, c, i):
        yield who.wait_ack(seqs[who.name])
    assert str(gone) not in c.state["entities"]
    # a cube that moves again after its first order (its motion changes on the way)
    (sid, _) = sorted(s.my_cubes().items())[0]
    seqs["S"] = s.order([sid], [-1, -1])
    yield s.wait_ack(seqs["S"])
    for who in (s, c, i):
        yield who.wait_for(lambda cl: cl.ack >= seqs[cl.name] and not moving(cl), timeout=15)

    start = hc.first()
    end = min(hs.last(), hc.last())
    assert end - start > 20                           # the whole play, tick by tick
    for t in range(start, end + 1):
        assert hc.at(t) == hs.at(t), "tick %d" % t
    assert len(hc.at(end)["entities"]) == 5 + 3       # 5 cubes and 3 avatars
    assert set(hc.at(end)["players"]) == {s.you, c.you, i.you}
    assert c.broken_frames == 0 and c.updates >= end - start

    # intent: position() at every tick is within 0.01 of the state client's pos
    view = ArbiterClient()
    view.sync, view.rate, view.world = "intent", i.rate, i.world
    checked = 0
    for t in range(max(start, hi.first()), min(end, hi.last()) + 1):
        view.state = hi.at(t)
        for key, e in hs.at(t)["entities"].items():
            if e["kind"] != "cube":
                continue
            x, z = view.position(int(key), t)
            assert abs(x - e["pos"][0]) <= 0.0100001 and abs(z - e["pos"][2]) <= 0.0100001, \
                (t, key, (x, z), e)
            checked += 1
    assert checked > 100
    assert s.position(sid) == (s.state["entities"][str(sid)]["pos"][0],
                               s.state["entities"][str(sid)]["pos"][2]) == (-1, -1)
    assert i.position(sid) == (-1, -1)
    for who in (s, c, i):
        yield who.close()


@pytest_twisted.inlineCallbacks
def test_compact_hello_over_json_is_bad_message(server):
    """Compact frames are binary: the hello on the JSON subprotocol is refused."""
    with pytest.raises(JoinRefused) as refused:
        yield connect(server.url, name="J", encoding=wire.JSON, sync="compact")
    assert refused.value.code == "bad_message"
    assert "msgpack" in str(refused.value)
    client = refused.value.client
    assert not client.joined and client.encoding == wire.JSON
    yield client.close()


@pytest_twisted.inlineCallbacks
def test_a_broken_compact_frame_drops_the_mirror_and_resyncs(server):
    """A frame naming a slot the mirror does not have: the mirror is dropped, a resync
    goes out, and the snapshot that answers it gives the whole state back."""
    s = yield connect(server.url, name="S", room="b", encoding=wire.MSGPACK)
    c = yield join(ArbiterClient(), server.url, {"name": "C", "room": "b", "sync": "compact"})
    assert c.encoding == wire.MSGPACK and c.sync == "compact"
    seq = s.spawn(at=[2, 2])
    yield s.wait_ack(seq)
    yield c.wait_for(lambda cl: len(cl.entities("cube")) == 1)
    before = len(c.state["entities"])
    snapshots = sum(1 for m in c.messages if m["t"] == "snapshot")
    # MOVE_XZ of slot 999, which names nothing: as if the stream had been corrupted
    c.proto.onMessage(bytes([0xC1, 0x01]) + varuint(c.tick) + varuint(c.ack)
                      + bytes([0x02, 0x01]) + (999).to_bytes(2, "little") + bytes(4), True)
    assert c.broken_frames == 1 and "slot 999" in c.broken_error
    assert c.state == {"entities": {}}
    yield c.wait_message("snapshot")
    assert sum(1 for m in c.messages if m["t"] == "snapshot") == snapshots + 1
    assert len(c.state["entities"]) == before and len(c.entities("cube")) == 1
    assert set(c.state["players"]) == {s.you, c.you}
    seq = s.spawn(at=[3, 3])
    yield s.wait_ack(seq)
    yield c.wait_for(lambda cl: len(cl.entities("cube")) == 2)
    assert c.broken_frames == 1
    yield s.close()
    yield c.close()
