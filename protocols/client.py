"""A Python client for Arbiter, on Twisted and Autobahn.

    client = yield connect("ws://127.0.0.1:8080/ws", name="bot", room="main")
    seq = client.spawn(at=[1, 2])
    yield client.wait_ack(seq)
    print(client.state["entities"])

``connect`` fires once ``welcome`` and the first ``snapshot`` are in. The
client mirrors the room's state from snapshots and merge-patch deltas, numbers
its inputs, and records what the server said (``events``, ``rejects``,
``corrections``, ``errors``). ``wait_for(predicate)`` fires when the predicate
of the client becomes true after some message: tests use it instead of sleeps.

In a cluster, a node that does not own the room answers ``hello`` with the error
``moved`` (the owner's WebSocket ``url``) and closes with 4005: ``connect`` and
``join`` say the same hello there (at most ``MAX_REDIRECTS`` in a row), and
``client.url`` is where the client ended up, the place to resume from with its token.
A ``moved`` after the join (the node gave its copy of the room up to the room's owner)
ends that player: ``client.moved`` records it, and ``client.rejoin()`` joins the room at
its url as a new player; with ``follow_moved=True`` the client does that by itself.

Sync modes (docs/PROTOCOL.md 11 and 20): ``connect(..., sync="compact")`` asks for the
compact sync (on MessagePack, the encoding it picks unless told otherwise): state frames
are binary records (first byte 0xC1) that ``arbiter.compact.CompactMirror`` turns into
the very mirror a ``"state"`` client builds, in ``client.state``; a broken frame drops
the mirror and asks for a ``resync``. ``sync="intent"``: ``client.state`` is what the
server sent (moving cubes as ``pos``/``to``/``since``), and ``client.position(id, tick)``
extrapolates them.

Rounds (``--round-points``/``--round-seconds``, docs/PROTOCOL.md 21): ``client.round`` is the
state's ``round`` map (``n``, ``phase``, ``points``, ``ends_at``, ``next_at``, ``result``) or
None in a room without rounds; ``round_results`` keeps the ``round_end`` events received and
``phases`` the ``phase`` messages; ``wait_round_end()`` fires with the next ``round_end`` (or
the one of a given round). A player who joins between rounds gets no ``round_end`` event:
the result is in ``client.round["result"]``.
"""

from collections import deque

from autobahn.twisted.websocket import (
    WebSocketClientFactory, WebSocketClientProtocol, connectWS,
)
from twisted.internet import defer
from twisted.internet.error import TimeoutError

from arbiter.codes import CLOSE_MOVED, MOVED
from arbiter.compact import MARKER, CompactMirror, read_header
from arbiter.games.cubes import extrapolate
from arbiter.movement import round2
from arbiter.state import apply_merge_patch
from protocols import wire

__all__ = ["ArbiterClient", "JoinRefused", "MAX_REDIRECTS", "TooManyRedirects", "connect",
           "join", "open_socket"]

MAX_REDIRECTS = 3       # ``moved`` answers followed in a row; one more fails the join


class ArbiterClientProtocol(WebSocketClientProtocol):
    """The socket of an ArbiterClient; once the client has moved on (a redirect),
    ``client`` is None and whatever the old socket still says is ignored."""

    client = None

    def onConnect(self, response):
        if self.client is not None:
            self.client.encoding = response.protocol or wire.JSON

    def onOpen(self):
        # Autobahn's client reads tcpNoDelay before its factory options apply:
        # without this, Nagle holds small inputs back behind unacknowledged ones.
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        if self.client is not None:
            self.client._opened(self)

    def onMessage(self, payload, isBinary):
        client = self.client
        if client is None:
            return
        client.bytes_in += len(payload)
        if isBinary and payload[0] == MARKER:       # a compact state frame (PROTOCOL.md 20)
            client._on_compact(payload)
        else:
            client._on_message(wire.decode_server(payload, isBinary))

    def onClose(self, wasClean, code, reason):
        if self.client is not None:
            self.client._closed(code, reason)


