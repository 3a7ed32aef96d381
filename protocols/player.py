"""PlayerProtocol: one WebSocket connection, holding that player's async state."""

import struct
from collections import deque

from autobahn.twisted.websocket import ConnectionDeny, WebSocketServerProtocol
from twisted.logger import Logger
from zope.interface import implementer
from twisted.internet.interfaces import IPushProducer

from arbiter.quietlog import QuietLog
from arbiter.room import INPUT_QUEUE_PAUSE, JoinError
from protocols import wire
from protocols.framing import server_frame, write_now

log = Logger()

BAD_MESSAGE_LIMIT = 20       # the 20th bad_message within the window closes with 1008
BAD_MESSAGE_WINDOW = 10.0


@implementer(IPushProducer)
class PlayerProtocol(WebSocketServerProtocol):
    """The network edge for one player: decode, answer bad input, hand inputs to the room.

    It registers itself as the transport's push producer, so the transport tells
    it when its write buffer is full (``congested``): state messages are then
    skipped and replaced by one ``snapshot`` once the buffer drains.
    """

    _quiet = None        # QuietLog, made on the first mistake (quiet_log)

    def __init__(self):
        super().__init__()
        self.encoding = wire.JSON
        self.player = None
        self.room = None
        self.congested = False
        self.congested_bytes = 0
        self.reading_paused = False
        self._bad_times = deque()
        self._gone = False

    # -- handshake -----------------------------------------------------------
    def onConnect(self, request):
        for offer in request.protocols:
            if offer in wire.SUBPROTOCOLS:
                self.encoding = offer
                return offer
        if request.protocols:
            raise ConnectionDeny(400, "unsupported subprotocol: offer %s or %s"
                                 % wire.SUBPROTOCOLS)
        return None

    def onOpen(self):
        transport = self.transport
        try:
            transport.unregisterProducer()     # twisted.web's channel, after the takeover
        except Exception:
            pass
        try:
            transport.registerProducer(self, True)
        except Exception:
            pass
        self.factory.connection_opened(self)

    # -- IPushProducer: the transport's write buffer -------------------------------
    def pauseProducing(self):
        self.congested = True
        self.congested_bytes = 0

    def resumeProducing(self):
        self.congested = False
        self.congested_bytes = 0

    def stopProducing(self):
        pass

    # -- sending -------------------------------------------------------------------
    def send_payload(self, payload, is_binary):
        if self._gone:
            return
        if self.congested:
            self.congested_bytes += len(payload)
            if self.congested_bytes > self.factory.config.send_buffer_limit:
                log.warn("dropping {peer}: {n} bytes queued and not read",
                         peer=self.peer, n=self.congested_bytes)
                self.factory.slow_consumer_dropped(self)
                self._gone = True
                self.transport.abortConnection()
                return
        if self.state != self.STATE_OPEN:
            return                       # closing: nothing more is read on the other side
        self.factory.count_out(len(payload))
        if self._perMessageCompress is None:
            # Framed here: Autobahn's sendMessage applies the *incoming* size cap
            # (maxMessagePayloadSize) to what the server sends, so a large snapshot
            # or lockstep catchup would raise.
            write_now(self.transport, server_frame(payload, is_binary))
        else:
            self.sendMessage(payload, is_binary)

    def send_msg(self, msg):
        self.send_payload(*wire.encode(msg, self.encoding))

    def send_error(self, code, text):
        self.send_msg({"t": "error", "code": code, "msg": text})

    def close_with(self, code, reason):
        if code < 3000 and code != 1000:
            self.sendCloseFrame(code=code, reasonUtf8=reason.encode("utf-8"))
        else:
            self.sendClose(code=code, reason=reason)

    # -- receiving -------------------------------------------------------------------
    def onMessage(self, payload, isBinary):
        try:
            t, raw = wire.classify(payload, isBinary, self.encoding)
            if self.player is None:
                if t != "hello":
                    raise wire.WireError(wire.NOT_JOINED, "send hello before %s" % t)
            elif t == "hello":
                raise wire.WireError(wire.ALREADY_JOINED, "this connection has joined already")
            msg = wire.validate(t, raw)
            if t == "hello":
                self._hello(msg)
            elif t in wire.INPUT_TYPES:
                if self.room.submit(self.player, msg) >= INPUT_QUEUE_PAUSE:
                    self._pause_reading()
            elif t == "ping":
                self._pong(msg)
            elif t == "resync":
                self.room.request_snapshot(self.player)
            else:
                self.room.handle_message(self.player, msg)
        except wire.WireError as e:
            self._wire_error(e)
        except Exception:
            self.quiet_log().failure("internal_error", "{peer}: failed on a {size}-byte message",
                                     peer=self.peer, size=len(payload))
            self.send_error("internal_error", "the server failed on this message")

    def _pong(self, msg):
        self.send_msg({"t": "pong", "ts": msg["ts"],
                       "now": round(self.factory.service.monotonic() * 1000, 3),
                       "tick": self.room.tick})

    def quiet_log(self):
        """This connection's log of client mistakes and failures: the first of
        each kind in full, then counts (summarised when the connection closes)."""
        if self._quiet is None:
            self._quiet = QuietLog(self.factory.service.clock.seconds, log, subject=self.peer)
        return self._quiet

    def _wire_error(self, e):
        self.send_error(e.code, e.msg)
        if e.code != wire.BAD_MESSAGE:
            return
        self.quiet_log().warn("bad_message", "{peer} sent a bad message: {msg}",
                              peer=self.peer, msg=e.msg)
        now = self.factory.service.clock.seconds()
        times = self._bad_times
        times.append(now)
        while times and times[0] <= now - BAD_MESSAGE_WINDOW:
            times.popleft()
        if len(times) >= BAD_MESSAGE_LIMIT:
            self.close_with(wire.CLOSE_POLICY, "too many bad messages")

    def _hello(self, msg):
        try:
            room, player, _ = self.factory.service.join(msg)
        except JoinError as e:
            self.send_error(e.code, e.msg)
            if e.close_code:
                self.close_with(e.close_code, e.msg)
            return
        self.room = room
        self.player = player
        self.factory.register(player, self)
        room.welcome(player)

    def _pause_reading(self):
        if not self.reading_paused:
            self.reading_paused = True
            self.transport.pauseProducing()
            self.factory.paused_readers.add(self)

    def resume_reading(self):
        if self.reading_paused and not self._gone:
            self.reading_paused = False
            self.transport.resumeProducing()

    def onPong(self, payload):
        if len(payload) == 8 and self.player is not None:
            (sent,) = struct.unpack("!d", payload)
            rtt = self.factory.service.monotonic() - sent
            if 0 <= rtt < 60:
                self.player.rtt_ms = int(round(rtt * 1000))

    def send_ping(self):
        self.sendPing(struct.pack("!d", self.factory.service.monotonic()))

    def onClose(self, wasClean, code, reason):
        self._gone = True
        if self._quiet is not None:
            self._quiet.flush()
        self.factory.connection_closed(self)
