"""Integration: room phases through real sockets and the HTTP API (docs/LOCKSTEP.md)."""

import json

import pytest_twisted
import treq
from twisted.internet import defer

from protocols.client import connect
from arbiter.config import Config
from arbiter.tools.lockstep_bots import LockstepBot

KEY = "k3y"
AUTH = {"Authorization": ["Bearer " + KEY]}


@defer.inlineCallbacks
def api(method, url, body=None, headers=AUTH):
    data = json.dumps(body).encode() if body is not None else None
    resp = yield treq.request(method, url, data=data, headers=headers)
    out = yield resp.json()
    return resp.code, out


@defer.inlineCallbacks
def listed(server, room_id):
    code, lobby = yield api("GET", server.http + "/api/rooms", headers={})
    assert code == 200
    return {r["id"]: r for r in lobby["rooms"]}[room_id]


@defer.inlineCallbacks
def join_bot(server, room_id, name, **bot_options):
    # minting join tokens is the game backend's part: it holds the API key
    code, join = yield api("POST", server.http + "/api/rooms/%s/join" % room_id, {"name": name})
    assert code == 200
    bot = LockstepBot(name, **bot_options)
    yield bot.connect(join["ws_url"], room_id, token=join["token"])
    assert bot.you == join["player"]
    return bot


@pytest_twisted.inlineCallbacks
def test_create_list_join_ready_run_pause_and_resume_on_rejoin(make_server):
    """The whole life of a lockstep room: setup, ready, running, paused on a drop, resumed."""
    server = make_server(Config(port=0, api_key=KEY))
    code, room = yield api("POST", server.http + "/api/rooms",
                           {"mode": "lockstep", "id": "flow", "min_players": 2, "turn_ms": 2,
                            "seed": 1234, "config": {"size": 32}})
    assert code == 201
    entry = yield listed(server, "flow")
    assert entry["phase"] == "setup" and entry["players"] == 0

    a = yield join_bot(server, "flow", "ada", latency=(0, 0.002))
    b = yield join_bot(server, "flow", "bob", latency=(0, 0.002))
    entry = yield listed(server, "flow")
    assert entry["players"] == 2 and entry["max_players"] == 16

    a.configure(coins=3)
    setup = yield b.client.wait_message("setup", config={"size": 32, "coins": 3})
    assert set(setup["players"]) == {a.you, b.you}
    a.ready()
    yield b.client.wait_for(lambda c: [m for m in c.messages if m["t"] == "setup"
                                       and m["players"][a.you]["ready"]])
    assert b.phase == "setup"
    b.ready()
    yield defer.gatherResults([a.wait_phase("running"), b.wait_phase("running")])
    yield a.client.wait_message("start") if a.start is None else None
    assert a.start["seed"] == 1234 and a.start["config"] == {"size": 32, "coins": 3}
    assert a.start["players"] == [a.you, b.you]
    entry = yield listed(server, "flow")
    assert entry["phase"] == "running"

    yield defer.gatherResults([a.wait_turn(50), b.wait_turn(50)])
    token = b.client.token
    yield b.client.drop()
    yield a.wait_phase("running.paused")
    paused = [m for m in a.client.messages if m.get("phase") == "running.paused"][-1]
    assert paused["waiting"] == [b.you]
    entry = yield listed(server, "flow")
    assert entry["phase"] == "running.paused"
    turn_at_pause = entry["turn"]
    entry = yield listed(server, "flow")          # a round trip later: still no new turn
    assert entry["turn"] == turn_at_pause

    b2 = LockstepBot("bob", latency=(0, 0.002))
    yield b2.connect(server.url, "flow", token=token)
    assert b2.you == b.you
    yield defer.gatherResults([a.wait_phase("running"), b2.wait_phase("running")])
    catchup = [m for m in b2.client.messages if m["t"] == "catchup"][0]
    assert catchup["seed"] == 1234 and len(catchup["masters"]) == turn_at_pause
    yield defer.gatherResults([a.wait_turn(turn_at_pause + 50), b2.wait_turn(turn_at_pause + 50)])
    upto = min(a.turn, b2.turn)
    for t in range(1, upto + 1):
        assert a.checksums[t] == b2.checksums[t], "turn %d differs after the rejoin" % t
    assert a.desync is None and b2.desync is None
    code, _ = yield api("DELETE", server.http + "/api/rooms/flow")
    assert code == 200
    yield a.client.closed
    assert a.client.close_code == 1000


@pytest_twisted.inlineCallbacks
def test_a_player_gone_longer_than_drop_after_is_dropped_and_the_game_goes_on(make_server):
    """With drop_after set, the others are told who was dropped and keep playing in step."""
    server = make_server(Config(port=0, api_key=KEY))
    yield api("POST", server.http + "/api/rooms",
              {"mode": "lockstep", "id": "drop", "min_players": 3, "turn_ms": 2,
               "drop_after": 0.2})
    bots = []
    for name in ("a", "b", "c"):
        bot = yield join_bot(server, "drop", name)
        bots.append(bot)
    for bot in bots:
        bot.ready()
    yield defer.gatherResults([bot.wait_turn(20) for bot in bots])
    a, b, c = bots
    yield c.client.drop()
    event = yield a.client.wait_message("event", kind="dropped")
    assert event["player"] == c.you
    yield defer.gatherResults([a.wait_turn(event["turn"] + 30), b.wait_turn(event["turn"] + 30)])
    dropped = [m for m in a.client.messages if m["t"] == "master" and m.get("dropped")]
    assert dropped[0]["dropped"] == [c.you] and dropped[0]["turn"] == event["turn"]
    assert c.you not in a.game.units
    for t in range(1, min(a.turn, b.turn) + 1):
        assert a.checksums[t] == b.checksums[t]
    server.service.rooms.get("drop").end()


