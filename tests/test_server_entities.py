"""Entities the server owns (--drones, --pickups), on the wire."""

import pytest

from arbiter.codes import JSON, MSGPACK
from arbiter.games import cubes

from game_support import Player, server_with


def test_a_plain_server_has_only_avatars_and_cubes():
    server, room = server_with()
    a = Player(server, "A")
    a.send({"t": "spawn", "at": [1, 1]})
    server.tick(3)
    a.read()
    assert {e["kind"] for e in a.state["entities"].values()} == {"avatar", "cube"}
    assert "round" not in a.state


@pytest.mark.parametrize("encoding", [JSON, MSGPACK])
def test_drones_and_pickups_are_in_the_state_owned_by_no_player(encoding):
    server, room = server_with(drones=2, pickups=3)
    a = Player(server, "A", encoding)
    drones, pickups = a.kinds("drone"), a.kinds("pickup")
    assert len(drones) == 2 and len(pickups) == 3
    players = set(a.state["players"])
    for e in list(drones.values()) + list(pickups.values()):
        assert e["owner"] == cubes.SERVER and e["owner"] not in players
        assert set(e) == {"kind", "owner", "pos", "color"}
        x, y, z = e["pos"]
        assert -20 <= x <= 20 and -20 <= z <= 20


@pytest.mark.parametrize("form", [int, str])
def test_nobody_orders_deletes_or_tags_what_the_server_owns(form):
    server, room = server_with(drones=1, pickups=1)
    a = Player(server, "A")
    targets = [int(k) for k, e in a.state["entities"].items() if e["kind"] in ("drone", "pickup")]
    assert len(targets) == 2
    # A stands far from both (an avatar on a pickup would take it)
    corner = max(((x, z) for x in (-19, 19) for z in (-19, 19)), key=lambda c: min(
        (c[0] - room.state["entities"][str(e)]["pos"][0]) ** 2
        + (c[1] - room.state["entities"][str(e)]["pos"][2]) ** 2 for e in targets))
    room.game.place_avatar(a.you, *corner)
    for eid in targets:
        seqs = [a.send({"t": "order", "ids": [form(eid)], "to": [0, 0]}),
                a.send({"t": "delete", "id": form(eid)}),
                a.send({"t": "tag", "id": form(eid), "view": 0})]
        server.tick()
        a.read()
        for seq in seqs:
            [reject] = a.of("reject", seq=seq)
            assert reject["code"] == "not_owner", reject
    server.tick()
    a.read()
    assert {int(k) for k, e in a.state["entities"].items()
            if e["kind"] in ("drone", "pickup")} == set(targets)      # nothing deleted
    assert all("to" not in a.state["entities"][str(eid)] for eid in targets)


def test_a_drone_chases_the_nearest_avatar_and_a_touch_costs_a_point():
    server, room = server_with(drones=1)
    a = Player(server, "A")
    b = Player(server, "B")
    [(key, drone)] = a.kinds("drone").items()
    dx, dz = drone["pos"][0], drone["pos"][2]
    sx = 1 if dx < 0 else -1                      # toward the middle: room on the plane
    room.game.place_avatar(a.you, dx + 5 * sx, dz)   # within chase range (8)
    room.game.place_avatar(b.you, dx - 15 * sx, dz)  # out of it
    server.tick()
    a.read()
    start = a.state["entities"][key]["pos"][0]
    for _ in range(40):                            # 3 units/s: 4 units in < 2 s
        server.tick()
        a.read()
        if a.of("event", kind="hit"):
            break
    [hit] = a.of("event", kind="hit")
    assert hit == {"t": "event", "kind": "hit", "player": a.you, "by": "drone"}
    assert a.state["players"][a.you]["score"] == -1
    assert a.state["players"][b.you]["score"] == 0
    assert abs(a.state["entities"][key]["pos"][0] - start) > 3   # it came to A
    # b saw it too; the drone turns away and the same touch is not counted twice at once
    assert b.read().of("event", kind="hit") == [hit]
    server.tick(10)
    a.read()
    assert a.state["players"][a.you]["score"] == -1


def test_a_disconnected_players_avatar_is_not_chased():
    server, room = server_with(drones=1)
    a = Player(server, "A")
    b = Player(server, "B")
    [(key, drone)] = a.kinds("drone").items()
    room.game.place_avatar(a.you, drone["pos"][0], drone["pos"][2])   # right on it
    a.client.lose()
    server.tick(40)
    b.read()
    assert not b.of("event", kind="hit")
    assert b.state["players"][a.you]["score"] == 0


def test_a_pickup_goes_to_the_first_avatar_there_and_another_appears():
    server, room = server_with(pickups=2)
    a = Player(server, "A")
    b = Player(server, "B")
    pickups = a.kinds("pickup")
    key, p = sorted(pickups.items())[0]
    room.game.place_avatar(a.you, p["pos"][0] + 0.3, p["pos"][2])
    room.game.place_avatar(b.you, p["pos"][0] + 0.9, p["pos"][2])      # also in reach, farther
    server.tick()
    a.read()
    b.read()
    assert a.of("event", kind="pickup") == [{"t": "event", "kind": "pickup", "player": a.you}]
    assert b.of("event", kind="pickup") == a.of("event", kind="pickup")
    assert a.state["players"][a.you]["score"] == 1
    assert a.state["players"][b.you]["score"] == 0
    after = a.kinds("pickup")
    assert key not in after and len(after) == 2          # a new one, elsewhere, new id
    server.tick(3)
    a.read()
    assert len(a.of("event", kind="pickup")) == 1        # taken once


def test_the_game_interface_lets_a_game_own_entities():
    """What docs/GAMES.md shows: server-owned entities are ordinary state-map entries."""
    server, room = server_with(drones=3)
    game = room.game
    assert all(game.server_owned(eid) for eid in game.drones)
    assert not any(game.server_owned(eid) for eid in game.avatar_owner)
