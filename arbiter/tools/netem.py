"""``arbiter-netem``: a TCP delay proxy, to put a bad network between a client and a server.

    arbiter-netem --listen 127.0.0.1:9000 --to 127.0.0.1:8080 --delay 75 --jitter 15 \\
        --stall-every 10 --stall 300

Every connection accepted on ``--listen`` is connected to ``--to`` and the bytes are
relayed both ways, each direction through its own delay line (docs/NETCODE.md, "The
delay proxy"):

- Each chunk read from one side is held ``delay`` ms plus a jitter drawn **uniformly**
  from [-jitter, +jitter] ms (clamped at 0: never negative), from a ``random.Random``
  seeded with ``seed``, the connection's number and the direction, so a run with the same
  traffic draws the same delays. Uniform, not normal: the bounds are hard, which is what
  a test can rely on (a normal draw has tails with no bound).
- TCP order is kept: a chunk is released at max(its own due time, the release time of
  the chunk before it in that direction). Jitter therefore shows as bunching and stalls,
  as on a real link, never as reordering.
- ``delay`` and ``jitter`` are per direction: ``up`` is client -> server, ``down`` is
  server -> client. The CLI's ``--delay``/``--jitter`` set both, so ``--delay 75`` is a
  150 ms round trip.
- Stalls (a Wi-Fi hiccup): every ``stall_every`` s from the proxy's start, for
  ``stall_ms`` ms, nothing is released in either direction on any connection; what is
  due meanwhile comes out, in order, when the stall ends. ``proxy.stalls`` lists the
  (start, end) reactor times of the stalls begun so far.
- No loss (TCP does not lose bytes; a lossy link shows as stalls), no reordering, no
  bandwidth cap; the TCP handshake itself is not delayed, only the bytes.
- Flow control: each direction is a push producer for the transport it writes to (a slow
  reader stops the releases), and when more than ``max_queued`` bytes wait in one
  direction its source is paused until half of them have gone.
- A close is relayed after the bytes queued before it in that direction (a close frame
  is delayed like data). A reset is relayed as an abort when nothing was queued, else as
  an orderly close after the queued bytes (an abort would drop them).

Timers: one ``callLater`` per direction per connection at a time (release everything
due, then schedule the next release), on an injected reactor (IReactorTime and
IReactorTCP), so tests can drive the time with ``twisted.internet.task.Clock`` or
``twisted.internet.testing.MemoryReactorClock``.

Python API (tests, benchmarks)::

    proxy = start_netem("127.0.0.1", server_port, delay_ms=75, jitter_ms=15,
                        stall_every=10, stall_ms=300)
    url = "ws://127.0.0.1:%d/ws" % proxy.port
    ...
    proxy.stalls        # [(start, end), ...] in reactor seconds
    proxy.counts        # {"up": Counts, "down": Counts}: bytes and chunks each way
    yield proxy.stop()
"""

import argparse
import math
import random
import signal
import sys
from collections import deque

from twisted.internet import defer, error
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import ClientFactory, Protocol, ServerFactory
from zope.interface import implementer

__all__ = ["Counts", "Link", "NetemProxy", "main", "start_netem"]

PROG = "arbiter-netem"
MAX_QUEUED = 4 * 1024 * 1024     # bytes waiting in one direction before its source is paused
EPSILON = 1e-6                   # s: timer slack (a release due within 1 us is due now)


class Link:
    """The settings of one direction: ``delay_ms`` plus a uniform jitter of
    +-``jitter_ms`` per chunk (never below 0)."""

    def __init__(self, delay_ms=0.0, jitter_ms=0.0):
        if delay_ms < 0 or jitter_ms < 0:
            raise ValueError("delay and jitter must be >= 0, got %r and %r"
                             % (delay_ms, jitter_ms))
        self.delay_ms = float(delay_ms)
        self.jitter_ms = float(jitter_ms)

    def draw(self, rng):
        """One chunk's delay in seconds."""
        if not self.jitter_ms:
            return self.delay_ms / 1000.0
        return max(0.0, rng.uniform(self.delay_ms - self.jitter_ms,
                                    self.delay_ms + self.jitter_ms)) / 1000.0

    def __repr__(self):
        return "Link(%g, %g)" % (self.delay_ms, self.jitter_ms)

    def describe(self):
        return "%g±%g ms" % (self.delay_ms, self.jitter_ms) if self.jitter_ms \
            else "%g ms" % self.delay_ms


