"""The ping timeout (PROTOCOL.md 9.4, close 4008): a joined connection that leaves the
server's WebSocket pings unanswered for ``Config.ping_timeout`` seconds is closed with
4008 "ping timeout", its TCP connection is aborted 1 s later if it does not answer the
close, and its player keeps its grace period like any dropped player.

Unit tests drive real PlayerProtocols through FakeClient on a task.Clock: a FakeClient
answers the server's pings when the test calls ``received()``, and stays silent while
the test reads with ``frames()``. One integration test uses a real socket on 127.0.0.1.
"""

import base64
import json
import os
import struct

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from arbiter import codes
from arbiter.app.testing import InMemoryServer
from arbiter.config import Config
from protocols.client import connect
from protocols.framing import FrameReader, frame

CLOSE = 0x8
PING = 0x9
PONG = 0xA


@pytest.fixture
def server(txaio_clock):
    made = []

    def make(**config):
        s = InMemoryServer(Config(port=0, **config))
        made.append(s)
        return s

    yield make
    for s in made:
        s.service.stopService()


def of(msgs, t, **fields):
    return [m for m in msgs if m["t"] == t and all(m.get(k) == v for k, v in fields.items())]


def close_frames(frames):
    """(code, reason) of the close frames among ``frames`` ((opcode, payload) pairs)."""
    return [(struct.unpack("!H", p[:2])[0], p[2:].decode("utf-8")) for op, p in frames
            if op == CLOSE]


def run(s, seconds, step, answer=(), silent=()):
    """Advance ``s.clock`` by ``seconds`` in steps of ``step``: after each step the
    clients in ``answer`` read and answer pings (``received()``), those in ``silent``
    read without answering. Returns {client: [what it got]} (messages for ``answer``,
    frames for ``silent``)."""
    got = {c: [] for c in list(answer) + list(silent)}
    n = int(round(seconds / step))
    for _ in range(n):
        s.clock.advance(step)
        for c in answer:
            got[c] += c.received()
        for c in silent:
            got[c] += c.frames()
    return got


def count_disconnects(s):
    """Wrap the room's disconnect to count the calls per player id."""
    room = s.service.rooms.get("main")
    calls = []
    original = room.disconnect

    def disconnect(player, *args, **kwargs):
        calls.append(player.id)
        return original(player, *args, **kwargs)

    room.disconnect = disconnect
    return room, calls


# -- the ping interval ---------------------------------------------------------------------

def test_joined_players_are_pinged_every_second_by_default(server):
    """With the default ping_timeout (15 s) the server pings every second, as before."""
    s = server()
    assert s.factory.ping_interval == 1.0
    a = s.join("A")
    got = run(s, 10.0, 0.25, silent=[a])
    assert len([p for op, p in got[a] if op == PING]) == 10


def test_short_timeout_pings_every_third_of_it(server):
    """With ping_timeout 1.5 the pings come every 0.5 s (min(1, 5, ping_timeout / 3))."""
    s = server(ping_timeout=1.5)
    assert s.factory.ping_interval == 0.5
    a = s.join("A")
    got = run(s, 1.0, 0.125, silent=[a])
    assert len([p for op, p in got[a] if op == PING]) == 2


def test_connection_without_hello_is_not_pinged_nor_timed_out(server):
    """Before hello only the hello deadline applies: no pings, no 4008."""
    s = server(ping_timeout=1.5, hello_timeout=60.0)
    b = s.join("B")                              # keeps the ping loop running
    c = s.client()
    got = run(s, 10.0, 0.5, answer=[b], silent=[c])
    assert got[c] == [] and c.open


# -- a player that answers stays ------------------------------------------------------------

def test_player_that_answers_pings_stays(server):
    """A player that answers every ping stays connected far past ping_timeout."""
    s = server(ping_timeout=3.0)
    a, b = s.join("A"), s.join("B")
    got = run(s, 30.0, 0.5, answer=[a, b])
    assert a.open and b.open and a.pongs >= 29
    assert of(got[b], "event") == []
    assert s.service.rooms.get("main").players[a.you].connected


def test_unsolicited_pongs_count(server):
    """Any pong counts: a client sending a pong every second, never reading, stays."""
    s = server(ping_timeout=3.0)
    a = s.join("A")
    for _ in range(20):
        s.clock.advance(1.0)
        a.send_frame(b"heartbeat", PONG)
    assert close_frames(a.frames()) == [] and not a.transport.disconnecting


# -- a player that stops answering is closed with 4008 --------------------------------------