class ArbiterClient:
    """One connection's view: the mirrored state, acks, and what the server said."""

    def __init__(self, reactor=None, keep=1000):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.proto = None
        self.url = None             # the socket's URL: after redirects, the room's node
        self.encoding = wire.JSON
        self.you = None
        self.name = None            # the name the server knows this player by (welcome)
        self.user = None            # the authenticated user id (welcome.user; docs/LOBBY.md)
        self.token = None
        self.room = None
        self.world = None
        self.rate = None
        self.tick = 0
        self.ack = 0
        self.seq = 0
        self.state = {}
        self.joined = False
        self.mode = None
        self.sync = "state"         # the sync mode of the hello ("state", "intent", "compact")
        self.compact = None         # welcome.compact ({"v", "pos"}) of a compact player
        self.mirror = None          # its CompactMirror (``state`` is ``mirror.state``)
        self.broken_frames = 0      # compact frames that could not be applied
        self.broken_error = None    # why the last one could not (a str)
        self._broken = False        # mirror dropped: waiting for the snapshot of a resync
        self.messages = deque(maxlen=keep)   # the last ``keep`` messages, in order
        self.events = deque(maxlen=keep)
        self.rejects = deque(maxlen=keep)
        self.corrections = deque(maxlen=keep)
        self.errors = deque(maxlen=keep)
        self.redirects = deque(maxlen=keep)   # the ``moved`` errors followed, in order
        self.round_results = deque(maxlen=keep)   # the ``round_end`` events, in order
        self.phases = deque(maxlen=keep)      # the ``phase`` messages, in order
        self.moved = None           # this socket's ``moved`` error (not in ``errors``)
        self.follow_moved = False   # rejoin by itself on a ``moved`` after the join
        self.following = None       # the last such rejoin: a Deferred (see rejoin())
        self.follow_error = None    # why it could not rejoin (the client is closed then)
        self._join_args = None      # how the last join() was made, for rejoin()
        self.bytes_in = 0
        self.updates = 0
        self.close_code = None
        self.close_reason = None
        self.on_message = None      # optional callable(msg), called after the mirror updates
        self._waiters = []
        self._opened_d = defer.Deferred()
        self.closed = defer.Deferred()

    # -- plumbing ---------------------------------------------------------------
    def _opened(self, proto):
        self.proto = proto
        self._opened_d.callback(self)

    def _closed(self, code, reason):
        self.close_code = code
        self.close_reason = reason
        if not self._opened_d.called:
            self._opened_d.errback(ConnectionError("handshake failed: %s %s" % (code, reason)))
        if not self.closed.called:
            self.closed.callback((code, reason))
        self._check_waiters()

    def _on_message(self, msg):
        t = msg.get("t")
        if t == "error" and msg.get("code") == MOVED:
            # a redirect, not an error: join() follows it; after the join, rejoin() does
            # (by itself with ``follow_moved``)
            self.moved = msg
            if self.follow_moved and self.joined and self._join_args is not None:
                self._follow()
            self._check_waiters()
            return
        self.messages.append(msg)
        if t == "delta":
            apply_merge_patch(self.state, msg["patch"])
            self.tick, self.ack = msg["tick"], msg["ack"]
            self.updates += 1
        elif t == "snapshot":
            self.state = msg["state"]
            self.tick, self.ack = msg["tick"], msg["ack"]
            self.updates += 1
            self.joined = True
        elif t == "welcome":
            self.you, self.token, self.room = msg["you"], msg["token"], msg["room"]
            self.name = msg.get("name", self.name)
            self.user = msg.get("user")
            self.world, self.rate, self.ack, self.tick = msg["world"], msg["rate"], msg["ack"], msg["tick"]
            self.seq = max(self.seq, self.ack)
            self.mode = msg.get("mode", "realtime")
            if self.mode != "realtime":
                self.joined = True      # lockstep rooms send no snapshot (docs/LOCKSTEP.md)
            compact = msg.get("compact")
            if isinstance(compact, dict):
                # compact sync: no snapshot now, the first compact frame is one
                self.sync, self.compact = "compact", compact
                self.mirror = CompactMirror(compact.get("pos", 2))
                self._broken = False
            elif self.sync == "compact":
                self.sync = "state"     # not granted (a resume keeps the mode it joined with)
                self.compact = self.mirror = None
        elif t == "event":
            self.events.append(msg)
            if msg.get("kind") == "round_end":
                self.round_results.append(msg)
        elif t == "phase":
            self.phases.append(msg)
        elif t == "reject":
            self.rejects.append(msg)
        elif t == "correct":
            self.corrections.append(msg)
        elif t == "error":
            self.errors.append(msg)
        if self.on_message is not None:
            self.on_message(msg)
        self._check_waiters()

    def _on_compact(self, payload):
        """A compact state frame: the mirror applies it; tick, ack and updates as for a
        delta or snapshot (joined on the first snapshot). ``messages`` gets a short
        record of it, ``{"t": "delta"|"snapshot", "tick", "ack", "compact": bytes}``
        (the state is ``client.state``). Returns the kind, or None for a broken frame
        (the mirror is dropped and a ``resync`` sent: PROTOCOL.md 20.3)."""
        mirror = self.mirror
        try:
            if mirror is None:
                raise ValueError("a compact frame without welcome.compact")
            if self._broken:          # after a resync, nothing until its snapshot
                kind, tick, ack, _ = read_header(payload)
                if kind != "snapshot":
                    self.tick, self.ack = tick, ack
                    return kind
            kind, tick, ack = mirror.apply(payload)
        except Exception as e:      # a broken frame, whatever broke in it
            self._compact_broken(payload, e)
            return None
        self._broken = False
        self.state = mirror.state
        self.tick, self.ack = tick, ack
        self.updates += 1
        if kind == "snapshot":
            self.joined = True
        msg = {"t": kind, "tick": tick, "ack": ack, "compact": len(payload)}
        self.messages.append(msg)
        if self.on_message is not None:
            self.on_message(msg)
        if self._waiters:
            self._check_waiters()
        return kind

    def _compact_broken(self, payload, error):
        """Drop the mirror and ask for a snapshot (once per broken stretch, and again
        if that snapshot is broken too)."""
        self.broken_frames += 1
        self.broken_error = "%s: %s" % (type(error).__name__, error)
        try:
            snapshot = read_header(payload)[0] == "snapshot"
        except Exception:
            snapshot = False
        if self.mirror is not None:
            self.mirror.state, self.mirror.slots = {"entities": {}}, {}
            self.state = self.mirror.state
        if (not self._broken or snapshot) and self.proto is not None \
                and self.close_code is None:
            self.resync()
        self._broken = True

    def _check_waiters(self):
        if not self._waiters:
            return
        # a callback may add waiters (or open the next socket): those are kept as well
        waiters, self._waiters = self._waiters, []
        keep = []
        for predicate, d in waiters:
            if d.called:
                continue
            try:
                ok = predicate(self)
            except Exception as e:
                d.errback(e)
                continue
            if ok:
                d.callback(self)
            elif self.close_code is not None:
                d.errback(ConnectionError("connection closed (%s %s) while waiting"
                                          % (self.close_code, self.close_reason)))
            else:
                keep.append((predicate, d))
        self._waiters = keep + self._waiters

    def _move_on(self):
        """Leave this socket for another one (a redirect): the old one is closed and
        ignored from now on, and the per-socket state starts afresh."""
        old, self.proto = self.proto, None
        if old is not None:
            old.client = None
            if old.state == old.STATE_OPEN:
                old.sendClose(code=1000)
        self.moved = None
        self.close_code = self.close_reason = None
        self._opened_d = defer.Deferred()
        self.closed = defer.Deferred()

    def _forget_player(self):
        """A new player from now on: what the old one had and was told goes."""
        self.you = self.token = None
        self.world = self.rate = self.mode = None
        self.tick = self.ack = self.seq = 0
        self.state = {}
        self.joined = False
        self.compact = self.mirror = None
        self._broken = False

    # -- following a room that moved after the join ------------------------------------
    @defer.inlineCallbacks
    def rejoin(self, url=None, timeout=None):
        """Join the room again as a new player: the hello of the last ``join()`` (same
        name, room, extra fields and encoding), without its token, at ``url`` (by
        default the url of this socket's ``moved``). The old socket is left, the
        mirror, ``you``, ``token`` and ``seq`` start afresh, and ``redirects`` records
        the ``moved`` (with ``from`` and ``player``, the player it ended). Redirects
        from there are followed as in ``join()``, the ``moved`` counting as the first.
        Fires with the client once joined; fails as ``join()`` does."""
        if self._join_args is None:
            raise ValueError("rejoin() follows a join(): this client never joined")
        hello, encoding, max_redirects, opener, join_timeout = self._join_args
        moved, hops = self.moved, 0
        if url is None:
            if moved is None:
                raise ValueError("rejoin() without a url needs a moved to follow")
            url = moved.get("url")
        if not _ws_url(url):
            raise JoinRefused(MOVED, "moved without a ws:// or wss:// url (%r)" % (url,), self)
        if moved is not None:
            self.redirects.append(dict(moved, **{"from": self.url, "player": self.you}))
            hops = 1
        hello = dict(hello, token=None, name=self.name or hello.get("name"))
        self._move_on()
        self._forget_player()
        client = yield join(self, url, hello, encoding, max_redirects=max_redirects,
                            opener=opener, timeout=timeout or join_timeout, _hops=hops)
        return client

    def _follow(self):
        """``follow_moved``: rejoin at once; ``following`` fires with the client when it
        is over, joined again or closed for good (``follow_error`` says why)."""
        target = self.moved.get("url")
        self.following = d = self.rejoin()

        def failed(failure):
            self.follow_error = failure.value
            old, self.proto = self.proto, None
            if old is not None:
                old.client = None
                if old.state == old.STATE_OPEN:
                    old.sendClose(code=1000)
            self.close_code = CLOSE_MOVED
            self.close_reason = "the room moved to %s, and joining it there failed: %s" % (
                target, failure.getErrorMessage())
            if not self.closed.called:
                self.closed.callback((self.close_code, self.close_reason))
            self._check_waiters()
            return self
        d.addErrback(failed)

    # -- waiting ---------------------------------------------------------------------
    def wait_for(self, predicate, timeout=10.0):
        """A Deferred that fires with this client once ``predicate(client)`` is true."""
        d = defer.Deferred()
        if predicate(self):
            d.callback(self)
            return d
        self._waiters.append((predicate, d))
        call = self.reactor.callLater(
            timeout, lambda: not d.called and d.errback(TimeoutError("wait_for timed out")))
        d.addBoth(lambda r: (call.active() and call.cancel(), r)[1])
        return d

    def wait_message(self, t, timeout=10.0, **fields):
        """Fires with the next message of type ``t`` (with those fields) from now on."""
        start = len(self.messages) and self.messages[-1]
        found = []

        def seen(client):
            for m in reversed(client.messages):
                if m is start:
                    break
                if m.get("t") == t and all(m.get(k) == v for k, v in fields.items()):
                    found.append(m)
                    return True
            return False

        return self.wait_for(seen, timeout).addCallback(lambda _: found[-1])

    def wait_ack(self, seq, timeout=10.0):
        return self.wait_for(lambda c: c.ack >= seq, timeout)

    def wait_round_end(self, n=None, timeout=10.0):
        """Fires with a ``round_end`` event: the one of round ``n`` (at once if it is
        already in ``round_results``), or with ``n`` None the next one from now on."""
        last = self.round_results[-1] if self.round_results else None
        found = []

        def seen(client):
            for ev in reversed(client.round_results):
                if n is None and ev is last:
                    break
                if n is None or ev.get("round") == n:
                    found.append(ev)         # (newest first: the last one found is the next)
            return bool(found)

        return self.wait_for(seen, timeout).addCallback(lambda _: found[-1])

    # -- sending -----------------------------------------------------------------------
    def send(self, msg):
        payload, binary = wire.encode(msg, self.encoding)
        self.proto.sendMessage(payload, binary)

    def send_raw(self, payload, is_binary=False):
        self.proto.sendMessage(payload, is_binary)

    def input(self, t, **fields):
        """Send a numbered input; returns its seq."""
        self.seq += 1
        fields["t"] = t
        fields["seq"] = self.seq
        self.send(fields)
        return self.seq

    def hello(self, name=None, room="main", token=None, **extra):
        msg = {"t": "hello", "v": 1, "room": room}
        if name is not None:
            msg["name"] = name
        if token is not None:
            msg["token"] = token
        msg.update(extra)
        self.sync = extra.get("sync") or "state"
        self.send(msg)

    def move(self, dx, dz, dt=50):
        return self.input("move", dt=dt, dir=[dx, dz])

    def spawn(self, at=None):
        return self.input("spawn", **({"at": at} if at is not None else {}))

    def delete(self, eid):
        return self.input("delete", id=eid)

    def order(self, ids, to):
        return self.input("order", ids=list(ids), to=list(to))

    def tag(self, eid, view=None):
        return self.input("tag", id=eid, view=self.tick if view is None else view)

    def say(self, text):
        return self.input("say", text=text)

    def ping(self, ts):
        self.send({"t": "ping", "ts": ts})

    def resync(self):
        self.send({"t": "resync"})

    def close(self, code=1000):
        if self.proto is not None and self.close_code is None:
            self.proto.sendClose(code=code)
        return self.closed

    def drop(self):
        """Cut the TCP connection without a close handshake (a network failure)."""
        if self.proto is not None:
            self.proto.transport.abortConnection()
        return self.closed

    # -- reading the mirror ------------------------------------------------------------
    @property
    def round(self):
        """The room's round (the state's ``round``: ``{"n", "phase": "running" | "ended",
        "points"?, "ends_at"?, "next_at"?, "result"?}``, ticks are state ticks), or None
        when the room runs no rounds."""
        r = self.state.get("round") if isinstance(self.state, dict) else None
        return r if isinstance(r, dict) else None

    def entities(self, kind=None, owner=None):
        """{id: entity} of the mirrored state, filtered by kind and owner."""
        return {int(k): e for k, e in self.state.get("entities", {}).items()
                if (kind is None or e.get("kind") == kind)
                and (owner is None or e.get("owner") == owner)}

    def position(self, entity_id, tick=None):
        """(x, z) of an entity of the mirror at state tick ``tick`` (default: the tick
        of the last state message). For a ``sync: "intent"`` client a moving cube is
        extrapolated from its ``pos``, ``to`` and ``since`` (PROTOCOL.md 11,
        ``arbiter.games.cubes.extrapolate``) and rounded to 0.01 (intent positions
        may come as float32); otherwise it is the entity's ``pos``. KeyError if the
        mirror has no such entity."""
        e = self.state["entities"][str(entity_id)]
        if self.sync != "intent":
            pos = e["pos"]
            return pos[0], pos[2]
        x, z = extrapolate(e, self.tick if tick is None else tick, self.rate,
                           self.world["speed"])
        return round2(x), round2(z)

    def my_cubes(self):
        return self.entities("cube", self.you)

    def my_avatar(self):
        for eid, e in self.entities("avatar", self.you).items():
            return eid, e
        return None, None


