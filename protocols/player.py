"""PlayerProtocol: one WebSocket connection, holding that player's async state."""

import struct
from collections import deque

from autobahn.twisted.websocket import ConnectionDeny, WebSocketServerProtocol
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer
from twisted.internet.interfaces import IPushProducer

from arbiter import codes
from arbiter.quietlog import QuietLog
from arbiter.room import INPUT_QUEUE_PAUSE, JoinError
from arbiter.rules import TokenBucket
from arbiter.schema import WireError
from protocols import wire
from protocols.framing import queued, server_frame, write_now

log = Logger()

BAD_MESSAGE_LIMIT = 20       # the 20th bad_message within the window closes with 1008
BAD_MESSAGE_WINDOW = 10.0
MAX_WHILE_JOINING = 64       # messages kept while a hello waits for Redis (cluster mode)
PING_TIMEOUT_ABORT = 1.0     # seconds a connection closed for its ping timeout has to answer


class _AutobahnLog:
    """What Autobahn logs about one connection (a failed handshake, a frame that
    breaks the rules, a dropped connection): its debug lines are dropped, the
    rest go to the log within the server's budget for lines about clients
    (``ArbiterFactory.log_budget``), so reconnecting clients cannot flood it."""

    def __init__(self, proto):
        self._proto = proto

    def trace(self, *args, **kwargs):
        pass

    debug = trace

    def _line(self, level, fmt, **kwargs):
        factory = getattr(self._proto, "factory", None)
        budget = getattr(factory, "log_budget", None)
        if budget is None or budget.allow():
            getattr(log, level)(fmt, **kwargs)

    def info(self, fmt, **kwargs):
        self._line("info", fmt, **kwargs)

    def warn(self, fmt, **kwargs):
        self._line("warn", fmt, **kwargs)

    def error(self, fmt, **kwargs):
        self._line("error", fmt, **kwargs)

    critical = error

    def failure(self, fmt=None, failure=None, **kwargs):
        log.failure(fmt or "Autobahn: {log_failure}", failure=failure, **kwargs)