def test_silent_player_closed_4008_after_the_timeout_not_before(server):
    """Pongs stop at T: no close before T + ping_timeout, 4008 "ping timeout" within one
    ping interval after; the TCP connection is aborted 1 s later; the room then sees an
    ordinary disconnection, once: leave, connected false, the grace period."""
    s = server(ping_timeout=3.0, grace=30.0)
    a, b = s.join("A"), s.join("B")
    room, disconnects = count_disconnects(s)
    run(s, 5.0, 0.5, answer=[a, b])               # A answers for 5 s ...
    last_pong = a.proto.last_pong
    assert last_pong == pytest.approx(s.clock.seconds(), abs=1.0)

    frames = []                                   # ... then reads without answering
    while s.clock.seconds() + 0.05 < last_pong + 3.0:
        s.clock.advance(0.05)
        frames += a.frames()
        b.received()
    assert close_frames(frames) == [], "closed before ping_timeout"
    assert [p for op, p in frames if op == PING], "the server stopped pinging"
    assert not a.transport.disconnecting

    while not close_frames(frames) and s.clock.seconds() < last_pong + 3.0 + 1.0:
        s.clock.advance(0.05)
        frames += a.frames()
        b.received()
    assert close_frames(frames) == [(codes.CLOSE_PING_TIMEOUT, "ping timeout")]
    closed_at = s.clock.seconds()
    assert last_pong + 3.0 <= closed_at <= last_pong + 3.0 + s.factory.ping_interval + 0.05

    s.clock.advance(0.9)                          # the peer does not answer the close
    assert not a.transport.disconnected
    s.clock.advance(0.2)
    assert a.transport.disconnected               # aborted (StringTransport.abortConnection)
    assert disconnects == []                      # the room hears of it from connectionLost
    a.lose()
    s.tick()
    msgs = b.received()
    assert of(msgs, "event", kind="leave") == [{"t": "event", "kind": "leave", "player": a.you}]
    assert [d["patch"]["players"][a.you] for d in of(msgs, "delta")
            if a.you in d["patch"].get("players", {})] == [{"connected": False}]
    p = room.players[a.you]
    assert p.connected is False                   # in its grace period, still in the room

    got = run(s, 10.0, 0.5, answer=[b])           # nothing more: once, not twice
    assert disconnects == [a.you]
    assert of(got[b], "event") == []
    assert b.open


def test_player_sending_messages_but_no_pongs_is_closed(server):
    """Messages are not pongs: a client that keeps sending but never answers pings goes."""
    s = server(ping_timeout=3.0)
    a = s.join("A")
    frames = []
    for i in range(40):
        s.clock.advance(0.1)
        a.send({"t": "ping", "ts": i})
        a.send({"t": "move", "seq": i + 1, "dir": [1, 0], "dt": 50})
        frames += a.frames()
        if close_frames(frames):
            break
    assert close_frames(frames) == [(codes.CLOSE_PING_TIMEOUT, "ping timeout")]


def test_close_answered_by_the_peer_is_not_aborted(server):
    """A peer that answers the close frame ends the connection cleanly: no abort."""
    s = server(ping_timeout=1.5)
    a, b = s.join("A"), s.join("B")
    frames = run(s, 3.0, 0.25, answer=[b], silent=[a])[a]
    assert close_frames(frames) == [(codes.CLOSE_PING_TIMEOUT, "ping timeout")]
    a.send_frame(struct.pack("!H", codes.CLOSE_PING_TIMEOUT), CLOSE)   # the close answered
    assert a.transport.disconnecting           # Autobahn ends the TCP connection at once
    a.lose()
    aborts = []
    a.transport.abortConnection = lambda: aborts.append(s.clock.seconds())
    s.clock.advance(2.0)
    assert aborts == []                          # the pending abort was cancelled
    s.tick()
    assert of(b.received(), "event", kind="leave")


def test_timeout_zero_never_drops(server):
    """ping_timeout 0: a player that never answers a ping stays (the pings go on)."""
    s = server(ping_timeout=0)
    assert s.factory.ping_interval == 1.0
    a, b = s.join("A"), s.join("B")
    got = run(s, 120.0, 1.0, answer=[b], silent=[a])
    assert close_frames(got[a]) == [] and not a.transport.disconnecting
    assert len([p for op, p in got[a] if op == PING]) == 120
    assert of(got[b], "event") == []
    assert s.service.rooms.get("main").players[a.you].connected


