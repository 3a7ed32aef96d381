"""Clients follow a cluster's redirects: a node that does not own the room answers
``hello`` with the error ``moved`` (the owner's WebSocket URL) and closes with 4005.

The cluster server is not needed for that: ``Redirector`` is a tiny Autobahn server
that answers every hello so, pointing at another server (a real Arbiter server from
tests/conftest.py, or another Redirector). With ``welcome=True`` it welcomes every hello
instead, and ``evict()`` then tells its players ``moved`` (as a node does that gives its
copy of a room up to the room's owner). The JS client's cases are in
tests/js/client.test.mjs (a fake WebSocket).
"""

import json
import os
import sys

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import defer, protocol, reactor, utils

from arbiter import codes
from protocols import wire
from protocols.client import ArbiterClient, JoinRefused, TooManyRedirects, connect, join

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class RedirectProtocol(WebSocketServerProtocol):
    def onConnect(self, request):
        self.factory.connections += 1
        for offered in request.protocols:
            if offered in codes.SUBPROTOCOLS:
                self.encoding = offered
                return offered
        self.encoding = codes.JSON
        return None

    def onMessage(self, payload, isBinary):
        msg = wire.parse(payload, isBinary, self.encoding)
        if self.factory.welcome:
            if msg.get("t") == "hello":
                self.factory.hellos.append(msg)
                self.welcome(msg)
            return
        self.factory.hellos.append(msg)
        self.moved(self.factory.target, "room %s lives at %s")

    def send(self, msg):
        out, binary = wire.encode(msg, self.encoding)
        self.sendMessage(out, binary)

    def moved(self, target, text):
        self.send({"t": "error", "code": codes.MOVED, "url": target,
                   "msg": text % (self.room if self.factory.welcome else None, target)})
        self.sendClose(code=codes.CLOSE_MOVED, reason="moved to %s" % target)

    def welcome(self, hello):
        """Welcome the hello (a new player, its own token) and send an empty snapshot."""
        self.room = hello["room"]
        self.you = "p%d" % (len(self.factory.joined) + 1)
        self.factory.joined.append(self)
        self.send({"t": "welcome", "you": self.you, "name": hello.get("name") or "guest",
                   "room": self.room, "token": "token-of-" + self.you, "world": {"size": 40},
                   "rate": 20, "ack": 0, "tick": 7})
        self.send({"t": "snapshot", "tick": 7, "ack": 0,
                   "state": {"entities": {"1": {"kind": "avatar", "owner": self.you,
                                                "pos": [0, 0, 0]}},
                             "players": {self.you: {"name": hello.get("name")}}}})


class Redirector:
    """A WebSocket server on 127.0.0.1 that answers every message (a hello) with
    ``moved`` to ``target`` and closes 4005; ``hellos`` is what it was told.
    ``welcome=True``: it welcomes every hello instead (``joined``: those sockets),
    and ``evict(target)`` sends them ``moved`` to ``target`` and closes 4005."""

    def __init__(self, target, welcome=False):
        factory = WebSocketServerFactory()
        # Autobahn's close timer runs in one-second buckets, so it may fire at once: a
        # peer that answers the close a few milliseconds late would lose the moved in
        # the abort. The real server allows 2 s (protocols/factory.py).
        factory.setProtocolOptions(closeHandshakeTimeout=5)
        factory.protocol = RedirectProtocol
        factory.target = target
        factory.welcome = welcome
        factory.hellos = self.hellos = []
        factory.joined = self.joined = []
        factory.connections = 0
        self.factory = factory
        self._port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.url = "ws://127.0.0.1:%d/ws" % self._port.getHost().port

    @property
    def connections(self):
        return self.factory.connections

    def evict(self, target):
        """Give the rooms up: every joined socket gets ``moved`` to ``target``, then 4005."""
        for proto in self.joined:
            proto.moved(target, "room %s now lives on another node; join it at %s")

    def stop(self):
        return self._port.stopListening()


