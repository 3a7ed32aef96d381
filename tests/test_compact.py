"""The compact sync (docs/PROTOCOL.md 20): binary records that build exactly the mirror a
``state`` client's merge patches build.

The server side is the whole server in memory (arbiter.app.testing.InMemoryServer) with
real WebSocket frames; the client side is the reference decoder (arbiter.compact.
CompactMirror). The byte-level test vectors are the ones docs/PROTOCOL.md prints.
"""

import random

import msgpack
import pytest

from arbiter import codes, compact
from arbiter.app.testing import InMemoryServer
from arbiter.config import Config
from arbiter.state import apply_merge_patch

MP = (codes.MSGPACK,)


class V1Mirror:
    def __init__(self, snapshot):
        self.state = snapshot

    def take(self, msgs):
        for m in msgs:
            if m["t"] == "delta":
                apply_merge_patch(self.state, m["patch"])
            elif m["t"] == "snapshot":
                self.state = m["state"]


class Compact:
    """A compact client: its messages, its mirror."""

    def __init__(self, server, name, room):
        self.client = server.client(MP)
        msgs = self.client.hello(name=name, room=room, sync="compact")
        assert msgs[0]["t"] == "welcome", msgs
        self.welcome = msgs[0]
        self.mirror = compact.CompactMirror(msgs[0]["compact"]["pos"])
        self.frames = 0
        self.take(msgs[1:])

    def take(self, msgs=None):
        for m in self.client.received() if msgs is None else msgs:
            if m["t"] == "compact":
                self.mirror.apply(m["frame"])
                self.frames += 1
                self.ack = m["ack"]


def test_vectors_of_the_protocol_document():
    """docs/PROTOCOL.md 20.6's example frames, byte for byte."""
    assert compact.varuint(0) == b"\x00"
    assert compact.varuint(127) == b"\x7f"
    assert compact.varuint(128) == b"\x80\x01"
    assert compact.varuint(300) == b"\xac\x02"
    codec = compact.CompactCodec(2)
    state = {"entities": {"7": {"kind": "cube", "owner": "p1-ab", "pos": [1.5, 0.5, -2.25],
                                "to": [3.0, -2.25], "color": "#e6194b"}},
             "players": {"p1-ab": {"name": "ann", "connected": True, "ping": 0,
                                   "score": 0}}}
    sections = codec.snapshot(state)
    head, tail = compact.frame_parts("snapshot", 5, sections)
    frame = head + compact.varuint(2) + tail
    rest = msgpack.packb({"players": state["players"]})
    assert frame.hex() == "".join([
        "c1", "02", "05", "02",                 # marker, snapshot, tick 5, ack 2
        "01", "01",                             # APPEAR, 1 record:
        "0000", "07", "07",                     #   slot 0, id 7, flags to|owner|color
        "04" "63756265",                        #   "cube"
        "05" "70312d6162",                      #   "p1-ab"
        "07" "23653631393462",                  #   "#e6194b"
        "9600", "3200", "1fff",                 #   pos 150, 50, -225 (x 0.01)
        "2c01", "1fff",                         #   to 300, -225
        "07", compact.varuint(len(rest)).hex(), rest.hex(),   # REST: the players
    ])
    mirror = compact.CompactMirror(2)
    assert mirror.apply(frame) == ("snapshot", 5, 2)
    assert mirror.state == state
    # the next tick: the cube moved, then arrived
    codec.advance({"entities": {"7": {"pos": [2.0, 0.5, -2.25]}}})
    head, tail = compact.frame_parts("delta", 6, codec.delta())
    frame = head + compact.varuint(3) + tail
    assert frame.hex() == "c1" "01" "06" "03" "02" "01" "0000" "c800" "1fff"
    mirror.apply(frame)
    codec.advance({"entities": {"7": {"pos": [3.0, 0.5, -2.25], "to": None}}})
    head, tail = compact.frame_parts("delta", 7, codec.delta())
    frame = head + compact.varuint(3) + tail
    assert frame.hex() == ("c1" "01" "07" "03" "02" "01" "0000" "2c01" "1fff"
                           "05" "01" "0000")
    mirror.apply(frame)
    assert mirror.state["entities"]["7"]["pos"] == [3.0, 0.5, -2.25]
    assert "to" not in mirror.state["entities"]["7"]
    # a columnar game's step (PROTOCOL.md 20.5): slot 0 moved by +0.5 on x, -0.01 on z
    import numpy as np
    codec.advance({}, (np.array([0]), np.array([350]), np.array([-226]),
                       np.array([50]), np.array([-1])))
    head, tail = compact.frame_parts("delta", 8, codec.delta())
    frame = head + compact.varuint(4) + tail
    assert frame.hex() == "c1" "01" "08" "04" "08" "01" "0000" "32" "ff"
    mirror.apply(frame)
    assert mirror.state["entities"]["7"]["pos"] == [3.5, 0.5, -2.26]