def open_socket(url, encoding=wire.JSON, reactor=None, protocols=None, client=None,
                protocol=None, **protocol_attrs):
    """Open a connection without saying hello; fires with the ArbiterClient.

    ``client`` reuses a client object (a subclass, say), ``protocol`` is the
    ArbiterClientProtocol subclass to speak with, and ``protocol_attrs`` are set on it."""
    client = client if client is not None else ArbiterClient(reactor)
    offers = protocols if protocols is not None else ([encoding] if encoding else [])
    factory = WebSocketClientFactory(url, protocols=offers or None)
    # closeHandshakeTimeout: Autobahn's 1 s runs on txaio's batched timer, which rounds the
    # deadline down to a whole second, so on a slow link (150 ms round trip) about one close
    # in seven ended 1006 instead of 1000 (docs/NETCODE.md, "Seen through it")
    factory.setProtocolOptions(maxMessagePayloadSize=0, maxFramePayloadSize=0,
                               closeHandshakeTimeout=5)

    def build(addr):
        proto = (protocol or ArbiterClientProtocol)()
        proto.factory = factory
        proto.client = client
        for name, value in protocol_attrs.items():
            setattr(proto, name, value)
        return proto

    def failed(connector, reason):
        if not opened.called:
            opened.errback(ConnectionError("cannot connect to %s: %s"
                                           % (url, reason.getErrorMessage())))

    opened = client._opened_d
    factory.buildProtocol = build
    factory.clientConnectionFailed = failed
    connectWS(factory, timeout=10)
    return opened