@pytest.fixture
def redirector():
    """redirector(target) starts a Redirector to ``target``; all are stopped after the test."""
    started = []

    def make(target, welcome=False):
        r = Redirector(target, welcome)
        started.append(r)
        return r

    yield make
    for r in started:
        pytest_twisted.blockon(r.stop())


@pytest.fixture
def dead_url():
    """The URL of a port that was just free on 127.0.0.1 (nothing listens there)."""
    port = reactor.listenTCP(0, protocol.Factory(), interface="127.0.0.1")
    number = port.getHost().port
    pytest_twisted.blockon(port.stopListening())
    return "ws://127.0.0.1:%d/ws" % number


def bounded(d, seconds=15):
    """No hang: a Deferred that fails after ``seconds`` if ``d`` has not fired."""
    return d.addTimeout(seconds, reactor)


# -- the Python client ------------------------------------------------------------------

@pytest.mark.parametrize("encoding", [wire.JSON, wire.MSGPACK])
@pytest_twisted.inlineCallbacks
def test_python_client_follows_moved_to_the_rooms_node(make_server, redirector, encoding):
    """connect() at a node that is not the room's: the same hello goes to the moved
    url, over the same subprotocol; the client is welcomed there, in its room, and
    the redirect is no error. A resume with the token through the redirect is the
    same player."""
    server = make_server()
    entry = redirector(server.url)
    a = yield bounded(connect(entry.url, name="ada", room="r-7", encoding=encoding,
                              sync="intent"))
    assert entry.hellos == [{"t": "hello", "v": 1, "room": "r-7", "name": "ada",
                             "sync": "intent"}]
    assert a.url == server.url and a.encoding == encoding
    assert a.room == "r-7" and a.joined and a.you
    room = server.service.rooms.get("r-7")
    assert room is not None and a.you in room.players
    assert [(r["from"], r["url"]) for r in a.redirects] == [(entry.url, server.url)]
    assert not a.errors and all(m.get("t") != "error" for m in a.messages)
    assert a.moved is None and a.close_code is None
    seq = a.spawn(at=[1, 1])
    yield a.wait_ack(seq)
    assert len(a.my_cubes()) == 1

    yield a.drop()
    b = yield bounded(connect(entry.url, room="r-7", token=a.token, encoding=encoding))
    assert entry.hellos[-1] == {"t": "hello", "v": 1, "room": "r-7", "token": a.token}
    assert b.url == server.url and b.you == a.you and len(b.my_cubes()) == 1
    yield b.close()


@pytest_twisted.inlineCallbacks
def test_python_client_follows_three_redirects_and_no_fourth(make_server, redirector):
    """A chain of three redirects joins; a chain of four fails with TooManyRedirects
    (a JoinRefused, code moved, "too many redirects") at once, never reaching the server."""
    server = make_server()
    chain = [server.url]
    for _ in range(4):
        chain.insert(0, redirector(chain[0]).url)   # chain[0] -> chain[1] -> ... -> server

    c = yield bounded(connect(chain[1], name="three", room="far"))
    assert c.url == server.url and c.room == "far"
    assert [r["url"] for r in c.redirects] == chain[2:]
    yield c.close()

    server_rooms = len(server.service.rooms)
    with pytest.raises(TooManyRedirects) as info:
        yield bounded(connect(chain[0], name="four", room="farther"))
    e = info.value
    assert isinstance(e, JoinRefused) and e.code == codes.MOVED
    assert "too many redirects" in str(e) and chain[4] in str(e)
    assert [r["url"] for r in e.client.redirects] == chain[1:4]
    assert e.client.url == chain[3]                   # where the fourth moved came from
    assert len(server.service.rooms) == server_rooms and server.service.rooms.get("farther") is None
    yield bounded(e.client.closed)                    # the 4005 close, not a hang
    assert e.client.close_code == codes.CLOSE_MOVED


