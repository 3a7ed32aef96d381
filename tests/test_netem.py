"""``arbiter-netem`` (arbiter/tools/netem.py), the delay proxy.

Unit tests drive the time with ``MemoryReactorClock`` (a task.Clock that records the
outgoing connections: the fake connector) and StringTransports on both sides. The
integration tests put the proxy, on real sockets of 127.0.0.1, between a real server and
the Python client: ping round trips, a stall seen as a gap in the state messages, and
the console script as a subprocess."""

import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading

import pytest
import pytest_twisted
from twisted.internet import error, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from arbiter.tools.netem import Link, NetemProxy, main, parser, start_netem, options_to_links

EPS = 1e-9


class Recording(StringTransport):
    """A StringTransport that notes when each chunk was written: [(time, bytes)]."""

    def __init__(self, clock):
        super().__init__()
        self.clock = clock
        self.chunks = []

    def write(self, data):
        self.chunks.append((self.clock.seconds(), data))
        super().write(data)

    def writeSequence(self, seq):
        for data in seq:
            self.write(data)


class Rig:
    """A proxy on a MemoryReactorClock with one client connection; ``connect_server()``
    completes the proxy's outgoing connection (a StringTransport too)."""

    def __init__(self, **kwargs):
        self.clock = MemoryReactorClock()
        self.proxy = NetemProxy("10.0.0.1", 8080, reactor=self.clock, **kwargs)
        self.client = self.proxy.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        self.ct = Recording(self.clock)
        self.client.makeConnection(self.ct)
        self.server = self.st = None

    def connect_server(self):
        host, port, factory, timeout, _ = self.clock.tcpClients[-1]
        assert (host, port) == ("10.0.0.1", 8080)
        self.server = factory.buildProtocol(IPv4Address("TCP", host, port))
        self.st = Recording(self.clock)
        self.server.makeConnection(self.st)
        return self

    def at(self, t):
        """Advance the clock to ``t`` s, stopping at each timer's own time on the way (a
        timer runs at the time it was set for, as on a real reactor)."""
        clock = self.clock
        assert t >= clock.seconds() - EPS
        while True:
            calls = clock.getDelayedCalls()
            due = min((c.getTime() for c in calls), default=None)
            if due is None or due > t:
                break
            clock.advance(max(0.0, due - clock.seconds()))
        clock.advance(max(0.0, t - clock.seconds()))


def rig(**kwargs):
    return Rig(**kwargs).connect_server()


# -- delay, jitter, order ----------------------------------------------------------------

def test_a_chunk_comes_out_after_exactly_the_delay():
    r = rig(up=Link(75), down=Link(75))
    r.client.dataReceived(b"hello")
    r.at(0.0749)
    assert r.st.value() == b""
    r.at(0.075)
    assert r.st.value() == b"hello"
    assert r.st.chunks[0][0] == pytest.approx(0.075)
    assert r.proxy.counts["up"].as_dict() == {
        "bytes_in": 5, "chunks_in": 1, "bytes_out": 5, "chunks_out": 1, "max_queued": 5,
        "pauses": 0}


def test_each_direction_has_its_own_settings():
    r = rig(up=Link(30), down=Link(120))
    r.client.dataReceived(b"up")
    r.server.dataReceived(b"down")
    r.at(0.0299)
    assert (r.st.value(), r.ct.value()) == (b"", b"")
    r.at(0.03)
    assert (r.st.value(), r.ct.value()) == (b"up", b"")
    r.at(0.1199)
    assert r.ct.value() == b""
    r.at(0.12)
    assert r.ct.value() == b"down"
    assert r.proxy.counts["down"].bytes_out == 4 and r.proxy.counts["up"].bytes_out == 2


def draws(seed, number, direction, link, n):
    """The delays (s) the proxy draws for the first n chunks of connection ``number``:
    uniform in [delay - jitter, delay + jitter] ms from Random("seed:number:direction")."""
    rng = random.Random("%s:%d:%s" % (seed, number, direction))
    return [link.draw(rng) for _ in range(n)]