def connect(url, name=None, room="main", encoding=None, token=None, reactor=None,
            max_redirects=MAX_REDIRECTS, follow_moved=False, sync=None, **hello_extra):
    """Connect, say hello, and fire with the client once the first snapshot is in
    (in a lockstep room, once ``welcome`` is in: those rooms send no snapshot).

    ``sync`` is the hello's sync mode: None (not sent: ``"state"``), ``"state"``,
    ``"intent"`` or ``"compact"``. ``encoding`` defaults to JSON, or MessagePack for
    ``"compact"`` (which needs it: with JSON the server refuses the hello).

    A ``moved`` answer (cluster mode) is followed: the same hello goes to its URL,
    at most ``max_redirects`` times in a row; ``client.url`` is where it joined.
    Fails with ``JoinRefused`` if the server answers the hello with an error
    (``TooManyRedirects`` past the redirects), ``ConnectionError`` if a server
    cannot be reached or closes first. ``follow_moved``: see ``join()``."""
    hello = dict(hello_extra, name=name, room=room, token=token)
    if sync is not None:
        hello["sync"] = sync
    return join(ArbiterClient(reactor), url, hello, encoding, max_redirects=max_redirects,
                follow_moved=follow_moved)


def _ws_url(url):
    return isinstance(url, str) and url.startswith(("ws://", "wss://"))


