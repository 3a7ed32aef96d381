"""Clients follow a cluster's redirects: a node that does not own the room answers
``hello`` with the error ``moved`` (the owner's WebSocket URL) and closes with 4005.

The cluster server is not needed for that: ``Redirector`` is a tiny Autobahn server
that answers every hello so, pointing at another server (a real Arbiter server from
tests/conftest.py, or another Redirector). The JS client's cases are in
tests/js/client.test.mjs (a fake WebSocket).
"""

import json
import os
import sys

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import protocol, reactor, utils

from arbiter import codes
from protocols import wire
from protocols.client import JoinRefused, TooManyRedirects, connect

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
        self.factory.hellos.append(msg)
        target = self.factory.target
        out, binary = wire.encode({"t": "error", "code": codes.MOVED, "url": target,
                                   "msg": "room %s lives at %s" % (msg.get("room"), target)},
                                  self.encoding)
        self.sendMessage(out, binary)
        self.sendClose(code=codes.CLOSE_MOVED, reason="moved to %s" % target)


class Redirector:
    """A WebSocket server on 127.0.0.1 that answers every message (a hello) with
    ``moved`` to ``target`` and closes 4005; ``hellos`` is what it was told."""

    def __init__(self, target):
        factory = WebSocketServerFactory()
        factory.protocol = RedirectProtocol
        factory.target = target
        factory.hellos = self.hellos = []
        factory.connections = 0
        self.factory = factory
        self._port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.url = "ws://127.0.0.1:%d/ws" % self._port.getHost().port

    @property
    def connections(self):
        return self.factory.connections

    def stop(self):
        return self._port.stopListening()


@pytest.fixture
def redirector():
    """redirector(target) starts a Redirector to ``target``; all are stopped after the test."""
    started = []

    def make(target):
        r = Redirector(target)
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