def test_reconnect_with_token_after_a_ping_timeout(server):
    """The timed-out player resumes with its token within its grace period: same id,
    connected again, the others get join; the new connection answers and stays."""
    s = server(ping_timeout=1.5, grace=30.0)
    a, b = s.join("A"), s.join("B")
    a.send({"t": "spawn", "seq": 1, "at": [1, 1]})
    s.tick()
    a.received()
    frames = run(s, 3.0, 0.25, answer=[b], silent=[a])[a]
    assert close_frames(frames) == [(codes.CLOSE_PING_TIMEOUT, "ping timeout")]
    s.clock.advance(1.1)
    assert a.transport.disconnected
    a.lose()
    s.tick()
    assert of(b.received(), "event", kind="leave")
    run(s, 10.0, 0.5, answer=[b])                 # 10 s into the 30 s grace period

    a2 = s.client()
    msgs = a2.hello(token=a.token)
    assert msgs[0]["t"] == "welcome" and msgs[0]["you"] == a.you and msgs[0]["ack"] == 1
    assert msgs[1]["state"]["players"][a.you]["connected"] is True
    s.tick()
    got = b.received()
    assert of(got, "event", kind="join", player=a.you)
    assert any(d["patch"].get("players", {}).get(a.you, {}).get("connected") is True
               for d in of(got, "delta"))
    got = run(s, 10.0, 0.25, answer=[a2, b])
    assert a2.open and a2.close_code is None and not a2.transport.disconnecting
    assert s.service.rooms.get("main").players[a.you].connected


# -- a real socket ----------------------------------------------------------------------------

UPGRADE = ("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Protocol: arbiter.v1.json\r\n\r\n")


class SilentClient(protocol.Protocol):
    """A WebSocket client over a raw TCP socket that reads everything and never
    answers a ping (nor a close): what a hung peer looks like to the server."""

    def __init__(self):
        self.buffer = b""
        self.handshake = None
        self.reader = FrameReader()
        self.frames = []               # (opcode, payload) after the handshake
        self.lost = defer.Deferred()
        self._waiters = []

    def dataReceived(self, data):
        if self.handshake is None:
            self.buffer += data
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            self.handshake, data = head, rest
        self.frames += [(op, p) for _, op, p in self.reader.read(data)]
        self._check()

    def connectionLost(self, reason):
        self.lost.callback(None)
        self._check()

    def _check(self):
        for pred, d in list(self._waiters):
            if pred(self):
                self._waiters.remove((pred, d))
                d.callback(self)
            elif self.lost.called:
                self._waiters.remove((pred, d))
                d.errback(AssertionError("connection lost; frames: %r" % self.frames[-5:]))

    def wait(self, pred, timeout=10.0):
        d = defer.Deferred()
        if pred(self):
            d.callback(self)
            return d
        self._waiters.append((pred, d))
        return d.addTimeout(timeout, reactor)

    def messages(self):
        return [json.loads(p) for op, p in self.frames if op == 1]

    def send_text(self, payload):
        self.transport.write(frame(payload, 1, os.urandom(4)))


@pytest_twisted.inlineCallbacks
def test_silent_peer_over_a_real_socket(make_server):
    """A real client that joins and then goes silent (its socket open, pings unanswered)
    gets a close frame 4008 "ping timeout" and then loses its TCP connection; a player in
    the same room, who answers pings, stays and sees it leave with connected false."""
    server = make_server(Config(port=0, ping_timeout=1.0, grace=30.0))
    watcher = yield connect(server.url, name="watcher", room="pt")

    silent = yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", server.port),
                                   SilentClient())
    silent.transport.write((UPGRADE % base64.b64encode(os.urandom(16)).decode()).encode())
    yield silent.wait(lambda c: c.handshake is not None)
    assert silent.handshake.startswith(b"HTTP/1.1 101")
    silent.send_text(b'{"t":"hello","v":1,"room":"pt","name":"silent"}')
    yield silent.wait(lambda c: of(c.messages(), "snapshot"))
    you = silent.messages()[0]["you"]
    yield watcher.wait_for(lambda c: c.state["players"].get(you, {}).get("connected") is True)

    yield silent.wait(lambda c: close_frames(c.frames))
    assert [op for op, _ in silent.frames if op == PING], "no ping before the close"
    assert close_frames(silent.frames) == [(codes.CLOSE_PING_TIMEOUT, "ping timeout")]
    yield silent.lost.addTimeout(10, reactor)     # aborted: it never answered the close

    yield watcher.wait_for(
        lambda c: c.state["players"][you]["connected"] is False
        and any(e.get("kind") == "leave" and e.get("player") == you for e in c.events))
    assert watcher.close_code is None
    assert server.service.rooms.get("pt").players[you].connected is False   # grace period
    yield watcher.close()