def test_jitter_stays_in_bounds_and_keeps_the_order():
    link = Link(100, 40)
    r = rig(up=link, down=Link(0), seed=7)
    sent = []
    for i in range(300):                      # a chunk every 2 ms
        r.at(i * 0.002)
        sent.append(r.clock.seconds())
        r.client.dataReceived(b"%d," % i)
    r.at(1.0)
    assert r.st.value() == b"".join(b"%d," % i for i in range(300))     # TCP order
    released = [t for t, data in r.st.chunks for _ in data.split(b",")[:-1]]
    assert len(released) == 300
    own = draws(7, 1, "up", link, 300)
    waited = 0
    prev = -1.0
    for t_sent, t_out, d in zip(sent, released, own):
        assert 0.060 - EPS <= t_out - t_sent <= 0.140 + EPS
        assert 0.060 - EPS <= d <= 0.140 + EPS
        # released at max(its own due time, the previous chunk's release)
        assert t_out == pytest.approx(max(t_sent + d, prev), abs=1e-6)
        if t_sent + d < prev - 1e-6:
            waited += 1                        # drew a shorter delay: it waited
        prev = t_out
    assert waited > 50                         # jitter shows as bunching, not reordering
    assert len(r.st.chunks) == 300


def test_jitter_larger_than_the_delay_never_goes_negative():
    r = rig(up=Link(5, 20), down=Link(5, 20))
    for i in range(100):                       # draws in [-15, 25] ms, clamped at 0
        r.at(i * 0.01)
        r.client.dataReceived(b"x")
    r.at(2.0)
    assert r.st.value() == b"x" * 100
    times = [t for t, _ in r.st.chunks]
    assert times == sorted(times)
    assert all(-EPS <= t - i * 0.01 <= 0.025 + EPS for i, t in enumerate(times))
    assert sum(1 for i, t in enumerate(times) if abs(t - i * 0.01) < EPS) > 10   # zero delays


def test_one_timer_per_direction_at_a_time():
    r = rig(up=Link(50, 10), down=Link(80, 10))
    for i in range(100):
        r.at(i * 0.001)
        r.client.dataReceived(b"u")
        r.server.dataReceived(b"d")
        assert len(r.clock.getDelayedCalls()) <= 2
    r.at(1.0)
    assert r.st.value() == b"u" * 100 and r.ct.value() == b"d" * 100
    assert r.clock.getDelayedCalls() == []


def test_a_seed_gives_the_same_release_times():
    def run(seed):
        r = rig(up=Link(50, 30), seed=seed)
        for i in range(50):
            r.at(i * 0.003)
            r.client.dataReceived(b"x")
        r.at(1.0)
        return [t for t, _ in r.st.chunks]
    assert run(1) == run(1)
    assert run(1) != run(2)


# -- stalls ------------------------------------------------------------------------------

def test_the_stall_schedule_is_as_configured():
    r = rig(stall_every=2.0, stall_ms=250)
    assert r.proxy.stalls == []
    r.at(1.99)
    assert r.proxy.stalls == []
    r.at(2.0)
    assert r.proxy.stalls == [(2.0, 2.25)]
    r.at(7.0)
    assert r.proxy.stalls == [(2.0, 2.25), (4.0, 4.25), (6.0, 6.25)]
    p = r.proxy
    assert p.stall_end(1.9) is None and p.stall_end(2.0) == 2.25
    assert p.stall_end(4.1) == 4.25 and p.stall_end(4.25) is None and p.stall_end(0.1) is None
    assert rig().proxy.stalls == [] and rig().proxy.stall_end(10.0) is None
    with pytest.raises(ValueError):
        NetemProxy("h", 1, stall_every=0.2, stall_ms=200, reactor=MemoryReactorClock())


