"""Rounds that end (--round-points, --round-seconds, --round-pause, --round-once)."""

import pytest

from arbiter.app.testing import InMemoryServer
from arbiter.codes import JSON, MSGPACK
from arbiter.config import Config

from game_support import Player, server_with


def tag_until(server, room, tagger, target, points):
    """``tagger`` tags ``target`` (standing next to it) until it has ``points``."""
    room.game.place_avatar(tagger.you, 0, 0)
    room.game.place_avatar(target.you, 1, 0)
    server.tick()
    eid = room.game.avatars[target.you]
    for _ in range(points):
        tagger.send({"t": "tag", "id": eid, "view": room.tick})
        server.tick()
    tagger.read()
    target.read()


@pytest.mark.parametrize("encoding", [JSON, MSGPACK])
def test_first_to_the_points_ends_the_round_for_everyone(encoding):
    server, room = server_with(round_points=3, round_pause=2.0)
    a = Player(server, "A", encoding)
    b = Player(server, "B")
    assert a.state["round"] == {"n": 1, "phase": "running", "points": 3}
    tag_until(server, room, a, b, 3)
    for p in (a, b):
        [end] = p.of("event", kind="round_end")
        assert end["round"] == 1 and end["reason"] == "points"
        assert end["scores"] == {a.you: 3, b.you: 0}
        assert end["winner"] == a.you
        assert end["next_at"] == room.tick - 1 + 40      # 2 s at 20 state ticks a second
        assert p.of("phase") == [{"t": "phase", "phase": "ended", "round": 1}]
        assert p.state["round"]["phase"] == "ended"
        assert p.state["round"]["result"] == {"round": 1, "reason": "points",
                                              "scores": {a.you: 3, b.you: 0}, "winner": a.you}
    # the world stands still: inputs are refused until the next round
    seq = a.send({"t": "spawn", "at": [1, 1]})
    server.tick()
    [reject] = a.read().of("reject", seq=seq)
    assert reject["code"] == "not_running"


def test_a_new_round_starts_after_the_pause_with_scores_reset():
    server, room = server_with(round_points=2, round_pause=1.0)
    a = Player(server, "A")
    b = Player(server, "B")
    tag_until(server, room, a, b, 2)
    assert a.of("event", kind="round_end")
    server.tick(19)
    assert not a.read().of("event", kind="round_start")
    server.tick(2)
    a.read()
    assert a.of("event", kind="round_start") == [{"t": "event", "kind": "round_start",
                                                  "round": 2}]
    assert a.of("phase")[-1] == {"t": "phase", "phase": "running", "round": 2}
    assert a.state["round"] == {"n": 2, "phase": "running", "points": 2}
    assert a.state["players"][a.you]["score"] == 0
    seq = a.send({"t": "spawn", "at": [1, 1]})
    server.tick()
    assert not a.read().of("reject", seq=seq)          # inputs are taken again


def test_a_player_who_joins_in_the_pause_sees_the_result():
    server, room = server_with(round_points=1, round_pause=5.0)
    a = Player(server, "A")
    b = Player(server, "B")
    tag_until(server, room, a, b, 1)
    late = Player(server, "Late", MSGPACK)
    assert late.state["round"]["phase"] == "ended"
    assert late.state["round"]["result"]["winner"] == a.you
    assert late.state["round"]["result"]["scores"] == {a.you: 1, b.you: 0}
    assert late.state["round"]["next_at"] > room.tick


def test_round_seconds_end_the_round_and_a_tie_has_no_winner():
    server, room = server_with(round_seconds=2.0, round_once=True)
    a = Player(server, "A")
    Player(server, "B")                            # 0 points each: a tie
    assert a.state["round"]["ends_at"] == 40
    server.tick(39)
    assert not a.read().of("event", kind="round_end")
    server.tick(2)
    [end] = a.read().of("event", kind="round_end")
    assert end["reason"] == "time" and end["winner"] is None and end["next_at"] is None
    assert "winner" not in a.state["round"]["result"]
    # --round-once: the room stays ended
    server.tick(200)
    assert not a.read().of("event", kind="round_start")
    assert a.state["round"]["phase"] == "ended"
    assert room.phase == "ended"
    # and can still be joined, to see the result
    Player(server, "C")


def test_a_game_can_end_the_round_itself():
    server, room = server_with(round_seconds=60)
    a = Player(server, "A")
    room.end_round("flag captured", winner=a.you)
    [end] = a.read().of("event", kind="round_end")
    assert end["reason"] == "flag captured" and end["winner"] == a.you


def test_without_rounds_there_is_no_round_and_no_phase_message():
    server, room = server_with()
    a = Player(server, "A")
    b = Player(server, "B")
    tag_until(server, room, a, b, 5)
    assert "round" not in a.state
    assert not a.of("phase") and not a.of("event", kind="round_end")
    with pytest.raises(ValueError):
        room.end_round()


def test_the_round_clock_waits_for_the_setup_lobby():
    """A room made with a setup lobby: the round's time counts from the end of setup."""
    server = InMemoryServer(Config(port=0, round_seconds=1.0))
    server.service.create_room("main", lobby=({}, 1))
    room = server.service.rooms.get("main")
    a = Player(server, "A")
    server.tick(60)                                # 3 s in setup
    a.read()
    assert room.phase == "setup" and not a.of("event", kind="round_end")
    a.client.send({"t": "ready", "ready": True})
    server.tick()
    assert room.phase == "running"
    start = room.tick
    server.tick(25)
    [end] = a.read().of("event", kind="round_end")
    assert end["reason"] == "time"
    assert a.state["round"]["ends_at"] == start - 1 + 20      # 1 s from the end of setup
