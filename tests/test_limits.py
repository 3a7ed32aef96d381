"""Bounded per-connection resources and timeouts (docs/EXTENSIONS.md, "Slow and hostile
clients"): one output limit for everything queued, ping rate limits, the HTTP handshake
deadline, the hello deadline and the per-address connection cap.

Unit tests drive a real PlayerProtocol through FakeClient on a task.Clock; the
tests that need a kernel (the pong flood, HTTP timers, the per-address cap) use
real sockets on 127.0.0.1.
"""

import base64
import json
import os
import time

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from protocols.client import connect, open_socket
from protocols.framing import FrameReader, frame
from arbiter.config import Config, World
from test_protocol import Harness

PING = 0x9
PONG = 0xA


@pytest.fixture
def harness(txaio_clock):
    made = []

    def make(**config):
        h = Harness(Config(port=0, **config))
        made.append(h)
        return h

    yield make
    for h in made:
        h.service.stopService()


def pongs(frames):
    return [p for op, p in frames if op == PONG]


def messages(frames, t):
    return [m for op, p in frames if op == 1 for m in [json.loads(p)] if m["t"] == t]


# -- the output limit counts everything (unit) -----------------------------------------------

def test_websocket_pongs_count_toward_the_output_limit(harness):
    """A client that sends WebSocket pings and never reads is cut off past the output limit."""
    h = harness(send_buffer_limit=4000, ping_burst=1000)
    a, b = h.join("A"), h.join("B")
    b.received()
    a.proto.pauseProducing()                 # its socket is full
    for i in range(100):                     # 100 pongs of 127 bytes: 12.7 kB
        a.send_frame(b"%03d" % i + b"x" * 122, PING)
    assert a.transport.disconnecting
    a.lose()
    h.tick()
    assert b.received()[-1]["patch"]["players"][a.you]["connected"] is False


def test_application_pongs_count_toward_the_output_limit(harness):
    """A client that sends application pings and never reads is cut off past the output limit."""
    h = harness(send_buffer_limit=4000, ping_burst=1000)
    a = h.join("A")
    a.proto.pauseProducing()
    for i in range(200):                     # 200 pongs of about 50 bytes: 10 kB
        a.send({"t": "ping", "ts": i})
    assert a.transport.disconnecting


def test_output_limit_holds_while_the_transport_keeps_saying_full(harness):
    """Twisted repeats pauseProducing on every write to a full buffer; that does not reset the count."""
    h = harness(send_buffer_limit=4000, ping_burst=1000)
    a = h.join("A")
    a.proto.pauseProducing()
    for i in range(200):
        a.send({"t": "ping", "ts": i})
        a.proto.pauseProducing()             # what a real transport does after each write
    assert a.transport.disconnecting


def test_a_client_that_reads_is_not_cut_off(harness):
    """Pongs to a client whose buffer drains never add up to the limit."""
    h = harness(send_buffer_limit=4000, ping_burst=1000)
    a = h.join("A")
    for i in range(10):
        a.proto.pauseProducing()
        for j in range(20):
            a.send({"t": "ping", "ts": j})
        a.proto.resumeProducing()            # the buffer drained: a new count
    assert len(messages(a.frames(), "pong")) == 200
    assert a.open and not a.transport.disconnecting


# -- ping rate limit (unit) --------------------------------------------------------------------

def test_application_ping_burst_then_one_rate_limited_error(harness):
    """32 pings are answered at once; past that no pong and one rate_limited error per burst."""
    h = harness()
    a = h.join()
    a.received()
    for i in range(50):
        a.send({"t": "ping", "ts": i})
    frames = a.frames()
    assert [m["ts"] for m in messages(frames, "pong")] == list(range(32))
    (err,) = messages(frames, "error")
    assert err["code"] == "rate_limited" and "ping" in err["msg"]


def test_ping_bucket_refills_and_a_new_burst_is_told_again(harness):
    """Over the rate, pings are answered as the bucket refills (16/s); a later burst gets a new error."""
    h = harness()
    a = h.join()
    a.received()
    for i in range(40):
        a.send({"t": "ping", "ts": i})
    a.frames()
    h.clock.advance(0.25)                    # 4 tokens back
    for i in range(10):
        a.send({"t": "ping", "ts": 100 + i})
    frames = a.frames()
    assert [m["ts"] for m in messages(frames, "pong")] == [100, 101, 102, 103]
    assert messages(frames, "error") == []   # the same burst: told once already
    h.clock.advance(3.0)                     # quiet: the bucket is full again
    for i in range(40):
        a.send({"t": "ping", "ts": 200 + i})
    frames = a.frames()
    assert len(messages(frames, "pong")) == 32
    assert [e["code"] for e in messages(frames, "error")] == ["rate_limited"]


