"""ArbiterFactory: the registry of PlayerProtocols and the rooms' outbox."""

from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from arbiter import codes, compact
from arbiter.interfaces import IOutbox
from arbiter.quietlog import LogBudget, QuietLog
from protocols import wire
from protocols.framing import InlineFraming, server_frame
from protocols.player import PlayerProtocol

log = Logger()

_OPEN = PlayerProtocol.STATE_OPEN


class FramedPlayerProtocol(InlineFraming, PlayerProtocol):
    """PlayerProtocol that reads its busiest frames in-line (protocols/framing.py)."""


@implementer(IOutbox)
class ArbiterFactory(WebSocketServerFactory):
    """Registers each PlayerProtocol on open, by player id on ``hello``, and
    unregisters it on close. Rooms send through it: ``send`` to one player,
    ``broadcast`` to a room with the frame prepared once per encoding, and
    ``send_state`` with each player's own ``ack`` spliced into a patch encoded
    once per room and encoding.
    """

    protocol = FramedPlayerProtocol

    def __init__(self, service, url=None, ping_interval=1.0):
        super().__init__(url)
        self.service = service
        self.config = service.config
        self.metrics = service.metrics
        service.outbox = self
        self.players = {}            # player id -> PlayerProtocol
        self.connections = set()
        self.paused_readers = set()
        self.failures = QuietLog(service.clock.seconds, log)
        # lines the whole server may log about its clients (arbiter/quietlog.py)
        self.log_budget = LogBudget(service.clock.seconds, log=log)
        size = self.config.max_message_size
        self.setProtocolOptions(
            maxMessagePayloadSize=size, maxFramePayloadSize=size, failByDrop=False,
            openHandshakeTimeout=10, closeHandshakeTimeout=5, autoFragmentSize=0,
        )
        self._closed_waiters = []
        self._ping_loop = LoopingCall(self._ping_all)
        self._ping_loop.clock = service.clock
        timeout = self.config.ping_timeout
        if timeout:
            # the ping timeout (PROTOCOL.md 9.4) needs a ping at least every
            # min(5, ping_timeout / 3) s; the loop checks it on the same round
            bound = min(5.0, timeout / 3.0)
            ping_interval = min(ping_interval, bound) if ping_interval else bound
        self.ping_interval = ping_interval

    # -- registry --------------------------------------------------------------
    def connection_opened(self, proto):
        self.connections.add(proto)
        if self.metrics is not None:
            self.metrics.connections.inc()
        if not self._ping_loop.running and self.ping_interval:
            self._ping_loop.start(self.ping_interval, now=False)

    def register(self, player, proto):
        self.players[player.id] = proto

    def connection_closed(self, proto):
        if proto not in self.connections:
            return
        self.connections.discard(proto)
        self.paused_readers.discard(proto)
        if self.metrics is not None:
            self.metrics.connections.dec()
        player = proto.player
        if player is not None and self.players.get(player.id) is proto:
            del self.players[player.id]
            proto.room.disconnect(player)
        if not self.connections:
            if self._ping_loop.running:
                self._ping_loop.stop()
            waiters, self._closed_waiters = self._closed_waiters, []
            for d in waiters:
                if not d.called:         # close_all's 2 s may have run out (a silent peer)
                    d.callback(None)

    # -- the outbox --------------------------------------------------------------
    def send(self, player, msg):
        proto = self.players.get(player.id)
        if proto is not None:
            proto.send_msg(msg)

    def broadcast(self, room, msg, exclude=None):
        prepared = {}
        for player in room.players.values():
            if player is exclude or not player.connected:
                continue
            proto = self.players.get(player.id)
            if proto is None:
                continue
            enc = proto.encoding
            frame = prepared.get(enc)
            if frame is None:
                try:
                    payload, binary = wire.encode(msg, enc)
                except Exception:
                    self._encode_failed(msg.get("t"), room, enc)
                    frame = prepared[enc] = False
                else:
                    frame = prepared[enc] = (self.prepareMessage(payload, binary), len(payload))
            if frame is False:
                proto.send_error(codes.INTERNAL_ERROR, "the server could not encode a %s "
                                 "message for you" % msg.get("t"))
            elif proto.state == _OPEN:
                self.count_out(frame[1])
                proto.sendPreparedMessage(frame[0])    # Autobahn's sendData: write_frame

    def congested(self, player):
        """True while ``player``'s connection cannot take state (its buffer is
        full), False when it can, None when it has no open connection here."""
        proto = self.players.get(player.id)
        return None if proto is None else proto.congested

    def send_state(self, room, tick, deliveries, bodies):
        """This state tick's messages: ``deliveries`` are (player, kind, ack, view)
        as the room decided them, ``bodies`` the map to encode (and float32) per
        (kind, view). Each body is encoded once per encoding; each player's frame
        is it with its own ``ack`` spliced in, written straight to the transport as
        one unmasked WebSocket frame (``framing.server_frame``). Returns the
        players whose message could not be encoded (the room resends a snapshot)."""
        parts = {}
        players = self.players
        failed = []
        sent = 0
        for player, kind, ack, view in deliveries:
            proto = players.get(player.id)
            if proto is None:
                continue
            enc = proto.encoding
            # the sync mode: ``view`` is its name, or (name, ...) under a game's view
            compact_sync = (view if view.__class__ is str else view[0]) == "compact"
            k = (kind, enc, view)
            frame = parts.get(k)
            if frame is None:
                try:
                    src, float32 = bodies[kind, view]
                    if compact_sync:
                        # binary records (arbiter/compact.py): ``src`` is the sections
                        head, tail = compact.frame_parts(kind, tick, src)
                        frame = parts[k] = (head, tail, True)
                    else:
                        body = wire.encode_patch(src, enc, float32=float32)
                        head, tail = wire.state_frame_parts(
                            kind, tick, body, enc, "state" if kind == "snapshot" else "patch")
                        frame = parts[k] = (head, tail, enc == wire.MSGPACK)
                except Exception:
                    # a game put something in its state that this encoding cannot
                    # carry: the others still get theirs
                    self._encode_failed(kind, room, enc)
                    frame = parts[k] = False
            if frame is False:
                failed.append(player)
                continue
            payload = frame[0] + (compact.varuint(ack) if compact_sync
                                  else wire.ack_bytes(ack, enc)) + frame[1]
            if proto.state == _OPEN and proto._perMessageCompress is None:
                # what Autobahn's sendMessage would put on the wire, without its
                # per-frame bookkeeping (not congested here: straight to write_now)
                proto.write_frame(server_frame(payload, frame[2]))
                sent += len(payload)
            else:
                proto.send_payload(payload, frame[2])
        if sent and self.metrics is not None:
            self.metrics.bytes_out.inc(sent)
        return failed

    def close(self, player, code, reason):
        proto = self.players.pop(player.id, None)
        if proto is not None:
            proto.close_with(code, reason)

    def close_all(self, code, reason):
        """Close every connection; the Deferred fires when all are gone (or after 2 s)."""
        if not self.connections:
            return defer.succeed(None)
        d = defer.Deferred()
        self._closed_waiters.append(d)
        for proto in list(self.connections):
            proto.close_with(code, reason)
        timeout = self.service.clock.callLater(2.0, lambda: not d.called and d.callback(None))
        d.addBoth(lambda r: (timeout.active() and timeout.cancel(), r)[1])
        return d

    def after_tick(self):
        if self.paused_readers:
            readers, self.paused_readers = self.paused_readers, set()
            for proto in readers:
                proto.resume_reading()

    def _encode_failed(self, t, room, enc):
        self.failures.failure("encode %s %s" % (t, enc), "room {room}: a {t} message could "
                              "not be encoded in {enc}", room=room.name, t=t, enc=enc)

    # -- housekeeping -------------------------------------------------------------
    def _ping_all(self):
        """One round for every joined connection: a WebSocket ping, or, for one with
        no pong (nor welcome) in ``Config.ping_timeout`` s, the close 4008
        (``PlayerProtocol.ping_timed_out``). Connections without a player are left
        to the hello deadline."""
        timeout = self.config.ping_timeout
        due = self.service.clock.seconds() - timeout if timeout else None
        for proto in list(self.connections):
            if proto.player is None:
                continue
            if due is not None and proto.last_pong is not None and proto.last_pong <= due:
                proto.ping_timed_out()
            else:
                proto.send_ping()

    def count_out(self, n):
        if self.metrics is not None:
            self.metrics.bytes_out.inc(n)

    def slow_consumer_dropped(self, proto):
        if self.metrics is not None:
            self.metrics.slow_drops.inc()