@pytest.mark.parametrize("seed", range(6))
def test_a_compact_client_mirrors_what_a_state_client_mirrors(seed, txaio_clock):
    """Random play in one room (spawns, orders, deletes, avatar moves, players joining,
    leaving and being removed): after every tick the compact mirror equals the merge
    patch mirror, entity for entity, float for float."""
    rng = random.Random(seed)
    server = InMemoryServer(Config(port=0, grace=0.2))
    v1 = server.join("v1", room="r", protocols=MP)
    mirror = V1Mirror(v1.state)
    watcher = Compact(server, "c", "r")
    players = []
    for step in range(120):
        if rng.random() < 0.08 or not players:
            c = server.join("p%d" % step, room="r", protocols=MP)
            c.seq = 0
            c.cubes = []
            players.append(c)
        p = rng.choice(players)
        r = rng.random()
        p.seq += 1
        if r < 0.25:
            p.send({"t": "spawn", "seq": p.seq})
        elif r < 0.6 and p.cubes:
            p.send({"t": "order", "seq": p.seq, "ids": rng.sample(p.cubes, 1),
                    "to": [rng.uniform(-20, 20), rng.uniform(-20, 20)]})
        elif r < 0.7 and p.cubes:
            p.send({"t": "delete", "seq": p.seq, "id": p.cubes.pop()})
        elif r < 0.9:
            p.send({"t": "move", "seq": p.seq, "dx": rng.uniform(-1, 1),
                    "dz": rng.uniform(-1, 1), "dt": 50})
        elif len(players) > 1:
            players.remove(p)
            p.lose()
        server.tick()
        for c in players:
            for m in c.received():
                if m["t"] in ("delta", "snapshot"):
                    state = m.get("state") or {}
                    ents = (m.get("patch") or state).get("entities") or {}
                    for k, e in ents.items():
                        if e and e.get("kind") == "cube" and e.get("owner") == c.you \
                                and int(k) not in c.cubes:
                            c.cubes.append(int(k))
        mirror.take(v1.received())
        watcher.take()
        assert watcher.mirror.state == mirror.state, "tick %d" % step
    assert watcher.frames > 100
    assert any(e["kind"] == "cube" for e in mirror.state["entities"].values())
    server.stop()


def test_compact_needs_msgpack(txaio_clock):
    server = InMemoryServer()
    client = server.client((codes.JSON,))
    msgs = client.hello(name="j", room="r", sync="compact")
    assert msgs[0]["t"] == "error" and msgs[0]["code"] == codes.BAD_MESSAGE
    assert codes.MSGPACK in msgs[0]["msg"]
    server.stop()


def test_compact_frames_are_smaller_than_state_frames(txaio_clock):
    """Moving cubes: a compact delta carries 6 bytes per moving cube."""
    server = InMemoryServer()
    v1 = server.join("v1", room="r", protocols=MP)
    owner = server.join("o", room="r", protocols=MP)
    watcher = Compact(server, "c", "r")
    for seq in range(1, 9):
        owner.send({"t": "spawn", "seq": seq})
    server.tick()
    watcher.take()
    ids = [int(k) for k, e in watcher.mirror.state["entities"].items() if e["kind"] == "cube"]
    assert len(ids) == 8
    owner.send({"t": "order", "seq": 9, "ids": ids, "to": [15, 15]})
    server.tick(2)
    v1.received()
    watcher.client.received()
    server.tick()
    state_frames = [len(p) for op, p in v1.frames() if op == 2]
    compact_frames = [len(p) for op, p in watcher.client.frames() if op == 2]
    assert compact_frames and state_frames
    # header 4 bytes, section tag and count 2, 8 STEP_XZ records of 4 (slot, dx, dz)
    assert compact_frames[-1] == 4 + 2 + 8 * 4
    assert compact_frames[-1] * 4 < state_frames[-1]
    server.stop()


def _swarm_from_the_docs():
    """The ``Swarm`` example of docs/GAMES.md, as printed there."""
    import os
    import re
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "docs", "GAMES.md")
    text = open(path, encoding="utf-8").read()
    section = text[text.index("### Many moving entities"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope = {}
    exec(compile(code, "docs/GAMES.md", "exec"), scope)
    return scope["Swarm"]


def test_the_columnar_game_of_games_md_syncs_to_both_kinds_of_client(txaio_clock):
    """docs/GAMES.md's Swarm: its entities move in arrays; a state client and a compact
    client see the same positions, tick after tick."""
    Swarm = _swarm_from_the_docs()

    class Demo(Swarm):
        def player_joined(self, player):
            n = len(self.columns)
            self.spawn(str(100 + n), 0.0, 0.0, 10.0 + n, -5.0)

    server = InMemoryServer(Config(port=0), game_factory=Demo)
    v1 = server.join("a", room="s", protocols=MP)
    mirror = V1Mirror(v1.state)
    watcher = Compact(server, "b", "s")
    seen = []
    for _ in range(20):
        server.tick()
        mirror.take(v1.received())
        watcher.take()
        assert watcher.mirror.state["entities"] == mirror.state["entities"]
        seen.append(mirror.state["entities"]["100"]["pos"])
    assert seen[0] != seen[-1] and len(mirror.state["entities"]) == 2
    server.stop()


def test_a_room_of_compact_clients_gets_every_tick_its_cubes_move(txaio_clock):
    """No merge-patch client in the room: the cubes' positions never enter the state map,
    yet every tick in which they move sends a frame (found by the benchmark: the frames
    used to come only with the ticks that had another change)."""
    server = InMemoryServer()
    a = Compact(server, "a", "quiet")
    b = Compact(server, "b", "quiet")
    a.client.send({"t": "spawn", "seq": 1, "at": [0, 0]})
    server.tick(2)
    a.take()
    b.take()
    cube = next(k for k, e in a.mirror.state["entities"].items() if e["kind"] == "cube")
    a.client.send({"t": "order", "seq": 2, "ids": [int(cube)], "to": [15, 0]})
    server.tick(2)
    a.take()
    b.take()
    before = b.frames
    xs = []
    for _ in range(10):
        server.tick()
        b.take()
        xs.append(b.mirror.state["entities"][cube]["pos"][0])
    assert b.frames - before == 10               # one frame a tick, though nobody sent input
    assert xs == sorted(xs) and xs[-1] > xs[0]   # and the cube moves in it
    room = server.service.rooms.get("quiet")
    assert room.state["entities"][cube]["pos"][0] < xs[-1]   # the map was not written
    server.stop()