class Counts:
    """What went through one direction (all connections of a proxy, or one)."""

    __slots__ = ("bytes_in", "chunks_in", "bytes_out", "chunks_out", "max_queued", "pauses")

    def __init__(self):
        self.bytes_in = self.chunks_in = 0      # read from the source
        self.bytes_out = self.chunks_out = 0    # released to the sink
        self.max_queued = 0                     # most bytes waiting at once in one pipe
        self.pauses = 0                         # times the source was paused (max_queued)

    def as_dict(self):
        return {k: getattr(self, k) for k in self.__slots__}

    def __repr__(self):
        return "Counts(%s)" % ", ".join("%s=%d" % kv for kv in self.as_dict().items())


@implementer(IPushProducer)
class _Pipe:
    """One direction of one connection: a queue of [release time, bytes], released by
    one timer at a time into ``sink`` (a transport), read from ``source``.

    It is the sink's producer: while the sink is paused nothing is released (and the
    queue, capped by pausing the source, holds the bytes)."""

    def __init__(self, conn, name, link, rng):
        self.conn = conn
        self.proxy = conn.proxy
        self.clock = conn.proxy.clock
        self.name = name
        self.link = link
        self.rng = rng
        self.counts = Counts()
        self.total = conn.proxy.counts[name]
        self.queue = deque()
        self.queued = 0
        self.last = -math.inf       # release time of the last chunk queued
        self.timer = None
        self.source = None          # transports
        self.sink = None
        self.sink_paused = False
        self.source_paused = False
        self.eof = None             # the reason the source closed, once it has
        self.reset = False          # ... and whether to pass it on as an abort
        self.dead = False           # the sink is gone (or closed by us)

    # -- in -----------------------------------------------------------------------------
    def receive(self, data):
        if self.dead:
            return
        now = self.clock.seconds()
        release = self.proxy.after_stall(max(now + self.link.draw(self.rng), self.last))
        self.last = release
        self.queue.append((release, data))
        self.queued += len(data)
        for c in (self.counts, self.total):
            c.bytes_in += len(data)
            c.chunks_in += 1
            if self.queued > c.max_queued:
                c.max_queued = self.queued
        if self.queued > self.proxy.max_queued and not self.source_paused \
                and self.source is not None:
            self.source_paused = True
            self.counts.pauses += 1
            self.total.pauses += 1
            self.source.pauseProducing()
        self._schedule()

    def source_lost(self, reason):
        """The source closed: the sink is closed once the queue is out. A reset with
        nothing queued is passed on as a reset (an abort); with bytes queued, those are
        released first and the close is an orderly one, so that they arrive (an abort
        would drop what the sink has not sent yet)."""
        self.eof = reason
        self.reset = reason.check(error.ConnectionDone) is None and not self.queue
        self.source = None
        if not self.queue:
            self._finish()

    # -- out ----------------------------------------------------------------------------
    def attach_sink(self, transport):
        self.sink = transport
        transport.registerProducer(self, True)
        self._schedule()
        if self.eof is not None and not self.queue:
            self._finish()

    def sink_lost(self):
        """The sink's connection is gone: what was queued for it goes too."""
        self.dead = True
        self.sink = None
        self.queue.clear()
        self.queued = 0
        self._cancel()

    def _cancel(self):
        if self.timer is not None:
            if self.timer.active():
                self.timer.cancel()
            self.timer = None

    def _schedule(self):
        if self.timer is not None or not self.queue or self.sink is None or self.sink_paused:
            return
        wait = max(0.0, self.queue[0][0] - self.clock.seconds())
        self.timer = self.clock.callLater(wait, self._release)

    def _release(self):
        self.timer = None
        if self.sink is None or self.sink_paused or self.dead:
            return
        now = self.clock.seconds()
        end = self.proxy.stall_end(now)
        if end is not None:                 # a resume or a late timer inside a stall
            self.timer = self.clock.callLater(max(0.0, end - now), self._release)
            return
        out = []
        n = 0
        queue = self.queue
        while queue and queue[0][0] <= now + EPSILON:
            data = queue.popleft()[1]
            out.append(data)
            n += len(data)
        if out:
            self.queued -= n
            for c in (self.counts, self.total):
                c.bytes_out += n
                c.chunks_out += len(out)
            if self.source_paused and self.queued <= self.proxy.max_queued // 2 \
                    and self.source is not None:
                self.source_paused = False
                self.source.resumeProducing()
            self.sink.writeSequence(out)    # may pause us (sink_paused) at once
            if self.dead or self.sink is None:
                return
        if queue:
            self._schedule()
        elif self.eof is not None:
            self._finish()

    def _finish(self):
        """Everything before the close is out: close the sink (abort it for a reset with
        nothing queued, see source_lost)."""
        if self.dead:
            return
        self.dead = True
        self._cancel()
        sink, self.sink = self.sink, None
        if sink is None:
            if self.name == "up":           # the server side was never connected
                self.conn.cancel_connect()
            return
        sink.unregisterProducer()
        if self.reset:
            sink.abortConnection()
        else:
            sink.loseConnection()

    # -- IPushProducer (for the sink) ---------------------------------------------------
    def pauseProducing(self):
        self.sink_paused = True
        self._cancel()

    def resumeProducing(self):
        self.sink_paused = False
        if self.queue:
            self._schedule()
        elif self.eof is not None:
            self._finish()

    def stopProducing(self):
        self.sink_paused = True
        self._cancel()