def test_websocket_pings_over_the_rate_get_no_pong(harness):
    """WebSocket pings share the bucket: past 32 at once they get no pong and no error."""
    h = harness()
    a = h.join()
    a.received()
    for i in range(40):
        a.send_frame(b"%d" % i, PING)
    frames = a.frames()
    assert pongs(frames) == [b"%d" % i for i in range(32)]
    assert messages(frames, "error") == []
    assert a.open


def test_both_kinds_of_ping_share_one_bucket(harness):
    """20 WebSocket pings and 12 application pings use up the bucket for both kinds."""
    h = harness()
    a = h.join()
    a.received()
    for i in range(20):
        a.send_frame(b"w", PING)
    for i in range(12):
        a.send({"t": "ping", "ts": i})
    a.send_frame(b"w", PING)
    a.send({"t": "ping", "ts": 99})
    frames = a.frames()
    assert len(pongs(frames)) == 20
    assert [m["ts"] for m in messages(frames, "pong")] == list(range(12))
    assert [e["code"] for e in messages(frames, "error")] == ["rate_limited"]


def test_normal_latency_probes_are_never_limited(harness):
    """A clock-sync burst of 16 of each kind, then five a second of each for a minute: all answered."""
    h = harness(ping_timeout=0)              # it never answers the server's pings (9.4)
    a = h.join()
    for i in range(16):
        a.send({"t": "ping", "ts": i})
        a.send_frame(b"p", PING)
    for i in range(300):
        h.clock.advance(0.2)
        a.send({"t": "ping", "ts": i})
        a.send_frame(b"p", PING)
    frames = a.frames()
    assert len(messages(frames, "pong")) == 316 and len(pongs(frames)) == 316
    assert messages(frames, "error") == []


# -- hello deadline (unit) --------------------------------------------------------------------

def test_no_hello_within_ten_seconds_closes_1008(harness):
    """A WebSocket that says nothing for 10 s is closed with 1008 and a reason naming hello."""
    h = harness()
    a = h.client()
    h.clock.advance(9.9)
    a.received()
    assert a.open
    h.clock.advance(0.2)
    a.received()
    assert a.close_code == 1008 and "hello" in a.close_reason


def test_refused_hello_does_not_stop_the_hello_deadline(harness):
    """Only a valid hello counts: a bad hello is answered, and the connection still closes at 10 s."""
    h = harness()
    a = h.client()
    a.send({"t": "hello", "v": 2})
    assert messages(a.frames(), "error")[0]["code"] == "bad_message"
    h.clock.advance(10.1)
    a.received()
    assert a.close_code == 1008


def test_joined_player_is_not_closed_by_the_hello_deadline(harness):
    """A player that said hello in time stays connected past 10 s."""
    h = harness(ping_timeout=0)              # 60 s in one step: no pong could come (9.4)
    a = h.join()
    h.clock.advance(9.0)
    a.received()
    h.clock.advance(60.0)
    a.received()
    assert a.open


# -- real sockets ------------------------------------------------------------------------------

class Raw(protocol.Protocol):
    """A TCP client that records what it receives and when the connection ends."""

    def __init__(self):
        self.data = b""
        self.lost = defer.Deferred()
        self._waiters = []

    def dataReceived(self, data):
        self.data += data
        for pred, d in list(self._waiters):
            if pred(self.data):
                self._waiters.remove((pred, d))
                d.callback(self.data)

    def connectionLost(self, reason):
        self.reason = reason.value
        self.lost.callback(None)
        for _, d in self._waiters:
            d.errback(AssertionError("connection lost while waiting; got %r" % self.data[:200]))
        self._waiters = []

    def wait(self, pred, timeout=10.0):
        d = defer.Deferred()
        if pred(self.data):
            d.callback(self.data)
            return d
        self._waiters.append((pred, d))
        return d.addTimeout(timeout, reactor)


def raw(server):
    return connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", server.port), Raw())