@pytest_twisted.inlineCallbacks
def test_python_client_redirected_to_a_dead_port_fails_clearly(redirector, dead_url):
    """moved to a URL where nothing listens: a ConnectionError naming that URL and the
    node that sent it there, not a hang."""
    dead = dead_url
    entry = redirector(dead)
    with pytest.raises(ConnectionError) as info:
        yield bounded(connect(entry.url, name="ada", room="r1"))
    text = str(info.value)
    assert "cannot connect to %s" % dead in text and entry.url in text
    assert len(entry.hellos) == 1


@pytest_twisted.inlineCallbacks
def test_python_client_refuses_a_moved_without_a_ws_url(redirector):
    """A moved whose url is not ws:// or wss:// is a JoinRefused, not a connection anywhere."""
    entry = redirector("http://127.0.0.1:1/")
    with pytest.raises(JoinRefused) as info:
        yield bounded(connect(entry.url, room="r1"))
    assert info.value.code == codes.MOVED and "ws://" in str(info.value)


# -- the Python client: a moved after the join ------------------------------------------

def evicting_node(redirector):
    """A node that welcomes every hello and, on evict(url), moves its players to url."""
    return redirector(None, welcome=True)


@defer.inlineCallbacks
def followed(client):
    """Wait for the moved to come and the client's rejoin to be over; fires with it."""
    yield bounded(client.wait_for(lambda c: c.following is not None))
    result = yield bounded(client.following)
    return result


@pytest.mark.parametrize("encoding", [wire.JSON, wire.MSGPACK])
@pytest_twisted.inlineCallbacks
def test_follow_moved_rejoins_the_room_at_its_node_as_a_new_player(make_server, redirector,
                                                                   encoding):
    """follow_moved=True: welcomed by a node that then gives the room up (moved + 4005),
    the client says a plain hello (its name, no token) at the moved url over the same
    subprotocol, is a new player of the room there, and plays; waiters made before the
    move keep waiting through it and fire there; the moved is in redirects, no error."""
    server = make_server()
    node = evicting_node(redirector)
    c = yield bounded(connect(node.url, name="ada", room="r-9", encoding=encoding,
                              follow_moved=True, sync="intent"))
    assert c.url == node.url and c.you == "p1" and c.token == "token-of-p1"
    assert c.follow_moved and c.following is None and c.entities("avatar")
    there = c.wait_for(lambda c: c.joined and c.url == server.url)

    node.evict(server.url)
    yield followed(c)
    assert c.follow_error is None and c.url == server.url and c.joined
    assert c.encoding == encoding and c.room == "r-9" and c.name == "ada"
    room = server.service.rooms.get("r-9")
    assert room is not None and c.you in room.players and c.you != "p1"
    assert room.players[c.you].name == "ada"
    assert c.token and c.token != "token-of-p1"       # a new player, welcomed without one
    assert there.called
    moved = c.redirects[-1]
    assert (moved["from"], moved["url"], moved["player"]) == (node.url, server.url, "p1")
    assert moved["code"] == codes.MOVED and len(c.redirects) == 1
    assert c.moved is None and c.close_code is None and not c.errors
    assert c.entities("avatar", c.you)               # the mirror is the new room's
    assert all(e.get("owner") != "p1" for e in c.state["entities"].values())
    seq = c.spawn(at=[2, 2])
    assert seq == 1                                   # a new player numbers from 1 again
    yield bounded(c.wait_ack(seq))
    assert len(c.my_cubes()) == 1
    assert len(node.hellos) == 1                      # the old node was not asked again
    yield c.close()