class _ClientSide(Protocol):
    """The connection accepted from the client."""

    def __init__(self, conn):
        self.conn = conn

    def connectionMade(self):
        self.conn.client_made(self.transport)

    def dataReceived(self, data):
        self.conn.up.receive(data)

    def connectionLost(self, reason):
        self.conn.client_lost(reason)


class _ServerSide(Protocol):
    """The connection made to the target."""

    def __init__(self, conn):
        self.conn = conn

    def connectionMade(self):
        self.conn.server_made(self.transport)

    def dataReceived(self, data):
        self.conn.down.receive(data)

    def connectionLost(self, reason):
        self.conn.server_lost(reason)


class _ServerSideFactory(ClientFactory):
    def __init__(self, conn):
        self.conn = conn

    def buildProtocol(self, addr):
        return _ServerSide(self.conn)

    def clientConnectionFailed(self, connector, reason):
        self.conn.connect_failed(reason)


def _no_delay(transport):
    set_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_no_delay is not None:
        try:
            set_no_delay(True)      # released chunks go out at once, not held by Nagle
        except OSError:
            pass


class _Connection:
    """A client's connection and the proxy's connection to the target, with the two
    pipes between them."""

    def __init__(self, proxy, number, peer):
        self.proxy = proxy
        self.number = number
        self.peer = peer
        seed = proxy.seed
        self.up = _Pipe(self, "up", proxy.up, random.Random("%s:%d:up" % (seed, number)))
        self.down = _Pipe(self, "down", proxy.down,
                          random.Random("%s:%d:down" % (seed, number)))
        self.client = self.server = None        # transports while connected
        self.client_open = self.server_open = False
        self.connector = None
        self.opened_at = proxy.clock.seconds()
        self.closed = defer.Deferred()

    def client_made(self, transport):
        self.client = transport
        self.client_open = True
        _no_delay(transport)
        self.up.source = transport
        self.down.attach_sink(transport)
        self.connector = self.proxy.reactor.connectTCP(
            self.proxy.target_host, self.proxy.target_port, _ServerSideFactory(self),
            timeout=self.proxy.connect_timeout)
        self.proxy._log("#%d %s connected; to %s:%d" % (self.number, _addr(self.peer),
                                                         self.proxy.target_host,
                                                         self.proxy.target_port))

    def server_made(self, transport):
        self.connector = None
        self.server = transport
        self.server_open = True
        _no_delay(transport)
        if self.up.dead:                    # the client is gone and so is all it sent
            transport.loseConnection()
            return
        self.down.source = transport
        self.up.attach_sink(transport)

    def connect_failed(self, reason):
        self.connector = None
        self.proxy._log("#%d cannot connect to %s:%d: %s" % (
            self.number, self.proxy.target_host, self.proxy.target_port,
            reason.getErrorMessage()))
        self.up.sink_lost()
        self.down.dead = True
        if self.client_open:
            self.client.abortConnection()
        self._maybe_done()

    def cancel_connect(self):
        if self.connector is not None:
            connector, self.connector = self.connector, None
            try:
                connector.stopConnecting()  # -> connect_failed (UserError)
            except error.NotConnectingError:
                pass

    def client_lost(self, reason):
        self.client_open = False
        self.client = None
        self.down.sink_lost()
        self.up.source_lost(reason)
        self._maybe_done()

    def server_lost(self, reason):
        self.server_open = False
        self.server = None
        self.up.sink_lost()
        self.down.source_lost(reason)
        self._maybe_done()

    def abort(self):
        """Cut both sides now (proxy.stop())."""
        self.up.sink_lost()
        self.down.sink_lost()
        self.cancel_connect()
        for t in (self.client, self.server):
            if t is not None:
                t.abortConnection()

    def _maybe_done(self):
        if self.client_open or self.server_open or self.connector is not None \
                or self.closed.called:
            return
        self.up._cancel()
        self.down._cancel()
        self.proxy._connection_done(self)
        self.proxy._log("#%d closed after %.1f s: up %d B in %d chunks, down %d B in %d chunks"
                        % (self.number, self.proxy.clock.seconds() - self.opened_at,
                           self.up.counts.bytes_out, self.up.counts.chunks_out,
                           self.down.counts.bytes_out, self.down.counts.chunks_out))
        self.closed.callback(self)


