"""Cluster mode on a real redis-server: nodes are real processes (tests/cluster_support.py),
clients are the Python client on real sockets.

Three nodes and one Redis behave like one server with more room: players who reach
different nodes for one room end up together, rooms spread, a race on one name gives one
owner, the HTTP API works from any node, and each failure (kill -9 of a node, Redis
stopped, restarted empty, slow, a claim lost to another node) has the outcome
docs/SCALING.md promises.
"""

import json
import os
import signal
import time

import pytest
import pytest_twisted
import treq
from twisted.internet import defer, reactor, task

from arbiter import codes
from protocols.client import ArbiterClient, JoinRefused, connect, open_socket

# -- helpers -----------------------------------------------------------------------
@defer.inlineCallbacks
def http(method, url, body=None):
    kwargs = {"data": json.dumps(body).encode()} if body is not None else {}
    response = yield treq.request(method, url.encode(), **kwargs)
    text = yield response.text()
    return response.code, json.loads(text)


@defer.inlineCallbacks
def until(check, timeout=15.0, what="condition"):
    """Poll ``check()`` (a value or a Deferred) until truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = yield defer.maybeDeferred(check)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("not within %.1f s: %s" % (timeout, what))
        yield task.deferLater(reactor, 0.05, lambda: None)


def by_url(nodes):
    return {n.ws_url: n for n in nodes}


@defer.inlineCallbacks
def player_in_room(nodes, room, entry=0):
    """A player joined to ``room`` through ``nodes[entry]``: (client, the room's node,
    another node)."""
    client = yield connect(nodes[entry].ws_url, name="p", room=room)
    home = by_url(nodes)[client.url]
    return client, home, next(n for n in nodes if n is not home)


def owner(redis_server, room):
    return redis_server.cli("GET", "arbiter:room:" + room)


@defer.inlineCallbacks
def refused(url, room, token=None, timeout=10.0):
    """Join and expect a refusal: returns the JoinRefused (code, client.close_code)."""
    try:
        client = yield connect(url, name="r", room=room, token=token)
    except JoinRefused as e:
        yield until(lambda: e.client.close_code is not None, what="the close after the error")
        return e.code, e.client.close_code
    client.close()
    raise AssertionError("joined %s at %s, expected a refusal" % (room, client.url))


# -- one server with more room -----------------------------------------------------------
@pytest_twisted.inlineCallbacks
def test_clients_reaching_different_nodes_for_one_room_end_up_together(cluster, redis_server):
    nodes = cluster(3)
    clients = []
    for i, node in enumerate(nodes):
        c = yield connect(node.ws_url, name="p%d" % i, room="arena")
        clients.append(c)
    urls = {c.url for c in clients}
    assert len(urls) == 1, urls
    home = by_url(nodes)[urls.pop()]
    assert owner(redis_server, "arena") == home.node_id
    # two of the three were redirected; all three see three avatars in one room
    assert sum(len(c.redirects) for c in clients) == 2
    for c in clients:
        yield c.wait_for(lambda c: len(c.entities("avatar")) == 3)
    for c in clients:
        c.close()


@pytest_twisted.inlineCallbacks
def test_new_rooms_spread_over_the_nodes(cluster, redis_server):
    nodes = cluster(3)
    clients = []
    for i in range(9):
        # every hello reaches the first node; placement spreads the rooms
        c = yield connect(nodes[0].ws_url, name="p", room="spread-%d" % i)
        clients.append(c)
    per_node = {}
    for c in clients:
        per_node[c.url] = per_node.get(c.url, 0) + 1
    assert sorted(per_node.values()) == [3, 3, 3], per_node
    assert set(per_node) == {n.ws_url for n in nodes}
    for c in clients:
        c.close()


@pytest_twisted.inlineCallbacks
def test_two_nodes_racing_for_one_name_agree_on_one_owner(cluster, redis_server):
    a, b = cluster(2)
    names = ["race-%d" % i for i in range(12)]
    # for every name, one hello on each node at the same moment
    joins = []
    for name in names:
        joins.append(connect(a.ws_url, name="a", room=name))
        joins.append(connect(b.ws_url, name="b", room=name))
    clients = yield defer.gatherResults(joins)
    for i, name in enumerate(names):
        ca, cb = clients[2 * i], clients[2 * i + 1]
        assert ca.url == cb.url, name
        assert by_url((a, b))[ca.url].node_id == owner(redis_server, name)
        # one room, not twins: each sees the other's avatar
        yield ca.wait_for(lambda c: len(c.entities("avatar")) == 2)
        yield cb.wait_for(lambda c: len(c.entities("avatar")) == 2)
    for c in clients:
        c.close()


# -- the HTTP API across the cluster --------------------------------------------------------
@pytest_twisted.inlineCallbacks
def test_api_create_list_join_and_delete_from_any_node(cluster, redis_server):
    a, b, c = cluster(3)
    code, made = yield http("POST", a.http + "/api/rooms", {"id": "hall", "max_players": 4})
    assert code == 201, made
    home = {n.node_id: n for n in (a, b, c)}[made["node"]]
    assert made["ws_url"] == home.ws_url
    assert owner(redis_server, "hall") == home.node_id
    # a second create of the name, on another node, is refused
    code, again = yield http("POST", c.http + "/api/rooms", {"id": "hall"})
    assert (code, again["error"]) == (409, "room_exists")
    # every node lists it, with its node
    for node in (a, b, c):
        code, listed = yield http("GET", node.http + "/api/rooms")
        rooms = {r["id"]: r for r in listed["rooms"]}
        assert rooms["hall"]["node"] == home.node_id, node
        assert rooms["hall"]["max_players"] == 4
    # a join token minted through another node is honoured by the owner
    minter = next(n for n in (a, b, c) if n is not home)
    code, ticket = yield http("POST", minter.http + "/api/rooms/hall/join", {"name": "ana"})
    assert code == 200, ticket
    assert ticket["ws_url"] == home.ws_url
    entry = next(n for n in (a, b, c) if n is not home)
    client = yield connect(entry.ws_url, room="hall", token=ticket["token"])
    assert client.url == home.ws_url
    assert client.you == ticket["player"]
    code, shown = yield http("GET", entry.http + "/api/rooms/hall")
    assert (code, shown["players"], shown["node"]) == (200, 1, home.node_id)
    # DELETE through any node reaches the owner: the room ends, its player is closed
    code, gone = yield http("DELETE", minter.http + "/api/rooms/hall")
    assert (code, gone["phase"]) == (200, "ended")
    yield client.wait_for(lambda c: c.close_code is not None)
    assert client.close_code == codes.CLOSE_ENDED
    for node in (a, b, c):
        code, body = yield http("GET", node.http + "/api/rooms/hall")
        assert (code, body["error"]) == (404, "unknown_room")
        code, listed = yield http("GET", node.http + "/api/rooms")
        assert "hall" not in {r["id"] for r in listed["rooms"]}
    assert owner(redis_server, "hall") == ""


@pytest_twisted.inlineCallbacks
def test_reconnect_with_a_token_through_another_node(cluster, redis_server):
    a, b = cluster(2)
    first = yield connect(a.ws_url, name="rita", room="again")
    home, other = (a, b) if first.url == a.ws_url else (b, a)
    pid, token = first.you, first.token
    first.drop()                              # the TCP connection dies; the grace begins
    yield first.wait_for(lambda c: c.close_code is not None)
    back = yield connect(other.ws_url, room="again", token=token)
    assert back.url == home.ws_url and back.redirects
    assert back.you == pid                    # the same player, resumed on its node
    back.close()


# -- failures --------------------------------------------------------------------------------
@pytest_twisted.inlineCallbacks
def test_a_node_killed_loses_its_rooms_and_its_claims_expire(cluster, redis_server):
    a, b = cluster(2)
    # a room on b: put one on a first, so that b has fewer and gets the next
    keep = yield connect(a.ws_url, name="k", room="on-a")
    assert keep.url == a.ws_url
    victim = yield connect(a.ws_url, name="v", room="doomed")
    assert victim.url == b.ws_url
    token = victim.token
    b.kill()
    killed = time.monotonic()
    yield victim.wait_for(lambda c: c.close_code is not None)

    # until its claim expires, a hello for the room gets a clear error and never hangs:
    # for the first heartbeats a redirect to the dead node (which the client cannot
    # reach: ConnectionError), then, once a has seen b stop, unavailable
    @defer.inlineCallbacks
    def attempt():
        try:
            code, close = yield refused(a.ws_url, "doomed")
        except ConnectionError as e:
            assert "redirected there by %s" % a.ws_url in str(e)
            return None
        return code, close
    outcome = yield until(attempt, timeout=6, what="a sees b stop")
    assert outcome == (codes.UNAVAILABLE, codes.CLOSE_TRY_AGAIN)
    yield until(lambda: owner(redis_server, "doomed") == "", timeout=12,
                what="the dead node's claim expires")
    expired_after = time.monotonic() - killed
    assert expired_after <= 10.5, expired_after
    # its clients coming back: with their token, a clear error (the room is gone) ...
    code, close = yield refused(a.ws_url, "doomed", token=token)
    assert (code, close) == (codes.BAD_TOKEN, codes.CLOSE_BAD_TOKEN)
    # ... by name, a fresh room on a live node
    fresh = yield connect(a.ws_url, name="v", room="doomed")
    assert fresh.url == a.ws_url and fresh.you != victim.you
    # the dead node is no longer listed
    code, listed = yield http("GET", a.http + "/api/rooms")
    assert {r["node"] for r in listed["rooms"]} == {a.node_id}
    for c in (keep, fresh):
        c.close()


@pytest_twisted.inlineCallbacks
def test_redis_stopped_mid_game_and_restarted_empty(cluster, redis_server):
    a, b = cluster(2)
    player, home, other = yield player_in_room((a, b), "match")
    redis_server.stop()
    # the game goes on: inputs are acked, state keeps coming
    for _ in range(5):
        seq = player.move(1, 0)
        yield player.wait_ack(seq, timeout=2)
    # a second player joins the room the node has (no Redis needed) ...
    friend = yield connect(home.ws_url, name="f", room="match")
    yield player.wait_for(lambda c: len(c.entities("avatar")) == 2)
    # ... but a new room needs placing: a clear error, at once
    started = time.monotonic()
    code, close = yield refused(other.ws_url, "brand-new")
    assert (code, close) == (codes.UNAVAILABLE, codes.CLOSE_TRY_AGAIN)
    assert time.monotonic() - started < 5
    code, body = yield http("POST", other.http + "/api/rooms", {"id": "later"})
    assert (code, body["error"]) == (503, codes.UNAVAILABLE)
    code, listed = yield http("GET", home.http + "/api/rooms")
    assert (code, listed["complete"]) == (200, False)
    assert "match" in {r["id"] for r in listed["rooms"]}
    # Redis comes back empty: both nodes register again by themselves, the owner takes
    # its room's claim back, and new rooms are placed again
    redis_server.start()
    yield until(lambda: redis_server.cli("SCARD", "arbiter:nodes") == "2", timeout=10,
                what="both nodes registered again")
    yield until(lambda: owner(redis_server, "match") == home.node_id, timeout=5,
                what="the claim is back")
    late = yield connect(other.ws_url, name="late", room="match")
    assert late.url == home.ws_url                  # routed to the room, not a twin
    yield player.wait_for(lambda c: len(c.entities("avatar")) == 3)
    new = yield connect(other.ws_url, name="n", room="brand-new")
    assert new.url in (a.ws_url, b.ws_url)
    for c in (player, friend, late, new):
        c.close()


@pytest_twisted.inlineCallbacks
def test_a_slow_redis_never_blocks_a_tick(cluster, redis_server):
    a, b = cluster(2)
    player, home, other = yield player_in_room((a, b), "steady")
    arrivals = []
    player.on_message = lambda msg: arrivals.append(time.monotonic())
    # Redis answers nothing for 3 s: its process is stopped (SIGSTOP), connections stay up
    os.kill(redis_server.pid, signal.SIGSTOP)
    began = time.monotonic()
    try:
        # a placement meanwhile gives up after its deadline (2 s) with a clear error ...
        placing = refused(other.ws_url, "needs-redis")
        # ... while the room's inputs keep being acked at the tick rate
        while time.monotonic() - began < 2.5:
            seq = player.move(1, 0)
            yield player.wait_ack(seq, timeout=1)
        code, close = yield placing
        assert (code, close) == (codes.UNAVAILABLE, codes.CLOSE_TRY_AGAIN)
    finally:
        os.kill(redis_server.pid, signal.SIGCONT)
    during = [t for t in arrivals if began <= t <= began + 2.5]
    gaps = [y - x for x, y in zip(during, during[1:])]
    # 20 state ticks a second: no pause anywhere near Redis's
    assert len(during) >= 30 and max(gaps) < 0.5, (len(during), max(gaps))
    # Redis is back: the nodes place rooms again
    yield until(lambda: redis_server.cli("SCARD", "arbiter:nodes") == "2", what="registered")
    again = yield until(lambda: connect(other.ws_url, name="n", room="needs-redis")
                        .addErrback(lambda f: None), timeout=10, what="placement works again")
    player.close()
    again.close()


@pytest_twisted.inlineCallbacks
def test_a_node_that_lost_its_claim_gives_its_copy_up(cluster, redis_server):
    a, b = cluster(2)
    player, home, other = yield player_in_room((a, b), "twin")
    # another node holds the claim now (as after Redis restarted empty and the other
    # node placed the name first): the claim decides, the home node's copy goes
    redis_server.cli("SET", "arbiter:room:twin", other.node_id, "PX", "10000")
    yield player.wait_for(lambda c: c.close_code is not None, timeout=10)
    assert player.close_code == codes.CLOSE_MOVED
    assert player.moved["url"] == other.ws_url
    # one room under that name from now on: on the claim's node
    again = yield connect(home.ws_url, name="p", room="twin")
    assert again.url == other.ws_url

    @defer.inlineCallbacks
    def listed_once():
        code, listed = yield http("GET", home.http + "/api/rooms")
        return [r["node"] for r in listed["rooms"] if r["id"] == "twin"] == [other.node_id]
    yield until(listed_once, timeout=5, what="the owner's room listed, and only it")
    again.close()


@pytest_twisted.inlineCallbacks
def test_inputs_sent_right_after_a_placed_hello_are_kept_in_order(cluster, redis_server):
    (a,) = cluster(1)           # one node: the placement is asynchronous but lands here
    client = ArbiterClient()
    yield open_socket(a.ws_url, client=client)
    client.hello(name="eager", room="eager")
    # before the welcome (Redis is still being asked), two numbered inputs
    s1 = client.spawn()
    s2 = client.spawn()
    yield client.wait_ack(s2, timeout=5)
    assert not client.errors and not client.rejects, (list(client.errors), list(client.rejects))
    yield client.wait_for(lambda c: len(c.my_cubes()) == 2)
    assert s2 == s1 + 1
    client.close()


@pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager")
@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_a_v1_client_that_knows_no_redirects_gets_an_error_and_a_close(cluster, encoding):
    """An independent client (the ``websockets`` library, no Arbiter code) at the wrong
    node: the error ``moved`` with the owner's URL, then close 4005, never a hang; at the
    URL it gives, the same hello is welcomed."""
    import msgpack
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect as ws_connect

    a, b = cluster(2)

    def say_hello(url):
        ws = ws_connect(url, subprotocols=["arbiter.v1." + encoding], open_timeout=10)
        hello = {"t": "hello", "v": 1, "room": "plain", "name": "v1"}
        ws.send(json.dumps(hello) if encoding == "json" else msgpack.packb(hello))
        raw = ws.recv(timeout=10)
        msg = json.loads(raw) if encoding == "json" else msgpack.unpackb(raw)
        return ws, msg

    first, msg = say_hello(a.ws_url)
    assert msg["t"] == "welcome"                  # placed on a (it had no rooms: a tie)...
    second, msg = say_hello(b.ws_url)             # ... so b sends this one there
    assert (msg["t"], msg["code"], msg["url"]) == ("error", "moved", a.ws_url)
    assert isinstance(msg["msg"], str) and msg["msg"]
    with pytest.raises(ConnectionClosed) as closed:
        second.recv(timeout=10)
    assert closed.value.rcvd.code == codes.CLOSE_MOVED
    third, msg = say_hello(msg["url"])
    assert msg["t"] == "welcome" and msg["room"] == "plain"
    for ws in (first, third):
        ws.close()