@pytest_twisted.inlineCallbacks
def test_without_follow_moved_the_client_records_moved_and_rejoin_follows_it(make_server,
                                                                               redirector):
    """By default a moved after the join is recorded (client.moved) and the socket closes
    4005, as before; client.rejoin() then joins the room at its url as a new player."""
    server = make_server()
    node = evicting_node(redirector)
    c = yield bounded(connect(node.url, name="bob", room="r-10"))
    assert not c.follow_moved
    node.evict(server.url)
    code, _ = yield bounded(c.closed)
    assert code == codes.CLOSE_MOVED and c.close_code == codes.CLOSE_MOVED
    assert c.moved["url"] == server.url and c.following is None and not c.errors
    assert server.service.rooms.get("r-10") is None   # nobody went there by itself

    joined = yield bounded(c.rejoin())
    assert joined is c and c.url == server.url and c.joined and c.close_code is None
    assert server.service.rooms.get("r-10").players[c.you].name == "bob"
    assert [(r["from"], r["player"]) for r in c.redirects] == [(node.url, "p1")]
    yield c.close()


@pytest_twisted.inlineCallbacks
def test_rejoin_follows_redirects_from_the_moved_url_counting_the_moved(make_server,
                                                                       redirector):
    """The moved url may redirect again: followed, the moved being the first of at most
    MAX_REDIRECTS (3) in a row; one redirect more is TooManyRedirects."""
    server = make_server()
    hop2 = redirector(server.url)
    hop1 = redirector(hop2.url)
    node = evicting_node(redirector)
    c = yield bounded(connect(node.url, name="cy", room="r-11", follow_moved=True))
    node.evict(hop1.url)                              # moved, then hop1, then hop2: three
    yield followed(c)
    assert c.follow_error is None and c.url == server.url
    assert [r["url"] for r in c.redirects] == [hop1.url, hop2.url, server.url]
    yield c.close()

    hop0 = redirector(hop1.url)                      # one more: four in a row
    d = evicting_node(redirector)
    c = yield bounded(connect(d.url, name="dee", room="r-12"))
    d.evict(hop0.url)
    yield bounded(c.closed)
    with pytest.raises(TooManyRedirects):
        yield bounded(c.rejoin())
    assert server.service.rooms.get("r-12") is None


@pytest_twisted.inlineCallbacks
def test_follow_moved_to_a_dead_node_closes_the_client_and_says_why(redirector, dead_url):
    """follow_moved to a url where nothing listens: the client ends closed (4005, a reason
    naming the url), follow_error is the ConnectionError, waiters fail instead of hanging."""
    node = evicting_node(redirector)
    c = yield bounded(connect(node.url, name="eve", room="r-13", follow_moved=True))
    waiting = c.wait_for(lambda c: len(c.my_cubes()) > 0)
    node.evict(dead_url)
    done = yield followed(c)
    assert done is c and not c.joined
    assert isinstance(c.follow_error, ConnectionError) and dead_url in str(c.follow_error)
    assert c.close_code == codes.CLOSE_MOVED and dead_url in c.close_reason
    code, reason = yield bounded(c.closed)
    assert code == codes.CLOSE_MOVED and reason == c.close_reason
    with pytest.raises(ConnectionError):
        yield bounded(waiting)


@pytest_twisted.inlineCallbacks
def test_rejoin_needs_a_join_and_a_url(redirector):
    """rejoin() on a client that never joined, or without a moved or a url, fails plainly;
    a moved without a ws url is a JoinRefused."""
    with pytest.raises(ValueError, match="never joined"):
        yield ArbiterClient().rejoin()
    node = evicting_node(redirector)
    c = yield bounded(connect(node.url, name="fay", room="r-14"))
    with pytest.raises(ValueError, match="needs a moved"):
        yield c.rejoin()
    node.evict("http://127.0.0.1:1/")
    yield bounded(c.closed)
    with pytest.raises(JoinRefused, match="ws://"):
        yield c.rejoin()