@defer.inlineCallbacks
def join(client, url, hello, encoding=None, max_redirects=MAX_REDIRECTS, opener=None,
         timeout=10.0, follow_moved=None, _hops=0):
    """Open ``client``'s socket to ``url``, say ``hello`` (the keyword arguments of
    ``ArbiterClient.hello``), follow ``moved`` answers, and fire with the client once
    joined (as ``connect``). ``encoding`` defaults to JSON, or MessagePack for a hello
    with ``sync: "compact"``. ``opener(client, url, encoding)`` opens a socket for the
    client (default: ``open_socket`` with the client's own protocol); ``timeout``
    bounds each wait for the server's answer.

    ``follow_moved`` (None leaves ``client.follow_moved`` as it is): a ``moved``
    after the join makes the client ``rejoin()`` by itself, as a new player at the
    room's node; without it the client records ``moved`` and closes (4005)."""
    if encoding is None:
        encoding = wire.MSGPACK if hello.get("sync") == "compact" else wire.JSON
    if opener is None:
        def opener(client, url, encoding):
            return open_socket(url, encoding, client=client)
    if follow_moved is not None:
        client.follow_moved = follow_moved
    client._join_args = (dict(hello), encoding, max_redirects, opener, timeout)
    hops = _hops
    while True:
        client.url = url
        try:
            yield opener(client, url, encoding)
        except ConnectionError as e:
            if not hops:
                raise
            raise ConnectionError("%s (redirected there by %s)" % (e, client.redirects[-1]["from"]))
        last_error = client.errors[-1] if client.errors else None
        client.hello(**hello)
        yield client.wait_for(lambda c: c.joined or (c.errors and c.errors[-1] is not last_error)
                              or c.moved is not None, timeout)
        if client.joined:
            return client
        if client.moved is None:
            err = client.errors[-1]
            raise JoinRefused(err["code"], err["msg"], client)
        target = client.moved.get("url")
        if not _ws_url(target):
            raise JoinRefused(MOVED, "moved without a ws:// or wss:// url (%r)" % (target,),
                              client)
        if hops >= max_redirects:
            raise TooManyRedirects(
                "too many redirects: %d followed in a row, then %s moved the room to %s"
                % (hops, url, target), client)
        hops += 1
        client.redirects.append(dict(client.moved, **{"from": url}))
        client._move_on()
        url = target


class JoinRefused(Exception):
    def __init__(self, code, msg, client):
        super().__init__("%s: %s" % (code, msg))
        self.code = code
        self.client = client


class TooManyRedirects(JoinRefused):
    """More ``moved`` answers in a row than a join follows (code ``moved``)."""

    def __init__(self, msg, client):
        super().__init__(MOVED, msg, client)