def _addr(address):
    host = getattr(address, "host", None)
    return "%s:%s" % (host, address.port) if host is not None else str(address)


class NetemProxy(ServerFactory):
    """A delay proxy to ``(target_host, target_port)``: listen with it
    (``reactor.listenTCP(port, proxy)``) or use :func:`start_netem`.

    ``up`` (client -> server) and ``down`` (server -> client) are :class:`Link` settings;
    ``stall_every`` s and ``stall_ms`` the stall schedule (0: none), counted from
    ``started_at`` (default: when the proxy is made), shared by all its connections.
    ``reactor`` gives the time (IReactorTime) and the outgoing connections (IReactorTCP).
    ``log``: a callable taking one line, or None.

    Observable: ``stalls`` (the (start, end) of the stalls begun so far), ``counts``
    ({"up", "down"}: :class:`Counts` over all connections), ``connections`` (open ones),
    ``accepted`` (connections so far)."""

    def __init__(self, target_host, target_port, up=None, down=None, stall_every=0.0,
                 stall_ms=0.0, reactor=None, seed=0, max_queued=MAX_QUEUED,
                 connect_timeout=10, started_at=None, log=None):
        if reactor is None:
            from twisted.internet import reactor
        if stall_every < 0 or stall_ms < 0:
            raise ValueError("stall_every and stall_ms must be >= 0")
        if stall_every and stall_ms / 1000.0 >= stall_every:
            raise ValueError("a stall (%g ms) must be shorter than its period (%g s)"
                             % (stall_ms, stall_every))
        self.reactor = reactor
        self.clock = reactor
        self.target_host = target_host
        self.target_port = target_port
        self.up = up if up is not None else Link()
        self.down = down if down is not None else Link()
        self.stall_every = float(stall_every)
        self.stall_ms = float(stall_ms)
        self.seed = seed
        self.max_queued = max_queued
        self.connect_timeout = connect_timeout
        self.started_at = reactor.seconds() if started_at is None else started_at
        self.log = log
        self.counts = {"up": Counts(), "down": Counts()}
        self.connections = set()
        self.accepted = 0
        self.listening = None       # the IListeningPort, from start_netem / listen()
        self.stopped_at = None

    # -- the stall schedule -----------------------------------------------------------
    @property
    def stalling(self):
        return bool(self.stall_every and self.stall_ms)

    def stall_end(self, t):
        """The end of the stall ``t`` is in (reactor seconds), or None."""
        if not self.stalling:
            return None
        k = math.floor((t - self.started_at) / self.stall_every)
        if k < 1:
            return None
        start = self.started_at + k * self.stall_every
        end = start + self.stall_ms / 1000.0
        return end if start <= t < end - EPSILON else None

    def after_stall(self, t):
        """``t``, or the end of the stall it falls in."""
        end = self.stall_end(t)
        return t if end is None else end

    @property
    def stalls(self):
        """[(start, end)] of the stalls begun so far (up to ``stop()``), in reactor
        seconds; the last one may still be going on."""
        if not self.stalling:
            return []
        now = self.clock.seconds() if self.stopped_at is None else self.stopped_at
        n = math.floor((now - self.started_at) / self.stall_every)
        out = []
        for k in range(1, max(0, n) + 1):
            start = self.started_at + k * self.stall_every
            out.append((start, start + self.stall_ms / 1000.0))
        return out

    # -- connections -----------------------------------------------------------------
    def buildProtocol(self, addr):
        self.accepted += 1
        conn = _Connection(self, self.accepted, addr)
        self.connections.add(conn)
        return _ClientSide(conn)

    def _connection_done(self, conn):
        self.connections.discard(conn)

    def _log(self, line):
        if self.log is not None:
            self.log(line)

    # -- running ---------------------------------------------------------------------
    @property
    def port(self):
        """The port it listens on (after listen())."""
        return self.listening.getHost().port

    def listen(self, port=0, interface="127.0.0.1"):
        self.listening = self.reactor.listenTCP(port, self, interface=interface)
        return self.listening

    def stop(self):
        """Stop listening and cut every connection; a Deferred that fires once the port
        is closed and every connection is gone."""
        if self.stopped_at is None:
            self.stopped_at = self.clock.seconds()
        waits = []
        if self.listening is not None:
            waits.append(defer.maybeDeferred(self.listening.stopListening))
        for conn in list(self.connections):
            waits.append(conn.closed)
            conn.abort()
        return defer.gatherResults(waits, consumeErrors=True).addCallback(lambda _: None)

    def describe(self):
        line = "up %s, down %s (%g ms round trip)" % (
            self.up.describe(), self.down.describe(),
            self.up.delay_ms + self.down.delay_ms)
        if self.stalling:
            line += ", stall %g ms every %g s" % (self.stall_ms, self.stall_every)
        return line + ", seed %s" % (self.seed,)