def lost_within(conn, seconds):
    """A Deferred that fires when ``conn`` is closed, and fails after ``seconds``."""
    d = defer.Deferred()
    conn.lost.addBoth(lambda r: d.called or d.callback(r))
    return d.addTimeout(seconds, reactor)


def masked(payload, opcode):
    return frame(payload, opcode, os.urandom(4))


def server_messages(data):
    """The text messages in the server's frames after the HTTP response in ``data``."""
    frames = FrameReader().read(data.partition(b"\r\n\r\n")[2])
    return [json.loads(payload) for _, opcode, payload in frames if opcode == 1]


UPGRADE = ("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Protocol: arbiter.v1.json\r\n\r\n")


def user_space_peak(transport):
    """Record the most bytes the server's transport ever held in user space."""
    peak = [0]
    write = transport.write

    def recording_write(data):
        write(data)
        held = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
        if held > peak[0]:
            peak[0] = held

    transport.write = recording_write
    return peak


@pytest.mark.parametrize("kind", ["websocket", "application"])
@pytest_twisted.inlineCallbacks
def test_ping_flood_from_a_non_reader_is_cut_off(make_server, kind):
    """A non-reader flooding pings is cut off within the output limit; others miss no tick; it can resume."""
    # rate limit off, so that the output limit alone is tested
    config = Config(port=0, world=World(size=100), ping_burst=10 ** 9, ping_rate=10.0 ** 9)
    server = make_server(config)
    honest = yield connect(server.url, name="honest", room="r")
    seq = honest.spawn(at=[-45, 0])
    yield honest.wait_ack(seq)
    (cube,) = honest.my_cubes()
    honest.order([cube], [45, 0])                      # 18 s of motion: a delta every tick
    ticks = []
    honest.on_message = lambda m: m["t"] == "delta" and ticks.append(m["tick"])

    flooder = yield raw(server)
    flooder.transport.write((UPGRADE % base64.b64encode(os.urandom(16)).decode()).encode())
    yield flooder.wait(lambda d: b"\r\n\r\n" in d)
    flooder.transport.write(masked(b'{"t":"hello","v":1,"room":"r","name":"flood"}', 1))
    yield flooder.wait(lambda d: any(m["t"] == "snapshot" for m in server_messages(d)))
    welcome = server_messages(flooder.data)[0]
    you, token = welcome["you"], welcome["token"]
    yield honest.wait_for(lambda c: you in c.state["players"])
    peak = user_space_peak(server.factory.players[you].transport)

    flooder.transport.pauseProducing()                 # it never reads again
    frame = masked(b"x" * 125, PING) if kind == "websocket" else masked(b'{"t":"ping","ts":1}', 1)
    batch = frame * 200
    sent = [0]

    def flood():
        if sent[0] < 200_000 and not flooder.lost.called:
            flooder.transport.write(batch)
            sent[0] += 200

    pump = task.LoopingCall(flood)
    pump.start(0.002)
    start = ticks[-1] if ticks else honest.tick
    try:
        yield lost_within(flooder, 60)
    finally:
        pump.stop()
    assert sent[0] < 200_000, "never cut off"
    assert peak[0] <= config.send_buffer_limit

    yield honest.wait_for(lambda c: c.state["players"][you]["connected"] is False)
    later = honest.tick + 5
    yield honest.wait_for(lambda c: c.tick >= later)
    seen = [t for t in ticks if t > start]
    assert seen == list(range(start + 1, start + 1 + len(seen))), "honest missed a state tick"

    back = yield connect(server.url, room="r", token=token)
    assert back.you == you
    yield honest.wait_for(lambda c: c.state["players"][you]["connected"] is True)
    yield back.close()
    yield honest.close()


@pytest_twisted.inlineCallbacks
def test_silent_tcp_connection_is_closed_after_the_handshake_timeout(make_server):
    """A TCP connection that sends no HTTP request is closed after handshake_timeout."""
    server = make_server(Config(port=0, handshake_timeout=0.5))
    started = time.monotonic()
    conn = yield raw(server)
    yield lost_within(conn, 10)
    assert time.monotonic() - started >= 0.45
    assert conn.data == b""


