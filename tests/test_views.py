"""Per-player views (--view-radius): what a player may not see never reaches it.

Every test reads what the server wrote on the wire (real WebSocket frames on a fake
transport, a task.Clock) and mirrors it as a client would: merge patches for the
``state`` and ``intent`` syncs in JSON and MessagePack, binary records for ``compact``.
"""

import json

import msgpack
import pytest

from arbiter.app.testing import InMemoryServer
from arbiter.codes import JSON, MSGPACK
from arbiter.compact import CompactMirror
from arbiter.config import Config
from arbiter.state import apply_merge_patch

RADIUS = 8.0

SYNCS = [("json", "state"), ("msgpack", "state"), ("msgpack", "intent"), ("msgpack", "compact")]


class Viewer:
    """A client and the mirror of the state it builds from what it received; ``keys_seen``
    is every entity key that ever reached it."""

    def __init__(self, server, name, encoding="json", sync="state", role="player", token=None):
        self.server = server
        self.client = server.client((MSGPACK,) if encoding == "msgpack" else (JSON,))
        hello = {"name": name, "room": "main"}
        if sync != "state":
            hello["sync"] = sync
        if role != "player":
            hello["role"] = role
        if token:
            hello["token"] = token
        self.sync = sync
        self.compact = CompactMirror() if sync == "compact" else None
        self.state = None
        self.keys_seen = set()
        self.events = []
        self.raw = []
        msgs = self.client.hello(**hello)
        assert msgs[0]["t"] == "welcome", msgs
        self.welcome = msgs[0]
        self.you = msgs[0]["you"]
        self.token = msgs[0]["token"]
        self._take(msgs[1:])

    def _take(self, msgs):
        for m in msgs:
            t = m["t"]
            if t == "compact":
                self.raw.append(m["frame"])
                self.compact.apply(m["frame"])
                self.state = self.compact.state
                self.keys_seen |= set(self.state.get("entities", {}))
            elif t == "snapshot":
                self.raw.append(m["state"])
                self.state = m["state"]
                self.keys_seen |= set(self.state["entities"])
            elif t == "delta":
                self.raw.append(m["patch"])
                apply_merge_patch(self.state, m["patch"])
                self.keys_seen |= {k for k, v in m["patch"].get("entities", {}).items()
                                   if v is not None}
            elif t == "event":
                self.events.append(m)

    def read(self):
        self._take(self.client.received())
        return self

    @property
    def entities(self):
        return self.state["entities"]


def make(**options):
    """A server with the room "main" made (as a hello would make it)."""
    server = InMemoryServer(Config(port=0, view_radius=RADIUS, **options))
    server.service.create_room("main")
    return server


def room_of(server):
    return server.service.rooms.get("main")


def visible_to(room, pid):
    """The entity keys within RADIUS of ``pid``'s avatar, and its own, from the server's
    own state."""
    game = room.game
    game.flush_positions()
    me = room.state["entities"][str(game.avatars[pid])]["pos"]
    out = set()
    for k, e in room.state["entities"].items():
        dx, dz = e["pos"][0] - me[0], e["pos"][2] - me[2]
        if dx * dx + dz * dz <= RADIUS * RADIUS or e["owner"] == pid:
            out.add(k)
    return out


def truth(room, keys):
    room.game.flush_positions()
    snap = room.state.snapshot()["entities"]
    return {k: snap[k] for k in keys}


def _r(x):
    return [round(c, 2) for c in x] if isinstance(x, list) else x


def tick(server, viewers, n=1):
    for _ in range(n):
        server.tick()
        for v in viewers:
            v.read()