@pytest_twisted.inlineCallbacks
def test_a_hello_to_a_running_lockstep_game_is_a_spectator(make_server):
    """A newcomer to a running game gets catchup and the masters but its packets are refused."""
    server = make_server(Config(port=0, api_key=KEY))
    yield api("POST", server.http + "/api/rooms",
              {"mode": "lockstep", "id": "watch", "min_players": 1, "turn_ms": 2})
    a = yield join_bot(server, "watch", "a")
    a.ready()
    yield a.wait_turn(10)
    s = LockstepBot("viewer")
    yield s.connect(server.url, "watch")
    assert s.client.messages[0]["role"] == "spectator"
    yield s.wait_turn(a.turn + 10)
    assert s.checksums[5] == a.checksums[5]
    s.client.send({"t": "turn", "turn": s.turn + 1})
    rej = yield s.client.wait_message("reject")
    assert rej["code"] == "spectator"
    entry = yield listed(server, "watch")
    assert entry["spectators"] == 1 and entry["players"] == 1
    server.service.rooms.get("watch").end()


@pytest_twisted.inlineCallbacks
def test_realtime_room_made_with_setup_waits_for_ready(make_server):
    """An API realtime room with setup: inputs are refused not_running until all are ready."""
    server = make_server(Config(port=0, api_key=KEY))
    code, room = yield api("POST", server.http + "/api/rooms",
                           {"id": "rt", "setup": True, "min_players": 2,
                            "config": {"map": "small"}})
    assert code == 201 and room["phase"] == "setup"
    clients = []
    for name in ("x", "y"):
        code, join = yield api("POST", server.http + "/api/rooms/rt/join", {"name": name})
        c = yield connect(server.url, room="rt", token=join["token"])
        clients.append(c)
    x, y = clients
    setup = yield x.wait_message("setup")
    seq = x.spawn(at=[1, 1])
    rej = yield x.wait_for(lambda c: c.rejects).addCallback(lambda c: c.rejects[-1])
    assert rej["seq"] == seq and rej["code"] == "not_running"
    assert "setup" in rej["msg"]
    for c in (x, y):
        c.send({"t": "ready", "ready": True})
    phase = yield x.wait_message("phase")
    assert phase["phase"] == "running"
    seq = x.spawn(at=[1, 1])
    yield x.wait_ack(seq)
    assert len(x.my_cubes()) == 1
    entry = yield listed(server, "rt")
    assert entry["phase"] == "running" and entry["players"] == 2


@pytest_twisted.inlineCallbacks
def test_implicit_realtime_rooms_start_running_and_send_no_phase_messages(server):
    """A room made by hello is running at once and speaks only PROTOCOL.md messages."""
    c = yield connect(server.url, room="plain", name="p")
    seq = c.spawn(at=[0, 0])
    yield c.wait_ack(seq)
    assert not c.rejects
    assert {m["t"] for m in c.messages} <= {"welcome", "snapshot", "delta"}
    assert server.service.rooms.get("plain").describe()["phase"] == "running"
    yield c.close()


@pytest_twisted.inlineCallbacks
def test_a_realtime_spectator_sees_state_but_its_inputs_are_rejected(server):
    """role spectator: not a player in the state, sees others' cubes, inputs get code spectator."""
    p = yield connect(server.url, room="arena", name="player")
    s = yield connect(server.url, room="arena", name="watcher", role="spectator")
    assert s.you not in s.state["players"]
    seq = p.spawn(at=[2, 2])
    yield p.wait_ack(seq)
    (cid,) = p.my_cubes()
    yield s.wait_for(lambda c: cid in c.entities("cube"))
    seq = s.spawn(at=[1, 1])
    yield s.wait_for(lambda c: c.rejects)
    assert s.rejects[-1]["seq"] == seq and s.rejects[-1]["code"] == "spectator"
    yield s.wait_ack(seq)
    assert s.my_cubes() == {}
    yield p.close()
    yield s.close()


@pytest_twisted.inlineCallbacks
def test_a_takeover_mid_game_gets_the_whole_game_and_plays_on(make_server):
    """hello with the welcome token while connected: old socket closed 4000, new one catches up."""
    server = make_server(Config(port=0, api_key=KEY))
    yield api("POST", server.http + "/api/rooms",
              {"mode": "lockstep", "id": "take", "min_players": 2, "turn_ms": 2})
    a = yield join_bot(server, "take", "a")
    b = yield join_bot(server, "take", "b")
    a.ready()
    b.ready()
    yield defer.gatherResults([a.wait_turn(20), b.wait_turn(20)])
    b2 = LockstepBot("b")
    yield b2.connect(server.url, "take", token=b.client.token)
    yield b.client.closed
    assert b.client.close_code == 4000
    assert b2.you == b.you
    yield defer.gatherResults([a.wait_turn(b2.turn + 30), b2.wait_turn(b2.turn + 30)])
    assert not [m for m in a.client.messages if m.get("phase") == "running.paused"]
    for t in range(1, min(a.turn, b2.turn) + 1):
        assert a.checksums[t] == b2.checksums[t]
    b2.client.resync()
    catchup = yield b2.client.wait_message("catchup")
    assert len(catchup["masters"]) == catchup["turn"] >= 50
    server.service.rooms.get("take").end()