@pytest_twisted.inlineCallbacks
def test_dribbled_request_is_closed_at_the_handshake_deadline(make_server):
    """A request sent a byte at a time (each resetting HTTP's idle timer) is still cut at the deadline."""
    server = make_server(Config(port=0, handshake_timeout=0.5))
    conn = yield raw(server)
    conn.transport.write(b"GET /ws HTTP/1.1\r\n")
    drip = task.LoopingCall(lambda: conn.transport.write(b"X"))
    drip.start(0.05)
    try:
        yield lost_within(conn, 10)
    finally:
        drip.stop()
    assert conn.data == b""


@pytest_twisted.inlineCallbacks
def test_keep_alive_connection_outlives_the_handshake_deadline(make_server):
    """After its first request a connection gets HTTP's idle timeout, not the handshake deadline."""
    server = make_server(Config(port=0, handshake_timeout=0.3, http_timeout=1.5))
    conn = yield raw(server)
    request = b"GET /no-such-page HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    conn.transport.write(request)
    yield conn.wait(lambda d: d.count(b"HTTP/1.1 404") == 1)
    yield task.deferLater(reactor, 0.6, lambda: None)          # past the handshake deadline
    conn.transport.write(request)
    yield conn.wait(lambda d: d.count(b"HTTP/1.1 404") == 2)
    yield lost_within(conn, 10)                                 # the idle timeout closes it


@pytest_twisted.inlineCallbacks
def test_websocket_outlives_the_http_timeouts(make_server):
    """A WebSocket open longer than the handshake deadline and HTTP's idle timeout still works."""
    server = make_server(Config(port=0, handshake_timeout=0.3, http_timeout=0.5))
    c = yield connect(server.url, name="A")
    yield task.deferLater(reactor, 1.5, lambda: None)          # past both HTTP timers
    c.ping(7)
    pong = yield c.wait_message("pong")
    assert pong["ts"] == 7 and c.close_code is None
    yield c.close()


@pytest_twisted.inlineCallbacks
def test_websocket_without_hello_closes_1008(make_server):
    """Over a real socket, a WebSocket that never says hello is closed with 1008."""
    server = make_server(Config(port=0, hello_timeout=0.5))
    c = yield open_socket(server.url)
    code, reason = yield c.closed.addTimeout(10, reactor)
    assert code == 1008 and "hello" in reason


@pytest_twisted.inlineCallbacks
def test_connections_over_the_per_address_cap_are_closed_at_once(make_server):
    """With max_connections_per_ip 2, a third connection is closed before any HTTP; a freed slot is reused."""
    server = make_server(Config(port=0, max_connections_per_ip=2))
    first = yield raw(server)
    second = yield raw(server)
    third = yield raw(server)
    third.transport.write(b"GET /no-such-page HTTP/1.1\r\nHost: x\r\n\r\n")
    yield lost_within(third, 5)
    assert third.data == b""
    first.transport.write(b"GET /no-such-page HTTP/1.0\r\n\r\n")    # served, then closed
    yield lost_within(first, 5)
    fourth = yield raw(server)
    fourth.transport.write(b"GET /no-such-page HTTP/1.0\r\n\r\n")
    yield lost_within(fourth, 5)
    assert fourth.data.split(b" ")[1] == b"404"
    second.transport.loseConnection()
    yield second.lost


@pytest_twisted.inlineCallbacks
def test_per_address_cap_counts_websockets_after_the_takeover(make_server):
    """WebSockets count toward the cap while open and free their slot when closed."""
    server = make_server(Config(port=0, max_connections_per_ip=2))
    for _ in range(2):                       # twice: slots come back after closing
        a = yield connect(server.url, name="A")
        b = yield connect(server.url, name="B")
        with pytest.raises(ConnectionError):
            yield open_socket(server.url)
        yield a.close()
        yield b.close()
    c = yield connect(server.url, name="C")
    yield c.close()


def test_daemon_options_for_limits_reach_the_config():
    """--max-connections-per-ip and --handshake-timeout land in Config; the defaults match Config's."""
    from arbiter.app.tap import Options
    o = Options()
    o.parseOptions(["--max-connections-per-ip", "8", "--handshake-timeout", "2.5"])
    c = o.config()
    assert (c.max_connections_per_ip, c.handshake_timeout) == (8, 2.5)
    o = Options()
    o.parseOptions([])
    c = o.config()
    assert (c.max_connections_per_ip, c.handshake_timeout) == (
        Config.max_connections_per_ip, Config.handshake_timeout)