@pytest.mark.parametrize("encoding,sync", SYNCS)
def test_an_entity_out_of_reach_never_reaches_the_client(encoding, sync):
    server = make()
    room = room_of(server)
    a = Viewer(server, "A", encoding, sync)
    b = Viewer(server, "B")
    game = room.game
    game.place_avatar(a.you, -15, -15)
    game.place_avatar(b.you, 15, 15)
    b.client.send({"t": "spawn", "seq": 1, "at": [16, 16]})
    tick(server, [a, b], 2)
    cube = next(k for k, e in room.state["entities"].items() if e["kind"] == "cube")
    b_avatar = str(game.avatars[b.you])
    # A: only its own avatar; B's avatar and cube are not in its state, nor ever were
    assert set(a.entities) == {str(game.avatars[a.you])}
    assert cube not in a.keys_seen and b_avatar not in a.keys_seen
    # ... not even as bytes: no frame A got names the cube or B's avatar (its id is the
    # only thing that could name it; JSON and MessagePack carry it as a map key)
    for frame in a.raw:
        if isinstance(frame, bytes):
            continue               # compact: checked through the mirror (keys_seen)
        text = json.dumps(frame)
        assert '"%s"' % cube not in text and '"%s"' % b_avatar not in text
    # B sees its own cube and avatar, not A's
    assert set(b.entities) == {cube, b_avatar}
    assert a.welcome["view_radius"] == RADIUS          # so the client can draw its horizon
    # but the players map is for everyone (scores are not hidden)
    assert set(a.state["players"]) == {a.you, b.you}


@pytest.mark.parametrize("encoding,sync", SYNCS)
def test_entering_sends_it_whole_and_leaving_removes_it(encoding, sync):
    server = make()
    room = room_of(server)
    a = Viewer(server, "A", encoding, sync)
    b = Viewer(server, "B")
    game = room.game
    game.place_avatar(a.you, 0, 0)
    game.place_avatar(b.you, 15, 0)
    tick(server, [a, b])
    b_avatar = str(game.avatars[b.you])
    assert b_avatar not in a.entities
    game.place_avatar(b.you, 5, 0)               # into A's radius
    tick(server, [a, b])
    assert a.entities[b_avatar] == {"kind": "avatar", "owner": b.you, "pos": [5.0, 0.5, 0.0],
                                    "color": room.state["entities"][b_avatar]["color"]}
    game.place_avatar(b.you, 8, 0)               # on the edge: still in
    tick(server, [a, b])
    assert a.entities[b_avatar]["pos"] == [8.0, 0.5, 0.0]
    game.place_avatar(b.you, 8.01, 0)            # out
    tick(server, [a, b])
    assert b_avatar not in a.entities
    if sync != "compact":
        assert a.raw[-1]["entities"][b_avatar] is None      # null in the delta