def start_netem(target_host, target_port, delay_ms=0.0, jitter_ms=0.0, stall_every=0.0,
                stall_ms=0.0, reactor=None, seed=0, up=None, down=None,
                listen_host="127.0.0.1", listen_port=0, **kwargs):
    """A :class:`NetemProxy` to (target_host, target_port) listening on
    (listen_host, listen_port; 0: a free port), now. ``delay_ms``/``jitter_ms`` apply to
    each direction (``delay_ms=75`` is a 150 ms round trip) unless ``up``/``down``
    (:class:`Link`) are given. Returns the proxy: ``.port``, ``.stalls``, ``.counts``,
    ``.stop()`` (a Deferred)."""
    link = Link(delay_ms, jitter_ms)
    proxy = NetemProxy(target_host, target_port, up=up or link,
                       down=down or Link(delay_ms, jitter_ms), stall_every=stall_every,
                       stall_ms=stall_ms, reactor=reactor, seed=seed, **kwargs)
    proxy.listen(listen_port, listen_host)
    proxy.started_at = proxy.clock.seconds()
    return proxy


# -- the command line --------------------------------------------------------------------

def _host_port(text, default_host=None):
    host, sep, port = text.rpartition(":")
    if not sep:
        host = default_host
    if host is None or not host:
        raise argparse.ArgumentTypeError("expected HOST:PORT, got %r" % text)
    host = host.strip("[]")
    try:
        port = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError("bad port in %r" % text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("bad port in %r" % text)
    return host, port


def _ms(text):
    value = float(text)
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError("expected a number of ms >= 0, got %r" % text)
    return value


def parser():
    p = argparse.ArgumentParser(
        prog=PROG,
        description="A TCP delay proxy: relays connections from --listen to --to, holding "
                    "each direction's bytes --delay ms +- --jitter ms (uniform, never "
                    "negative, TCP order kept), with optional stalls of the whole link. "
                    "--delay applies to each direction: --delay 75 is a 150 ms round trip.")
    p.add_argument("--listen", required=True, metavar="[HOST:]PORT",
                   type=lambda s: _host_port(s, "127.0.0.1"),
                   help="where to listen (HOST defaults to 127.0.0.1; PORT 0: a free port, "
                        "printed as NETEM_PORT=<n>)")
    p.add_argument("--to", required=True, metavar="HOST:PORT", type=_host_port,
                   help="the server to connect each connection to")
    p.add_argument("--delay", type=_ms, default=0.0, metavar="MS",
                   help="one-way delay of each direction, ms (default 0)")
    p.add_argument("--jitter", type=_ms, default=0.0, metavar="MS",
                   help="+- jitter of each direction, ms, uniform per chunk (default 0)")
    p.add_argument("--up-delay", type=_ms, metavar="MS", help="client -> server delay, ms")
    p.add_argument("--up-jitter", type=_ms, metavar="MS", help="client -> server jitter, ms")
    p.add_argument("--down-delay", type=_ms, metavar="MS", help="server -> client delay, ms")
    p.add_argument("--down-jitter", type=_ms, metavar="MS",
                   help="server -> client jitter, ms")
    p.add_argument("--stall-every", type=float, default=0.0, metavar="S",
                   help="a stall every S seconds from the start (default 0: none)")
    p.add_argument("--stall", type=_ms, default=0.0, metavar="MS",
                   help="how long each stall lasts, ms: nothing is released either way")
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of the jitter draws (default 0)")
    p.add_argument("--quiet", action="store_true", help="no line per connection")
    return p


def options_to_links(options):
    def pick(value, default):
        return default if value is None else value
    up = Link(pick(options.up_delay, options.delay), pick(options.up_jitter, options.jitter))
    down = Link(pick(options.down_delay, options.delay),
                pick(options.down_jitter, options.jitter))
    return up, down


def _say(line):
    print(line, flush=True)


def main(argv=None, reactor=None):
    options = parser().parse_args(argv)
    if options.stall_every < 0 or (options.stall and not options.stall_every):
        parser().error("--stall needs --stall-every S > 0")
    if reactor is None:
        from twisted.internet import reactor
    up, down = options_to_links(options)
    listen_host, listen_port = options.listen
    target_host, target_port = options.to
    try:
        proxy = NetemProxy(target_host, target_port, up=up, down=down,
                           stall_every=options.stall_every, stall_ms=options.stall,
                           reactor=reactor, seed=options.seed,
                           log=None if options.quiet else _say)
    except ValueError as e:
        parser().error(str(e))
    try:
        proxy.listen(listen_port, listen_host)
    except error.CannotListenError as e:
        print("%s: cannot listen on %s:%d: %s" % (PROG, listen_host, listen_port,
                                                   e.socketError), file=sys.stderr)
        return 1
    stopping = []

    def on_signal(signum, frame):
        # only a note and a wake-up here: the reactor does the rest (it may not be
        # running yet: callFromThread queues until it is)
        stopping.append(signum)
        if len(stopping) == 1:
            reactor.callFromThread(shutdown, signum)
        else:                               # again: no more waiting for the connections
            reactor.callFromThread(lambda: reactor.running and reactor.stop())

    def shutdown(signum):
        _say("%s: %s, stopping (%d open connections)" % (
            PROG, signal.Signals(signum).name, len(proxy.connections)))
        d = proxy.stop()
        d.addBoth(lambda _: reactor.running and reactor.stop())

    # ours, before NETEM_PORT is out (whoever reads it may signal at once), and
    # instead of the reactor's (installSignalHandlers=False)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    proxy.started_at = reactor.seconds()
    port = proxy.port
    _say("NETEM_PORT=%d" % port)
    _say("%s: %s:%d -> %s:%d, %s" % (PROG, listen_host, port, target_host, target_port,
                                     proxy.describe()))
    reactor.run(installSignalHandlers=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