def test_nothing_is_released_during_a_stall_and_all_comes_out_in_order_after():
    r = rig(up=Link(50), down=Link(50), stall_every=1.0, stall_ms=300)
    for i in range(120):                       # every 10 ms from 0.405 s to 1.595 s, both ways
        r.at(0.405 + i * 0.01)
        r.client.dataReceived(b"%d," % i)
        r.server.dataReceived(b"%d," % i)
    r.at(2.5)
    for t in (r.st, r.ct):
        assert t.value() == b"".join(b"%d," % i for i in range(120))
        times = [when for when, _ in t.chunks]
        assert times == sorted(times)
        assert not [w for w in times if 1.0 <= w < 1.3 - EPS]          # the stall
        burst = [w for w in times if w == pytest.approx(1.3)]
        assert len(burst) == 30                # sent from 0.955 s to 1.245 s: due in the stall
        assert max(w for w in times if w < 1.0) == pytest.approx(0.995)
    assert r.proxy.stalls == [(1.0, 1.3), (2.0, 2.3)]


def test_a_chunk_paused_by_the_sink_is_not_released_by_a_resume_inside_a_stall():
    r = rig(up=Link(10), stall_every=1.0, stall_ms=300)
    r.at(0.9)
    r.st.producer.pauseProducing()             # the server's socket is full
    r.client.dataReceived(b"x")
    r.at(1.1)
    r.st.producer.resumeProducing()            # drained, but the link is stalled
    r.at(1.2999)
    assert r.st.value() == b""
    r.at(1.3)
    assert r.st.value() == b"x"


# -- closing -----------------------------------------------------------------------------

def test_a_close_comes_after_the_data_before_it():
    r = rig(up=Link(75), down=Link(40))
    r.client.dataReceived(b"bye")
    r.at(0.01)
    r.client.connectionLost(Failure(error.ConnectionDone()))
    r.at(0.0749)
    assert r.st.value() == b"" and not r.st.disconnecting
    r.at(0.075)
    assert r.st.value() == b"bye" and r.st.disconnecting
    assert not getattr(r.st, "disconnected", False)         # not aborted
    assert r.st.producer is None
    r.server.connectionLost(Failure(error.ConnectionDone()))
    assert r.proxy.connections == set()


def test_a_reset_after_data_is_an_orderly_close_after_the_data():
    r = rig(up=Link(10), down=Link(40))
    r.server.dataReceived(b"last words")
    r.at(0.02)
    r.server.connectionLost(Failure(error.ConnectionLost()))
    r.at(0.0399)
    assert not r.ct.disconnecting
    r.at(0.04)
    assert r.ct.value() == b"last words" and r.ct.disconnecting
    assert not getattr(r.ct, "disconnected", False)    # not aborted: the words arrive
    r.client.dataReceived(b"too late")        # nowhere to go: dropped
    r.at(1.0)
    assert r.st.value() == b""


def test_a_reset_with_nothing_queued_is_relayed_as_an_abort():
    r = rig(up=Link(10), down=Link(40))
    r.server.dataReceived(b"words")
    r.at(0.5)
    r.server.connectionLost(Failure(error.ConnectionLost()))
    assert r.ct.value() == b"words" and r.ct.disconnected
    r.client.connectionLost(Failure(error.ConnectionAborted()))
    assert r.proxy.connections == set()


def test_a_close_with_nothing_queued_is_relayed_at_once():
    r = rig(up=Link(75))
    r.at(0.5)
    r.client.connectionLost(Failure(error.ConnectionDone()))
    assert r.st.disconnecting


def test_data_sent_before_the_server_connection_is_up_waits_for_it():
    r = Rig(up=Link(20))
    r.client.dataReceived(b"early")
    r.at(0.05)
    r.connect_server()
    r.at(0.05)
    assert r.st.value() == b"early"            # already due: released at once
    assert r.st.chunks[0][0] == pytest.approx(0.05)