@pytest_twisted.inlineCallbacks
def test_a_real_eviction_moves_followers_to_the_owner(make_server):
    """Two real servers; the first gives its copy of a room up to the second
    (Service.evict, what a node does when another holds the room's claim): a
    follow_moved client lands in the second's room as a new player, next to a player
    already there, and both see each other; a client without it is closed 4005."""
    first, owner = make_server(), make_server()
    follower = yield bounded(connect(first.url, name="gus", room="twin", follow_moved=True))
    stayer = yield bounded(connect(first.url, name="hal", room="twin"))
    resident = yield bounded(connect(owner.url, name="ida", room="twin"))
    old_you = follower.you
    first.service.evict(first.service.rooms.get("twin"), owner.url)
    yield followed(follower)
    code, _ = yield bounded(stayer.closed)
    assert code == codes.CLOSE_MOVED and stayer.moved["url"] == owner.url
    assert follower.follow_error is None and follower.url == owner.url
    assert follower.redirects[-1]["player"] == old_you
    room = owner.service.rooms.get("twin")
    assert set(room.players) == {resident.you, follower.you}
    for c in (follower, resident):
        yield bounded(c.wait_for(lambda c: len(c.entities("avatar")) == 2))
    yield defer.gatherResults([follower.close(), resident.close()])


@pytest_twisted.inlineCallbacks
def test_join_after_an_error_waits_for_the_answer_to_its_own_hello(make_server):
    """join() on a client that already holds errors (a rejoin after a session with a
    refusal) waits for its own hello's answer, not an old error."""
    server = make_server()
    c = ArbiterClient()
    c.errors.append({"t": "error", "code": "rate_limited", "msg": "an old one"})
    yield bounded(join(c, server.url, {"name": "jo", "room": "r-15"}))
    assert c.joined and c.you
    yield c.close()


# -- the load generator -------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["json", "msgpack"])
@pytest_twisted.inlineCallbacks
def test_loadtest_bots_follow_moved(make_server, redirector, encoding):
    """arbiter-loadtest pointed at a node that owns no room: every bot follows moved and
    is welcomed by the real server (``nodes``), plays there, and counts no error."""
    server = make_server()
    entry = redirector(server.url)
    out, err, code = yield bounded(utils.getProcessOutputAndValue(
        sys.executable,
        ["-m", "arbiter.tools.loadtest", "--url", entry.url, "-n", "4", "-r", "2",
         "--encoding", encoding, "--warmup", "0.5", "--duration", "1", "--grace", "0.2",
         "--join-timeout", "10", "-q"],
        env=os.environ, path=ROOT), 60)
    assert code == 0, err.decode()
    r = json.loads(out.decode().strip().splitlines()[-1])
    assert r["connected"] == 4 and r["failed"] == 0 and r["dropped"] == 0
    assert r["redirects"] == 4
    assert r["nodes"] == {server.url: 4}
    assert r["rooms"] == 2 and r["errors"] == {} and r["rejects"] == {}
    assert r["acks"] > 0
    assert sorted((h["room"], h["name"]) for h in entry.hellos) == [
        ("cubes-0", "bot-0"), ("cubes-0", "bot-1"), ("cubes-1", "bot-2"), ("cubes-1", "bot-3")]


@pytest_twisted.inlineCallbacks
def test_loadtest_reports_a_redirect_loop(redirector):
    """Two nodes sending each other's URL: the bots give up ("too many redirects"), and the
    run ends with that message and status 1."""
    a = redirector(None)
    b = redirector(a.url)
    a.factory.target = b.url
    out, err, code = yield bounded(utils.getProcessOutputAndValue(
        sys.executable,
        ["-m", "arbiter.tools.loadtest", "--url", a.url, "-n", "2", "--warmup", "0",
         "--duration", "1", "--join-timeout", "10", "-q"],
        env=os.environ, path=ROOT), 60)
    assert code == 1 and out == b""
    assert "no bot joined" in err.decode() and "too many redirects" in err.decode()
    assert a.connections + b.connections == 2 * 4       # four hellos per bot, no more
