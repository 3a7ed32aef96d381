"""Lobby and trust on real sockets (docs/LOBBY.md): quick match under 100 concurrent
requests, the HMAC authenticator loaded by ``--auth`` in a real server process, private
rooms seen by the Python client, and quick match across a cluster."""

import json
import os
import subprocess
import sys

import pytest
import pytest_twisted
import treq
from twisted.internet import defer

from arbiter.auth import HmacTokens
from arbiter.config import Config
from protocols.client import JoinRefused, connect

SECRET = "integration-secret-for-tokens"
HEADERS = {"Content-Type": ["application/json"]}


@defer.inlineCallbacks
def http(method, url, body=None, headers=HEADERS):
    data = json.dumps(body).encode() if body is not None else None
    resp = yield treq.request(method, url, data=data, headers=headers)
    text = yield resp.text()
    return resp.code, json.loads(text)


@pytest_twisted.inlineCallbacks
def test_100_concurrent_quick_matches_fill_25_rooms_of_4(make_server):
    server = make_server(Config(port=0))
    answers = yield defer.gatherResults([
        http("POST", server.http + "/api/match", {"max_players": 4, "name": "p%d" % i})
        for i in range(100)])
    assert all(code == 200 for code, _ in answers)
    by_room = {}
    for _, out in answers:
        by_room.setdefault(out["room"], []).append(out)
    assert len(by_room) == 25 and sorted(map(len, by_room.values())) == [4] * 25
    # everyone comes, on real WebSockets, at once: every room ends with exactly 4
    clients = yield defer.gatherResults([
        connect(out["ws_url"], room=out["room"], token=out["token"]) for _, out in answers])
    code, listed = yield http("GET", server.http + "/api/rooms")
    assert sorted((r["players"], r["max_players"]) for r in listed["rooms"]) == [(4, 4)] * 25
    # a 101st request opens a 26th room
    code, extra = yield http("POST", server.http + "/api/match", {"max_players": 4})
    assert extra["created"] and extra["room"] not in by_room
    for c in clients:
        c.close()


@pytest_twisted.inlineCallbacks
def test_a_private_room_on_the_wire(make_server):
    server = make_server(Config(port=0))
    code, _ = yield http("POST", server.http + "/api/rooms", {"id": "vault", "private": True})
    assert code == 201
    with pytest.raises(JoinRefused) as refused:
        yield connect(server.url, name="nosy", room="vault")
    assert refused.value.code == "private_room"
    yield refused.value.client.closed
    assert refused.value.client.close_code == 4007
    code, ticket = yield http("POST", server.http + "/api/rooms/vault/join", {"name": "guest"})
    invited = yield connect(ticket["ws_url"], room="vault", token=ticket["token"])
    assert invited.you == ticket["player"]
    invited.close()


@pytest.fixture
def auth_server(tmp_path):
    """``python -m arbiter --auth arbiter.auth:hmac_tokens`` as a real process."""
    env = dict(os.environ, ARBITER_AUTH_SECRET=SECRET)
    log = open(tmp_path / "server.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "arbiter", "--port", "0",
                             "--auth", "arbiter.auth:hmac_tokens"],
                            env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    line = proc.stdout.readline()
    assert line.startswith("ARBITER_PORT="), (line, open(tmp_path / "server.log").read())
    port = int(line.strip().split("=")[1])
    yield "127.0.0.1:%d" % port
    proc.terminate()
    proc.wait(10)
    log.close()


@pytest_twisted.inlineCallbacks
def test_hmac_tokens_through_a_real_server(auth_server):
    tokens = HmacTokens(SECRET)
    url = "ws://%s/ws" % auth_server
    alice = yield connect(url, name="ignored", room="hall", auth=tokens.mint("u-1", "Alice"))
    assert alice.user == "u-1" and alice.name == "Alice"
    with pytest.raises(JoinRefused) as refused:
        yield connect(url, name="eve", room="hall", auth=HmacTokens("x" * 20).mint("u-1", "A"))
    assert refused.value.code == "unauthorized"
    yield refused.value.client.closed
    assert refused.value.client.close_code == 4006
    # Alice again, from a second connection: the first one is taken over
    again = yield connect(url, room="hall", auth=tokens.mint("u-1", "Alice"))
    assert again.you == alice.you
    yield alice.closed
    assert alice.close_code == 4000
    # a token minted over HTTP for her is hers too
    code, out = yield http("POST", "http://%s/api/match" % auth_server,
                           {"auth": tokens.mint("u-2", "Bob")})
    assert code == 200 and out["user"] == "u-2"
    code, out = yield http("POST", "http://%s/api/match" % auth_server, {})
    assert code == 401 and out["error"] == "unauthorized"
    again.close()


def test_auth_that_cannot_load_stops_the_server_at_start():
    env = dict(os.environ)
    env.pop("ARBITER_AUTH_SECRET", None)
    done = subprocess.run([sys.executable, "-m", "arbiter", "--port", "0", "--auth",
                           "arbiter.auth:hmac_tokens"], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode != 0 and "ARBITER_AUTH_SECRET" in done.stderr + done.stdout
    done = subprocess.run([sys.executable, "-m", "arbiter", "--port", "0", "--auth",
                           "no.such.module:thing"], capture_output=True, text=True, timeout=30)
    assert done.returncode != 0 and "no.such.module" in done.stderr + done.stdout


@pytest_twisted.inlineCallbacks
def test_quick_match_across_a_cluster_never_overfills(cluster, redis_server):
    a, b = cluster(2)
    answers = yield defer.gatherResults([
        http("POST", (a if i % 2 else b).http + "/api/match", {"max_players": 4})
        for i in range(24)])
    assert all(code == 200 for code, _ in answers), [a for a in answers if a[0] != 200]
    by_room = {}
    for _, out in answers:
        by_room.setdefault(out["room"], []).append(out)
    # never more than 4 a room (each room's own node admits); each entry node fills its
    # rooms one request at a time, so a burst over two nodes opens at most one partly
    # filled room per node beyond the 6 needed
    assert all(len(v) <= 4 for v in by_room.values())
    assert 6 <= len(by_room) <= 8
    clients = yield defer.gatherResults([
        connect(out["ws_url"], room=out["room"], token=out["token"]) for _, out in answers])
    for c in clients:
        c.close()
    # once the lists are fresh, a match on either node fills the open rooms first
    open_rooms = {r for r, v in by_room.items() if len(v) < 4}
    if open_rooms:
        yield wait_until_listed(a, open_rooms)
        code, out = yield http("POST", a.http + "/api/match", {"max_players": 4})
        assert out["room"] in open_rooms


@defer.inlineCallbacks
def wait_until_listed(node, rooms):
    for _ in range(100):
        code, listed = yield http("GET", node.http + "/api/rooms")
        if rooms <= {r["id"] for r in listed["rooms"]}:
            return
        yield deferLater(0.1)
    raise AssertionError("rooms %s never listed" % sorted(rooms))


def deferLater(seconds):
    from twisted.internet import reactor, task
    return task.deferLater(reactor, seconds, lambda: None)
