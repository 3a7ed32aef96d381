"""Integration: deterministic lockstep bots on real sockets (arbiter.tools.lockstep_bots)."""

import json
import time

import pytest_twisted
import treq
from twisted.internet import defer

from arbiter.config import Config
from arbiter.tools.lockstep_bots import LockstepBot
from protocols import wire


@defer.inlineCallbacks
def _start_bots(server, room_id, bots, **room_options):
    room = server.service.create_room(room_id, "lockstep", min_players=len(bots), **room_options)
    room.persistent = True
    for bot in bots:
        yield bot.connect(server.url, room_id)
    for bot in bots:
        bot.ready()
    return room


@pytest_twisted.inlineCallbacks
def test_bots_agree_on_checksums_over_1000_turns_with_random_latency(make_server):
    """Four bots with 0-3 ms random added latency play 1,000 turns and every checksum agrees."""
    server = make_server(Config(port=0))
    bots = [LockstepBot("bot%d" % i, latency=(0.0, 0.003)) for i in range(4)]
    started = time.perf_counter()
    room = yield _start_bots(server, "agree", bots, turn_ms=1, input_delay=3)
    yield defer.gatherResults([b.wait_turn(1000, timeout=60) for b in bots])
    elapsed = time.perf_counter() - started
    room.end("test over")
    assert all(b.desync is None for b in bots)
    for t in range(1, 1001):
        assert len({b.checksums[t] for b in bots}) == 1, "turn %d differs" % t
    assert room.phase == "ended"
    print("1000 turns in %.2f s (%.0f turns/s), turn_ms=%d" % (elapsed, 1000 / elapsed,
                                                                room.turn_ms))


@pytest_twisted.inlineCallbacks
def test_desynced_bot_halts_the_game_at_its_first_divergent_turn(make_server):
    """A bot that corrupts its game at turn 40 halts the room at turn 40 and everyone is told it."""
    server = make_server(Config(port=0))
    bots = [LockstepBot("good%d" % i, latency=(0.0, 0.002)) for i in range(3)]
    bad = LockstepBot("bad", latency=(0.0, 0.002), desync_at=40)
    bots.append(bad)
    room = yield _start_bots(server, "desync", bots, turn_ms=1)
    yield defer.gatherResults([b.wait_desync(timeout=30) for b in bots])
    for b in bots:
        assert b.desync["turn"] == 40
        assert b.desync["diverged"] == [bad.you]
    yield defer.gatherResults([b.wait_phase("running.desync") for b in bots])
    assert room.phase == "running.desync"
    assert room.describe()["phase"] == "running.desync"
    # turns 1-39 agreed everywhere; the bad bot's 40 differs from the others'
    for t in range(1, 40):
        assert len({b.checksums[t] for b in bots}) == 1
    assert bad.checksums[40] != bots[0].checksums[40]
    turn_at_halt = room.turn
    assert room.turn <= 40 + room.input_delay + 1
    room.end("test over")
    assert room.turn == turn_at_halt


@pytest_twisted.inlineCallbacks
def test_a_lost_packet_times_out_into_an_empty_turn_and_its_sender_is_told(make_server):
    """A bot whose packet for turn 20 is lost: turn 20 closes after the timeout with it late."""
    server = make_server(Config(port=0))
    a = LockstepBot("steady")
    b = LockstepBot("lossy", lose_turns={20})
    room = yield _start_bots(server, "lossy", [a, b], turn_ms=1, turn_timeout=0.2)
    yield a.client.wait_message("phase", phase="running.lagging", timeout=10)
    yield defer.gatherResults([a.wait_turn(40), b.wait_turn(40)])
    master = [m for m in a.client.messages if m["t"] == "master" and m["turn"] == 20][0]
    assert master["late"] == [b.you] and master["cmds"][b.you] == []
    assert b.late_turns == [20] and a.late_turns == []
    phases = [m["phase"] for m in a.client.messages if m["t"] == "phase"]
    assert phases[-2:] == ["running.lagging", "running"]
    for t in range(1, 41):
        assert a.checksums[t] == b.checksums[t]
    room.end("test over")


@pytest_twisted.inlineCallbacks
def test_turns_stretch_to_the_slowest_clients_latency(make_server):
    """A bot 20-40 ms away reports ~60 ms round trips: masters soon carry turn_ms >= 30."""
    server = make_server(Config(port=0))
    near = LockstepBot("near")
    far = LockstepBot("far", latency=(0.02, 0.04))
    room = yield _start_bots(server, "far", [near, far], turn_ms=1, adapt_every=5)
    yield defer.gatherResults([near.wait_turn(20), far.wait_turn(20)])
    masters = [m for m in near.client.messages if m["t"] == "master"]
    assert masters[0]["turn_ms"] == 1
    assert masters[-1]["turn_ms"] == 30 and masters[-1]["frames"] == 30
    assert far.desync is None and near.checksums[20] == far.checksums[20]
    room.end("test over")


@pytest_twisted.inlineCallbacks
def test_json_and_msgpack_bots_play_the_same_game(make_server):
    """One bot on arbiter.v1.json, one on arbiter.v1.msgpack: 200 turns, same checksums."""
    server = make_server(Config(port=0))
    room = server.service.create_room("mixed", "lockstep", min_players=2, turn_ms=1)
    j, m = LockstepBot("json"), LockstepBot("msgpack")
    yield j.connect(server.url, "mixed", encoding=wire.JSON)
    yield m.connect(server.url, "mixed", encoding=wire.MSGPACK)
    assert m.client.encoding == wire.MSGPACK
    j.ready()
    m.ready()
    yield defer.gatherResults([j.wait_turn(200), m.wait_turn(200)])
    assert all(j.checksums[t] == m.checksums[t] for t in range(1, 201))
    room.end("test over")


@pytest_twisted.inlineCallbacks
def test_bots_follow_moved_to_the_rooms_node_in_a_cluster(cluster):
    """Two cluster nodes on a real Redis: a lockstep room created through the API lives on
    one of them; bots that say hello to the other node are moved to the room's node (one
    redirect each), play 100 turns there and agree on every checksum."""
    nodes = cluster(2)
    response = yield treq.post(nodes[0].http + "/api/rooms", json.dumps(
        {"mode": "lockstep", "min_players": 2, "turn_ms": 1}).encode(),
        headers={"Content-Type": ["application/json"]})
    created = yield response.json()
    assert response.code == 201, created
    home = {n.node_id: n for n in nodes}[created["node"]]
    [elsewhere] = [n for n in nodes if n is not home]
    bots = [LockstepBot("bot%d" % i, latency=(0.0, 0.002)) for i in range(2)]
    for bot in bots:
        yield bot.connect(elsewhere.ws_url, created["id"])
    for bot in bots:
        assert bot.client.url == home.ws_url
        assert [(r["from"], r["url"]) for r in bot.client.redirects] == [
            (elsewhere.ws_url, home.ws_url)]
        assert bot.phase == "setup" and not bot.client.errors
    for bot in bots:
        bot.ready()
    yield defer.gatherResults([b.wait_turn(100) for b in bots])
    assert all(b.desync is None for b in bots)
    for t in range(1, 101):
        assert bots[0].checksums[t] == bots[1].checksums[t], "turn %d differs" % t
    for bot in bots:
        yield bot.client.close()