@implementer(IPushProducer)
class PlayerProtocol(WebSocketServerProtocol):
    """The network edge for one player: decode, answer bad input, hand inputs to the room.

    It registers itself as the transport's push producer, so the transport tells
    it when its write buffer is full (``congested``): state messages are then
    skipped and replaced by one ``snapshot`` once the buffer drains.

    Every byte for the connection is written by :meth:`write_frame`, which holds
    what the transport queues under ``Config.send_buffer_limit`` while it is full.
    """

    _quiet = None        # QuietLog, made on the first mistake (quiet_log)

    def __init__(self):
        super().__init__()
        self.log = _AutobahnLog(self)
        self.encoding = wire.JSON
        self.player = None
        self.room = None
        self.congested = False
        self.congested_bytes = 0
        self.reading_paused = False
        self._bad_times = deque()
        self._gone = False
        self._out_limit = 0          # what may be queued while congested (pauseProducing)
        self._pings = None           # TokenBucket shared by application and WebSocket pings
        self._ping_limited = False   # told rate_limited in this burst of pings
        self._hello_call = None      # the hello deadline (Config.hello_timeout)
        self._joining = None         # messages that came while a hello waits for Redis
        self.last_pong = None        # clock time of welcome, then of the latest pong (ping timeout)
        self._abort_call = None      # the abort after a ping timeout's close frame

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
        self._hello_call = self.factory.service.clock.callLater(
            self.factory.config.hello_timeout, self._hello_expired)

    def _hello_expired(self):
        self._hello_call = None
        if self.player is None and self.state == self.STATE_OPEN:
            self.close_with(codes.CLOSE_POLICY, "no valid hello within %g s"
                            % self.factory.config.hello_timeout)

    def _stop_hello_deadline(self):
        call, self._hello_call = self._hello_call, None
        if call is not None and call.active():
            call.cancel()

    # -- IPushProducer: the transport's write buffer -------------------------------
    def pauseProducing(self):
        # Twisted calls this again after every write to a full buffer: only the
        # first call starts a congested spell (and its count).
        if self.congested:
            return
        self.congested = True
        held = queued(self.transport)
        self.congested_bytes = held or 0
        limit = self.factory.config.send_buffer_limit
        # One message larger than the limit (a big snapshot) written to a buffer
        # that was not full may drain: until the buffer is empty, what it held
        # then is the limit.
        self._out_limit = held if held is not None and held > limit else limit

    def resumeProducing(self):
        self.congested = False       # Twisted resumes once its buffer is empty
        self.congested_bytes = 0

    def stopProducing(self):
        pass

    # -- sending -------------------------------------------------------------------
    def write_frame(self, data, at_once=True):
        """Write ``data`` (whole frames, or the handshake) to the transport: every
        byte for this connection comes through here, state frames
        (``ArbiterFactory.send_state``), messages (:meth:`send_payload`) and, through
        :meth:`sendData`, all that Autobahn writes (the handshake, prepared
        broadcasts, pings, pongs, close frames). ``at_once``: try the socket now
        (``framing.write_now``) rather than leave it to the reactor (Autobahn's own
        writes keep Twisted's timing).

        While the transport's buffer is full (``congested``) what it holds plus
        ``data`` may not pass the output limit (``Config.send_buffer_limit``): past
        it nothing more is written and the connection is aborted; the player keeps
        its grace period."""
        if self.congested:
            self._write_congested(data)
        elif at_once:
            write_now(self.transport, data)
        else:
            self.transport.write(data)

    def _write_congested(self, data):
        if self._gone:
            return
        held = queued(self.transport)          # exact for TCP; else counted since the pause
        total = (self.congested_bytes if held is None else held) + len(data)
        if total > self._out_limit:
            log.warn("dropping {peer}: {n} bytes queued and not read", peer=self.peer, n=total)
            self.factory.slow_consumer_dropped(self)
            self._gone = True
            self.transport.abortConnection()
            return
        self.congested_bytes = total
        self.transport.write(data)

    def sendData(self, data, sync=False, chopsize=None):
        # Autobahn's one door to the transport; its sync/chopsize modes (used by its
        # own test suite) are not used here, so every write goes through write_frame.
        self.write_frame(data, at_once=False)

    def send_payload(self, payload, is_binary):
        if self._gone or self.state != self.STATE_OPEN:
            return                       # closing: nothing more is read on the other side
        self.factory.count_out(len(payload))
        if self._perMessageCompress is None:
            # Framed here: Autobahn's sendMessage applies the *incoming* size cap
            # (maxMessagePayloadSize) to what the server sends, so a large snapshot
            # or lockstep catchup would raise.
            self.write_frame(server_frame(payload, is_binary))
        else:
            self.sendMessage(payload, is_binary)

    def send_msg(self, msg):
        try:
            encoded = wire.encode(msg, self.encoding)
        except Exception:
            # a bug on the server's side (client input is checked at the edge): this
            # player is told, the log gets one traceback, and the caller goes on
            t = str(msg.get("t"))
            self.quiet_log().failure("encode " + t, "{peer}: a {t} message could not be "
                                     "encoded", peer=self.peer, t=t)
            encoded = wire.encode({"t": "error", "code": codes.INTERNAL_ERROR,
                                   "msg": "the server could not encode a %s message for you"
                                   % t}, self.encoding)
        self.send_payload(*encoded)

    def send_error(self, code, text):
        self.send_msg({"t": "error", "code": code, "msg": text})

    def close_with(self, code, reason):
        # a close frame holds at most 125 bytes: the code and 123 of reason (RFC 6455
        # 5.5); a longer one makes the client drop the connection (1006)
        raw = reason.encode("utf-8")
        if len(raw) > 123:
            reason = raw[:120].decode("utf-8", "ignore") + "..."
        if code < 3000 and code != codes.CLOSE_ENDED:
            self.sendCloseFrame(code=code, reasonUtf8=reason.encode("utf-8"))
        else:
            self.sendClose(code=code, reason=reason)

    # -- receiving -------------------------------------------------------------------
    def onMessage(self, payload, isBinary):
        if self._joining is not None:
            # a hello is being placed (cluster mode): keep what follows it, in order,
            # and stop reading until the hello is answered
            if len(self._joining) >= MAX_WHILE_JOINING:
                self.close_with(codes.CLOSE_POLICY, "too many messages before welcome")
                return
            self._joining.append((payload, isBinary))
            return
        try:
            schema = self.factory.service.schema
            raw = wire.parse(payload, isBinary, self.encoding)
            t = schema.classify(raw)
            if self.player is None:
                if t != codes.HELLO:
                    raise WireError(codes.NOT_JOINED, "send hello before %s" % t)
            elif t == codes.HELLO:
                raise WireError(codes.ALREADY_JOINED, "this connection has joined already")
            msg = schema.validate(t, raw)
            if t == codes.HELLO:
                self._hello(msg)
            elif schema.is_input(t):
                if self.room.submit(self.player, msg) >= INPUT_QUEUE_PAUSE:
                    self._pause_reading()
            elif t == codes.PING:
                self._pong(msg)
            elif t == codes.RESYNC:
                self.room.request_snapshot(self.player)
            else:
                self.room.handle_message(self.player, msg)
        except WireError as e:
            self._wire_error(e)
        except Exception:
            self.quiet_log().failure("internal_error", "{peer}: failed on a {size}-byte message",
                                     peer=self.peer, size=len(payload))
            self.send_error(codes.INTERNAL_ERROR, "the server failed on this message")

    def _pong(self, msg):
        if not self._ping_allowed(tell=True):
            return
        self.send_msg({"t": "pong", "ts": msg["ts"],
                       "now": round(self.factory.service.monotonic() * 1000, 3),
                       "tick": self.room.tick})

    def quiet_log(self):
        """This connection's log of client mistakes and failures: the first of
        each kind in full, then counts (summarised when the connection closes)."""
        if self._quiet is None:
            self._quiet = QuietLog(self.factory.service.clock.seconds, log, subject=self.peer,
                                   budget=self.factory.log_budget)
        return self._quiet

    def _wire_error(self, e):
        self.send_error(e.code, e.msg)
        if e.code != codes.BAD_MESSAGE:
            return
        self.quiet_log().warn("bad_message", "{peer} sent a bad message: {msg}",
                              peer=self.peer, msg=e.msg)
        now = self.factory.service.clock.seconds()
        times = self._bad_times
        times.append(now)
        while times and times[0] <= now - BAD_MESSAGE_WINDOW:
            times.popleft()
        if len(times) >= BAD_MESSAGE_LIMIT:
            self.close_with(codes.CLOSE_POLICY, "too many bad messages")

    def _hello(self, msg):
        if msg.get("sync") == "compact" and self.encoding != wire.MSGPACK:
            # compact state frames are binary: they come with the MessagePack subprotocol
            self._wire_error(WireError(codes.BAD_MESSAGE, "sync 'compact' needs the %s "
                                       "subprotocol" % wire.MSGPACK))
            return
        try:
            joined = self.factory.service.join(msg, peer=self.peer)
        except JoinError as e:
            self._refused(e)
            return
        if isinstance(joined, Deferred):
            # cluster mode: the room's node is being found in Redis; or the
            # authenticator is checking the credentials
            self._joining = []
            self.transport.pauseProducing()
            joined.addCallbacks(self._placed, self._placement_failed)
            return
        self._joined(*joined)

    def _refused(self, e):
        self.send_msg(e.wire())
        if e.close_code:
            self.close_with(e.close_code, e.msg)

    def _placed(self, joined):
        waiting, self._joining = self._joining, None
        room, player, _ = joined
        if self._gone:
            # closed while Redis answered: the player leaves as a dropped one
            room.disconnect(player)
            return
        self._joined(room, player, _)
        self.transport.resumeProducing()
        for payload, is_binary in waiting:
            if self._gone or self.player is None:
                break
            self.onMessage(payload, is_binary)

    def _placement_failed(self, failure):
        self._joining = None
        if self._gone:
            return
        self.transport.resumeProducing()      # the closing handshake reads the answer
        if failure.check(JoinError):
            self._refused(failure.value)
            return
        self.quiet_log().failure("internal_error", "{peer}: placing its hello failed",
                                 failure=failure, peer=self.peer)
        self.send_error(codes.INTERNAL_ERROR, "the server failed on this hello")

    def _joined(self, room, player, _taken_over):
        self.room = room
        self.player = player
        self.last_pong = self.factory.service.clock.seconds()    # the ping timeout starts
        self._stop_hello_deadline()
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

    # -- pings: one token bucket for application and WebSocket pings ----------------
    def _ping_allowed(self, tell):
        """Take a token for one ping (``Config.ping_burst`` at once, ``ping_rate`` a
        second after that). Without one the ping gets no answer (RFC 6455 lets a
        server answer only the latest WebSocket ping); with ``tell`` (an application
        ping) the client gets one ``rate_limited`` error per burst."""
        now = self.factory.service.clock.seconds()
        bucket = self._pings
        if bucket is None:
            config = self.factory.config
            bucket = self._pings = TokenBucket(config.ping_burst, config.ping_rate, now)
        ok = bucket.can_take(now)
        if bucket.tokens >= bucket.capacity:
            self._ping_limited = False       # full again: a new burst may be told
        if ok:
            bucket.take()
            return True
        if tell and not self._ping_limited:
            self._ping_limited = True
            self.send_error(codes.RATE_LIMITED,
                            "too many pings (%d at once, then %g a second): pings are not "
                            "answered until you slow down" % (bucket.capacity, bucket.rate))
        return False

    def onPing(self, payload):
        if self._ping_allowed(tell=False):
            super().onPing(payload)              # the pong

    def onPong(self, payload):
        # any pong counts for the ping timeout, ours or unsolicited (RFC 6455 5.5.3);
        # other frames and messages do not
        self.last_pong = self.factory.service.clock.seconds()
        if len(payload) == 8 and self.player is not None:
            (sent,) = struct.unpack("!d", payload)
            rtt = self.factory.service.monotonic() - sent
            if 0 <= rtt < 60:
                self.player.rtt_ms = int(round(rtt * 1000))

    def send_ping(self):
        self.sendPing(struct.pack("!d", self.factory.service.monotonic()))

    # -- the ping timeout (Config.ping_timeout, PROTOCOL.md 9.4) ------------------------
    def ping_timed_out(self):
        """No pong for ``ping_timeout`` s (``ArbiterFactory._ping_all`` checks): close
        with 4008, and abort the TCP connection if the close is not answered within
        PING_TIMEOUT_ABORT s (a silent peer will not answer it). The room hears of it
        as of any dropped connection, once, from :meth:`onClose`."""
        if self._gone or self.state != self.STATE_OPEN:
            return
        self.quiet_log().warn("ping timeout", "{peer}: no pong for {n:g} s, closing with {code}",
                              peer=self.peer, n=self.factory.config.ping_timeout,
                              code=codes.CLOSE_PING_TIMEOUT)
        self.close_with(codes.CLOSE_PING_TIMEOUT, "ping timeout")
        if not self._gone:
            self._abort_call = self.factory.service.clock.callLater(
                PING_TIMEOUT_ABORT, self._abort_unanswered)

    def _abort_unanswered(self):
        self._abort_call = None
        if not self._gone:
            self._gone = True
            self.transport.abortConnection()     # connectionLost -> onClose -> the room

    def onClose(self, wasClean, code, reason):
        self._gone = True
        self._stop_hello_deadline()
        call, self._abort_call = self._abort_call, None
        if call is not None and call.active():
            call.cancel()
        if self._quiet is not None:
            self._quiet.flush()
        self.factory.connection_closed(self)