def test_a_refused_connection_closes_the_client():
    r = Rig(up=Link(20))
    _, _, factory, _, _ = r.clock.tcpClients[-1]
    factory.clientConnectionFailed(None, Failure(error.ConnectionRefusedError()))
    assert r.ct.disconnected
    r.client.connectionLost(Failure(error.ConnectionAborted()))
    assert r.proxy.connections == set()


# -- flow control ------------------------------------------------------------------------

def test_the_queue_cap_pauses_reading_and_resumes_once_half_is_out():
    r = rig(up=Link(100), max_queued=1000)
    r.client.dataReceived(b"a" * 600)
    assert r.ct.producerState == "producing"
    r.at(0.01)
    r.client.dataReceived(b"b" * 600)          # 1200 queued > 1000
    assert r.ct.producerState == "paused"
    assert r.proxy.counts["up"].pauses == 1 and r.proxy.counts["up"].max_queued == 1200
    r.at(0.1)                                  # 600 out, 600 left: more than half the cap
    assert r.ct.producerState == "paused"
    r.at(0.11)                                 # all out
    assert r.ct.producerState == "producing"
    assert r.st.value() == b"a" * 600 + b"b" * 600


def test_a_paused_sink_holds_the_releases():
    r = rig(up=Link(10))
    r.st.producer.pauseProducing()             # what the transport does when its buffer fills
    r.client.dataReceived(b"x")
    r.at(1.0)
    assert r.st.value() == b"" and r.clock.getDelayedCalls() == []
    r.st.producer.resumeProducing()
    r.at(1.0)
    assert r.st.value() == b"x"


# -- the command line --------------------------------------------------------------------

def test_options():
    o = parser().parse_args(["--listen", "0", "--to", "example.org:80", "--delay", "75",
                             "--jitter", "15", "--down-delay", "20"])
    assert o.listen == ("127.0.0.1", 0) and o.to == ("example.org", 80)
    up, down = options_to_links(o)
    assert (up.delay_ms, up.jitter_ms, down.delay_ms, down.jitter_ms) == (75, 15, 20, 15)
    o = parser().parse_args(["--listen", "0.0.0.0:9000", "--to", "[::1]:8080"])
    assert o.listen == ("0.0.0.0", 9000) and o.to == ("::1", 8080)
    for bad in (["--listen", "9000"], ["--listen", "9000", "--to", "8080"],
                ["--listen", "1", "--to", "h:1", "--delay", "-5"]):
        with pytest.raises(SystemExit):
            parser().parse_args(bad)
    with pytest.raises(SystemExit):
        main(["--listen", "0", "--to", "h:1", "--stall", "300"])     # no --stall-every


# -- real sockets: a real server, the proxy, the Python client ---------------------------

def sleep(seconds):
    from twisted.internet import reactor
    return task.deferLater(reactor, seconds, lambda: None)


@pytest_twisted.inlineCallbacks
def ping_rtts(client, n=5):
    """Round trips (s) of ``n`` application pings, one after the other, on the real
    reactor's clock."""
    from twisted.internet import reactor
    rtts = []
    for i in range(n):
        t0 = reactor.seconds()
        client.ping(i)
        yield client.wait_message("pong", ts=i)
        rtts.append(reactor.seconds() - t0)
    return rtts