@pytest.mark.parametrize("encoding,sync", SYNCS)
def test_every_mirror_is_the_truth_cut_to_its_view(encoding, sync):
    """Drones wander, cubes are ordered across the plane, avatars walk: after every
    state tick each player's mirror is exactly the server's state of what it may see."""
    server = make(drones=4, pickups=4)
    room = room_of(server)
    game = room.game
    viewers = [Viewer(server, "P%d" % i, encoding, sync) for i in range(3)]
    viewers.append(Viewer(server, "J"))            # a JSON state client in the same room
    seq = {v.you: 0 for v in viewers}

    def send(v, msg):
        seq[v.you] += 1
        msg["seq"] = seq[v.you]
        v.client.send(msg)

    for i, v in enumerate(viewers):
        game.place_avatar(v.you, -12 + 8 * i, 0)
        for j in range(3):
            send(v, {"t": "spawn", "at": [-18 + 12 * j, -10 + 7 * i]})
    tick(server, viewers)
    for step in range(80):
        for i, v in enumerate(viewers):
            if step % 10 == i:
                mine = [c.id for c in game.cubes.values() if c.owner == v.you]
                send(v, {"t": "order", "ids": mine, "to": [(-1) ** step * 15, 12 - 6 * i]})
            send(v, {"t": "move", "dir": [(-1) ** (step // 20 + i), 0.5], "dt": 50})
        tick(server, viewers)
        for v in viewers:
            keys = visible_to(room, v.you)
            assert set(v.entities) == keys, "tick %d, %s" % (step, v.you)
            expect = truth(room, keys)
            if sync == "intent":
                for k, e in expect.items():     # intent: moving cubes are extrapolated
                    if "to" in e:
                        e = dict(e, pos=v.entities[k]["pos"], since=v.entities[k].get("since"))
                        expect[k] = e
                # (and in MessagePack carried as float32: compared at 0.01)
                got = {k: {f: _r(x) for f, x in e.items() if f != "since"}
                       for k, e in v.entities.items()}
                expect = {k: {f: _r(x) for f, x in e.items() if f != "since"}
                          for k, e in expect.items()}
                assert got == expect
            else:
                assert v.entities == expect
    # the views did change along the way: things came and went
    assert all(len(v.keys_seen) > len(visible_to(room, v.you)) for v in viewers[:3])


@pytest.mark.parametrize("encoding,sync", SYNCS)
def test_reconnection_gets_a_snapshot_of_its_view(encoding, sync):
    server = make()
    room = room_of(server)
    a = Viewer(server, "A", encoding, sync)
    b = Viewer(server, "B")
    game = room.game
    game.place_avatar(a.you, -15, 0)
    game.place_avatar(b.you, 15, 0)
    tick(server, [a, b])
    a.client.lose()
    tick(server, [b])
    back = Viewer(server, "A", encoding, sync, token=a.token)
    assert back.you == a.you
    tick(server, [back, b])
    assert set(back.entities) == visible_to(room, a.you) == {str(game.avatars[a.you])}
    assert str(game.avatars[b.you]) not in back.keys_seen


def test_spectators_see_everything():
    server = make(drones=2)
    room = room_of(server)
    a = Viewer(server, "A")
    b = Viewer(server, "B")
    room.game.place_avatar(a.you, -15, 0)
    room.game.place_avatar(b.you, 15, 0)
    watcher = Viewer(server, "W", role="spectator")
    compact_watcher = Viewer(server, "CW", "msgpack", "compact", role="spectator")
    tick(server, [a, b, watcher, compact_watcher], 3)
    everything = set(room.state["entities"])
    assert set(watcher.entities) == everything
    assert set(compact_watcher.entities) == everything
    assert len(a.entities) < len(everything)


def test_without_a_radius_nothing_is_cut():
    server = InMemoryServer(Config(port=0))
    server.service.create_room("main")
    room = room_of(server)
    a = Viewer(server, "A")
    b = Viewer(server, "B")
    room.game.place_avatar(a.you, -19, -19)
    room.game.place_avatar(b.you, 19, 19)
    tick(server, [a, b], 2)
    assert set(a.entities) == set(b.entities) == set(room.state["entities"])
    assert room.game.views_on is False
    assert "view_radius" not in a.welcome


def test_players_with_the_same_view_share_one_body():
    """Grouping: two players whose views agree get one body, encoded once."""
    server = make()
    room = room_of(server)
    viewers = [Viewer(server, "P%d" % i) for i in range(4)]
    game = room.game
    for v in viewers[:2]:
        game.place_avatar(v.you, -15, -15)     # the two see the same two avatars
    game.place_avatar(viewers[2].you, 15, 15)
    game.place_avatar(viewers[3].you, 15, -15)
    calls = []
    real = room._view_body

    def counting(kind, patch, tick_, view):
        calls.append(view)
        return real(kind, patch, tick_, view)

    room._view_body = counting
    tick(server, viewers, 2)
    calls.clear()
    for v in viewers:
        v.client.send({"t": "move", "seq": 10, "dir": [0, 0.1], "dt": 50})
    tick(server, viewers)
    assert len(calls) == 3                      # four players, three distinct views
    assert viewers[0].entities == viewers[1].entities
    assert len(viewers[0].entities) == 2


def test_a_missed_tag_does_not_say_where_a_hidden_avatar_is():
    server = make()
    room = room_of(server)
    a = Viewer(server, "A")
    b = Viewer(server, "B")
    room.game.place_avatar(a.you, -15, 0)
    room.game.place_avatar(b.you, 15, 0)
    tick(server, [a, b])
    a.client.send({"t": "tag", "seq": 1, "id": room.game.avatars[b.you], "view": room.tick})
    server.tick()
    [reject] = [m for m in a.client.received() if m["t"] == "reject"]
    assert reject["code"] == "miss"
    assert "30" not in reject["msg"] and "out of reach" in reject["msg"]


@pytest.mark.parametrize("encoding,sync", SYNCS)
def test_your_own_entities_are_in_your_view_wherever_they_are(encoding, sync):
    server = make()
    room = room_of(server)
    a = Viewer(server, "A", encoding, sync)
    b = Viewer(server, "B")
    game = room.game
    game.place_avatar(a.you, -15, -15)
    game.place_avatar(b.you, 15, 15)
    a.client.send({"t": "spawn", "seq": 1, "at": [18, -18]})     # far from both avatars
    tick(server, [a, b], 2)
    [cube] = [k for k, e in room.state["entities"].items() if e["kind"] == "cube"]
    assert a.entities[cube]["owner"] == a.you
    assert cube not in b.keys_seen
