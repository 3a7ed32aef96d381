"""The Python client and rounds (--round-points, --round-seconds, --round-pause,
--round-once) against a real server on 127.0.0.1: ``client.round``, ``round_results``,
``phases`` and ``wait_round_end()`` show what the server decided, in every sync mode."""

import pytest_twisted
from twisted.internet import reactor, task

from arbiter.config import Config, World
from protocols import wire
from protocols.client import connect


def avatar_of(client):
    eid, _ = client.my_avatar()
    assert eid is not None
    return eid


@pytest_twisted.inlineCallbacks
def test_the_client_sees_the_round_end_its_result_and_the_next_round(make_server):
    """Rounds to 2 points; Alice tags Bob twice (a tag reaches the whole plane): both
    clients, one on merge patches and one on the compact sync, get the same result;
    ``round`` says ``ended`` with it, inputs are refused ``not_running``, and after the
    pause round 2 runs with every score at 0."""
    server = make_server(Config(port=0, round_points=2, round_pause=1.0,
                                world=World(tag_radius=100)))
    a = yield connect(server.url, name="Alice", room="r", encoding=wire.MSGPACK)
    b = yield connect(server.url, name="Bob", room="r", sync="compact")
    for c in (a, b):
        assert c.round == {"n": 1, "phase": "running", "points": 2}
        assert list(c.round_results) == [] and list(c.phases) == []
    ends = [a.wait_round_end(), b.wait_round_end()]
    target = avatar_of(b)
    for _ in range(2):
        yield a.wait_ack(a.tag(target))
    end_a = yield ends[0]
    end_b = yield ends[1]

    assert end_a == end_b
    assert end_a["kind"] == "round_end" and end_a["round"] == 1 and end_a["reason"] == "points"
    assert end_a["scores"] == {a.you: 2, b.you: 0}
    assert end_a["winner"] == a.you
    assert isinstance(end_a["next_at"], int) and end_a["next_at"] > a.tick - 1
    for c in (a, b):
        assert list(c.round_results) == [end_a]
        yield c.wait_for(lambda cl: cl.round["phase"] == "ended")
        assert c.round["result"] == {"round": 1, "reason": "points",
                                     "scores": {a.you: 2, b.you: 0}, "winner": a.you}
        assert c.round["next_at"] == end_a["next_at"]
        assert list(c.phases) == [{"t": "phase", "phase": "ended", "round": 1}]
    # the same round asked for by number: at once, from round_results
    again = yield a.wait_round_end(1)
    assert again is end_a

    # between rounds the world stands still
    seq = b.spawn(at=[1, 1])
    yield b.wait_for(lambda cl: any(r["seq"] == seq for r in cl.rejects))
    assert [r["code"] for r in b.rejects if r["seq"] == seq] == ["not_running"]

    # the next round: running again, scores reset, the result gone
    for c in (a, b):
        yield c.wait_for(lambda cl: cl.round["n"] == 2, timeout=5)
        yield c.wait_for(lambda cl: all(p["score"] == 0 for p in cl.state["players"].values()))
        assert c.round == {"n": 2, "phase": "running", "points": 2}
        assert c.phases[-1] == {"t": "phase", "phase": "running", "round": 2}
        assert [e["round"] for e in c.events if e["kind"] == "round_start"] == [2]
    seq = b.spawn(at=[1, 1])
    yield b.wait_ack(seq)
    assert not [r for r in b.rejects if r["seq"] == seq]
    for c in (a, b):
        yield c.close()


@pytest_twisted.inlineCallbacks
def test_a_timed_round_once_ends_for_good_and_a_late_player_sees_the_result(make_server):
    """--round-seconds 1 --round-once: the round ends on time (a lone player with the
    single highest score wins), with no next round; a player who joins afterwards gets no
    event but finds the result in ``client.round``."""
    server = make_server(Config(port=0, round_seconds=1.0, round_pause=0.2, round_once=True))
    a = yield connect(server.url, name="Ada", room="once")
    assert a.round["n"] == 1 and a.round["phase"] == "running"
    assert isinstance(a.round["ends_at"], int) and a.round["ends_at"] > a.tick   # a state tick
    assert "points" not in a.round
    end = yield a.wait_round_end(timeout=5)
    assert end["round"] == 1 and end["reason"] == "time"
    assert end["scores"] == {a.you: 0} and end["winner"] == a.you
    assert end["next_at"] is None
    yield a.wait_for(lambda cl: cl.round["phase"] == "ended")
    assert "next_at" not in a.round

    late = yield connect(server.url, name="Late", room="once")
    assert list(late.round_results) == []
    assert late.round["phase"] == "ended"
    assert late.round["result"] == {"round": 1, "reason": "time", "scores": {a.you: 0},
                                    "winner": a.you}
    # well past the pause a round would have had: still round 1, still ended
    yield task.deferLater(reactor, 0.6, lambda: None)
    seq = a.spawn()
    yield a.wait_for(lambda cl: any(r["seq"] == seq for r in cl.rejects))
    assert [r["code"] for r in a.rejects if r["seq"] == seq] == ["not_running"]
    assert a.round["n"] == 1 and a.round["phase"] == "ended"
    assert list(a.round_results) == [end] and list(a.phases) == [
        {"t": "phase", "phase": "ended", "round": 1}]
    for c in (a, late):
        yield c.close()


@pytest_twisted.inlineCallbacks
def test_without_rounds_there_is_no_round(server):
    """The default server runs no rounds: ``round`` is None and nothing is recorded."""
    c = yield connect(server.url, name="V1", room="plain")
    assert c.round is None and "round" not in c.state
    yield c.wait_ack(c.spawn(at=[0, 0]))
    assert c.round is None and list(c.round_results) == [] and list(c.phases) == []
    yield c.close()