@pytest_twisted.inlineCallbacks
def test_ping_through_the_proxy_takes_the_round_trip(server):
    from twisted.internet import reactor
    from protocols.client import connect
    direct = yield connect(server.url, name="direct")
    base = yield ping_rtts(direct, 3)
    proxy = start_netem("127.0.0.1", server.port, delay_ms=75)
    try:
        client = yield connect("ws://127.0.0.1:%d/ws" % proxy.port, name="far")
        rtts = yield ping_rtts(client, 5)
        assert min(rtts) >= 0.150, rtts
        assert max(rtts) < 0.250, rtts
        assert max(base) < 0.05, base
        assert proxy.counts["up"].bytes_out > 0 and proxy.counts["down"].bytes_out > 0
        # close frames are delayed like data. (Autobahn's close handshake timeout, 1 s,
        # is on txaio's batched timer, which rounds the due time down to a whole second:
        # it may fire at any time within the second, before a 150 ms round trip is over.)
        client.proto.closeHandshakeTimeout = 5
        t0 = reactor.seconds()
        code, _ = yield client.close()
        assert code == 1000 and 0.150 <= reactor.seconds() - t0 < 0.250
        yield direct.close()
        other = yield connect("ws://127.0.0.1:%d/ws" % proxy.port, name="cut")
    finally:
        yield proxy.stop()
    assert proxy.connections == set()
    code, _ = yield other.closed               # stop() cut it
    assert code != 1000


@pytest_twisted.inlineCallbacks
def test_a_stall_shows_as_a_gap_then_a_burst_of_state_messages(server):
    """A cube crossing the world makes a delta every state tick (50 ms); the link stalls
    300 ms at 1.5 s: no message for >= 250 ms, then the ones held come at once."""
    from twisted.internet import reactor
    from protocols.client import connect
    proxy = start_netem("127.0.0.1", server.port, delay_ms=20, stall_every=1.5, stall_ms=300)
    try:
        client = yield connect("ws://127.0.0.1:%d/ws" % proxy.port, name="mover")
        seq = client.spawn(at=[-15, -15])
        yield client.wait_ack(seq)
        (cid,) = client.my_cubes()
        client.order([cid], [15, 15])          # about 8.5 s at 5 units/s
        arrivals = []
        client.on_message = lambda msg: arrivals.append(reactor.seconds())
        assert reactor.seconds() < proxy.started_at + 1.2, "too slow to set up"
        yield sleep(proxy.started_at + 2.1 - reactor.seconds())
        yield client.close()
    finally:
        yield proxy.stop()
    ((start, end),) = proxy.stalls
    assert (start, end) == pytest.approx((proxy.started_at + 1.5, proxy.started_at + 1.8))
    assert len(arrivals) > 10
    gaps = [(b - a, a, b) for a, b in zip(arrivals, arrivals[1:])]
    gap, before, after = max(gaps)
    assert gap >= 0.25, gaps
    assert before <= start + 0.01 and after >= end - 0.01      # the gap is the stall
    burst = [t for t in arrivals if after <= t < after + 0.02]
    assert len(burst) >= 3, (burst, arrivals)
    others = [g for g, a, b in gaps if b < start or a > end + 0.02]
    assert others and max(others) < 0.2        # elsewhere: a state tick every 50 ms


@pytest_twisted.inlineCallbacks
def test_the_console_script(server):
    from protocols.client import connect
    script = os.path.join(os.path.dirname(sys.executable), "arbiter-netem")
    proc = subprocess.Popen([script, "--listen", "127.0.0.1:0",
                             "--to", "127.0.0.1:%d" % server.port, "--delay", "50"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = queue.Queue()
    seen = []

    def read():
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()

    def expect(pattern, timeout=15.0):
        while True:
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError("no line like %r in %s" % (pattern, seen))
            if line is None:
                raise AssertionError("ended (%s) before %r: %s" % (proc.wait(), pattern, seen))
            seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found

    try:
        port = int(expect(r"^NETEM_PORT=(\d+)$").group(1))
        client = yield connect("ws://127.0.0.1:%d/ws" % port, name="cli")
        rtts = yield ping_rtts(client, 3)
        assert min(rtts) >= 0.100, rtts
        assert max(rtts) < 0.200, rtts
        yield client.close()
        expect(r"#1 127\.0\.0\.1:\d+ connected; to 127\.0\.0\.1:%d" % server.port)
        expect(r"#1 closed after [\d.]+ s: up \d+ B in \d+ chunks, down \d+ B")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, seen
        expect(r"SIGTERM, stopping")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
