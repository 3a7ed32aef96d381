"""The fuzzer: one in-memory server, honest players and hostile connections."""

import gc
import json
import random
import re
import time

import txaio
from twisted.internet import task
from twisted.logger import globalLogPublisher

from arbiter import codes
from arbiter.config import Config
from protocols.testing import FakeClient
from arbiter.tools.fuzzing.contract import _signature, contract_answer, first_difference
from arbiter.tools.fuzzing.frames import frame_bytes, generate
from arbiter.tools.fuzzing.honest import HonestPlay
from arbiter.tools.fuzzing.report import Report, _Conn
from arbiter.tools.fuzzing.values import BAD_LIMIT, BAD_WINDOW, HELLO_TIMEOUT, JSON, MSGPACK, PINGS_ALWAYS_ANSWERED


class Fuzzer(HonestPlay):
    """One in-memory server, honest players and hostile connections; see the module doc.

    Use as a context manager (it points Autobahn's timers at its clock and
    watches the global log), then call :meth:`hostile`, :meth:`honest_act`,
    :meth:`tick` and :meth:`gap` in any order, and :meth:`finish` for the
    final checks and the :class:`Report`."""

    def __init__(self, seed=0, config=None, honest=(JSON, MSGPACK), hostiles=(JSON, MSGPACK),
                 room="main", game_factory=None, keep_violations=50):
        self.seed = seed
        self.game_factory = game_factory
        self.rng = random.Random("fuzzer/%d" % seed)
        self.config = config or Config(port=0, grace=2.0)
        self.honest_encodings = honest
        self.hostile_encodings = hostiles
        self.room = room
        self.keep = keep_violations
        self.report = Report()
        self.clock = task.Clock()
        self.honest = []
        self.slots = [None] * len(hostiles)
        self._acted = False
        self._tick_no = 0
        self._started = None
        self._old_loop = None
        self.max_size = self.config.max_message_size
        self.hello_timeout = getattr(self.config, "hello_timeout", HELLO_TIMEOUT)
        # pings a connection may send in any second and still get every pong: with a
        # bucket of ping_burst and ping_rate a second, at most ping_rate, at most half the burst
        self.pings_answered = min(getattr(self.config, "ping_rate", PINGS_ALWAYS_ANSWERED),
                                  getattr(self.config, "ping_burst", 2 * PINGS_ALWAYS_ANSWERED) / 2)
        self._current = None             # the frame being sent (for messages)

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        from arbiter.app.server import build
        self._started = time.perf_counter()
        self._old_loop = txaio.config.loop
        txaio.config.loop = self.clock
        globalLogPublisher.addObserver(self._observe)
        self.service, self.factory, _ = build(self.config, clock=self.clock,
                                              monotonic=self.clock.seconds,
                                              game_factory=self.game_factory)
        self.service.startService()
        for i, enc in enumerate(self.honest_encodings):
            self.honest.append(self._join_honest("honest-%d" % i, enc))

    def stop(self):
        try:
            service = getattr(self, "service", None)
            if service is not None and service.running:
                service.stopService()
        finally:
            globalLogPublisher.removeObserver(self._observe)
            txaio.config.loop = self._old_loop

    def _observe(self, event):
        level = event.get("log_level")
        self.report.log_events[getattr(level, "name", str(level))] += 1
        f = event.get("log_failure")
        if f is not None:
            self.report.tracebacks.append("%s: %s (%s)" % (
                getattr(f.type, "__name__", f.type), str(f.value)[:200],
                (event.get("log_format") or "")[:120]))

    # -- bookkeeping -------------------------------------------------------------
    def violation(self, category, text_, sig=None):
        """Note something a client saw (or the log got) that the contract forbids."""
        r = self.report
        r.violation_counts[category] += 1
        frame = self._current
        where = ""
        if frame is not None:
            where = " after %r" % (frame,)
            if frame.origin is not None:
                where += " = generate%r" % (frame.origin,)
        full = "[%s] %s%s" % (category, text_, where)
        sig = "%s: %s%s" % (category, sig or _signature(text_),
                            " (%s frame)" % frame.kind if frame is not None else "")
        r.distinct[sig] += 1
        if sig not in r.examples:
            r.examples[sig] = full
        if len(r.violations) < self.keep:
            r.violations.append(full)

    def _safely(self, what, fn, *args):
        try:
            return fn(*args)
        except Exception as e:
            self.violation("exception", "%s raised %s: %s" % (what, type(e).__name__, e))
            return None


    # -- hostile connections ---------------------------------------------------------
    def _open(self, slot):
        enc = self.hostile_encodings[slot]
        client = FakeClient(self.factory, (enc,))
        self.report.connections += 1
        conn = self.slots[slot] = _Conn(client, enc, self.clock.seconds())
        if client.status != 101:
            self.violation("handshake", "hostile %s connection refused: %s"
                           % (enc, client.response))
        return conn

    def _drop(self, slot):
        conn = self.slots[slot]
        self.slots[slot] = None
        if conn is not None:       # the client goes away (no close handshake)
            self._safely("connectionLost", conn.client.lose)

    def hostile(self, slot, kind, seed, fragment=None):
        """Send hostile frame (kind, seed) on connection ``slot`` and check its answer."""
        conn = self._conn(slot)
        return self.send(slot, generate(kind, seed, conn.encoding, conn.joined, fragment))

    def _conn(self, slot):
        if self.slots[slot] is not None:     # events since its last frame (a leave, say)
            self._hostile_background(slot, self.slots[slot])
        return self.slots[slot] or self._open(slot)

    def send(self, slot, frame):
        """Send ``frame`` on hostile connection ``slot`` (opened if need be) and check
        the answer against the contract; returns (messages, close code) it got."""
        conn = self._conn(slot)
        self.report.frames[frame.kind] += 1
        if frame.fragments:
            self.report.fragmented += 1
        self._current = frame
        try:
            return self._hostile_frame(slot, conn, frame)
        finally:
            self._current = None

    def _hostile_frame(self, slot, conn, frame):
        answer = contract_answer(frame.payload, frame.binary, conn.encoding, conn.joined,
                                 self.max_size, self.service.schema)
        now = self.clock.seconds()
        if frame.pings or (answer.kind == "valid" and answer.msg.t == "ping"):
            conn.ping_times.append(now)
        while conn.ping_times and conn.ping_times[0] <= now - 1.0:
            conn.ping_times.popleft()
        busy_pinger = len(conn.ping_times) > self.pings_answered
        self._safely("dataReceived", conn.client.proto.dataReceived, frame_bytes(frame))
        msgs, close = self._received(conn)
        # everyone else on the server sees only events between ticks
        for other_slot, other in enumerate(self.slots):
            if other is not None and other is not conn:
                self._hostile_background(other_slot, other)
        self._count(msgs, close)
        seen = msgs
        if busy_pinger:       # over the ping rate, one rate_limited error may come with any answer
            msgs = [m for m in msgs if m.get("code") != codes.RATE_LIMITED or m.get("t") != "error"]
        self._judge(conn, answer, msgs, close, busy_pinger)
        for m in msgs:        # follow the server, right or wrong, so one mistake is reported once
            if m.get("t") == "welcome" or m.get("code") == codes.ALREADY_JOINED:
                conn.joined = True
        if close is not None or conn.client.close_code is not None:
            self._drop(slot)
        return seen, close

    def _count(self, msgs, close):
        for m in msgs:
            if m.get("t") == "error":
                self.report.errors[m.get("code")] += 1
            elif m.get("t") == "reject":
                self.report.rejects[m.get("code")] += 1
        if close is not None:
            self.report.closes[close] += 1

    def _judge(self, conn, answer, msgs, close, busy_pinger):
        """Compare what the connection got with what the contract says it gets."""
        def wrong(expected):
            got = ", ".join("%s %s" % (m.get("t"), m.get("code", "")) if m.get("t") == "error"
                            else str(m.get("t")) for m in msgs) or "nothing"
            got += ", close %s" % close if close else ""
            why = re.sub(r"-?\d+", "N", answer.why.split(":")[0])[:40]
            self.violation("contract", "expected %s (%s), got %r%s" % (
                expected, answer.why, msgs[:4], ", close %s" % close if close else ""),
                sig="expected %s (%s), got %s" % (expected, why, got))

        kinds = [m.get("t") for m in msgs]
        if answer.kind == "crash":
            self.violation("contract", "the validator raised on a frame: %s" % answer.why)
            return
        if answer.kind == "close":
            if close != answer.code or msgs:
                wrong("close %d" % answer.code)
            return
        if answer.kind == "error":
            errs = [m.get("code") for m in msgs if m.get("t") == "error"]
            if kinds != ["error"] or errs != [answer.code]:
                wrong("error %s" % answer.code)
                if codes.BAD_MESSAGE in errs:
                    self._note_bad(conn)
                return
            if answer.code != codes.BAD_MESSAGE:
                if close is not None:
                    wrong("error %s and no close" % answer.code)
                return
            limit = self._note_bad(conn)
            if limit and close != codes.CLOSE_POLICY:
                wrong("error bad_message and close 1008 (the %dth within 10 s)" % BAD_LIMIT)
            elif not limit and close is not None:
                wrong("error bad_message and no close")
            return
        msg = answer.msg
        t = msg.t
        if t == "hello":
            self._judge_hello(conn, msg, msgs, close, wrong)
        elif t == "ping":
            if kinds == ["pong"] and msgs[0].get("ts") == msg["ts"] and close is None:
                return
            if busy_pinger and not msgs and close is None:
                return           # over the ping rate: no pong
            wrong("pong with ts %r" % (msg["ts"],))
        else:                     # resync and numbered inputs: answered on the tick
            if msgs or close is not None:
                wrong("nothing until the next tick")

    def _judge_hello(self, conn, msg, msgs, close, wrong):
        kinds = [m.get("t") for m in msgs]
        if kinds == ["welcome", "snapshot"] and close is None and "token" not in msg.fields:
            w = msgs[0]
            if w.get("room") != msg["room"] or (
                    "name" in msg.fields and w.get("name") != msg["name"]):
                wrong("welcome to room %r as %r" % (msg["room"], msg.get("name")))
            conn.joined = True
            conn.you = w.get("you")
            conn.room = msg["room"]
            self.report.joins += 1
            return
        if kinds == ["error"]:
            code = msgs[0].get("code")
            if code == codes.BAD_TOKEN and "token" in msg.fields and close == codes.CLOSE_BAD_TOKEN:
                return
            if code == codes.ROOM_FULL and close == codes.CLOSE_ROOM_FULL and msg["role"] == "player":
                return
        wrong("welcome + snapshot (or bad_token/4001, room_full/4003)")

    def _note_bad(self, conn):
        """Count a bad_message; True if it is the 20th within the window."""
        now = self.clock.seconds()
        conn.bad_times.append(now)
        while conn.bad_times and conn.bad_times[0] <= now - BAD_WINDOW:
            conn.bad_times.popleft()
        return len(conn.bad_times) >= BAD_LIMIT

    def _hostile_background(self, slot, conn):
        """Messages to a hostile connection it did not just ask for (events, state)."""
        msgs, close = self._received(conn)
        if not msgs and close is None:
            return
        self._count(msgs, close)
        for m in msgs:
            t = m.get("t")
            if t in ("delta", "snapshot", "event", "correct", "reject"):
                continue
            self.violation("unexpected", "%s got %r between its frames" % (self._who(conn), m),
                           sig="a hostile connection got %s %s" % (t, m.get("code", "")))
        if close is not None:
            age = self.clock.seconds() - conn.opened_at
            if not (close == codes.CLOSE_POLICY and not conn.joined
                    and age >= self.hello_timeout - 1e-6):
                self.violation("unexpected", "%s closed with %s (joined %s, %.2f s old)"
                               % (self._who(conn), close, conn.joined, age))
            self._drop(slot)

    # -- time ---------------------------------------------------------------------------
    def tick(self):
        """Honest players act (if they have not yet) and the server ticks once."""
        self.honest_act()
        for _ in range(self.config.tick_spread):   # a whole period: every slot ticks once
            self._next_loop_call()
        self._advance(0)

    def _next_loop_call(self):
        ticks = self.service.ticks
        for _ in range(3):
            # to the loop's next call; after a gap that ended on an interval boundary
            # that call can find itself in the same interval (float rounding) and
            # tick nothing, so go on to the following one
            loop = self.service._loop
            due = loop.call.getTime() if loop is not None and loop.call is not None else \
                self.clock.seconds() + 1.0 / self.config.tick_rate
            step = max(0.0, due - self.clock.seconds()) + 1e-9
            self._safely("the clock", self.clock.advance, step)
            if self.service.ticks != ticks:
                break

    def gap(self, seconds):
        """A quiet stretch of ``seconds`` (one late tick for everything queued)."""
        self._advance(seconds)

    def _advance(self, seconds):
        self._safely("the clock", self.clock.advance, seconds)
        self._acted = False
        self._tick_no += 1
        self.report.ticks += 1
        self.drain()
        self._check_honest_tick()

    def drain(self):
        """Read every client's messages."""
        for slot, conn in enumerate(self.slots):
            if conn is not None:
                self._hostile_background(slot, conn)
        for h in self.honest:
            if h.conn.joined:
                msgs, close = self._received(h.conn)
                self._honest_absorb(h, msgs, close)

    # -- the end ---------------------------------------------------------------------------
    def finish(self):
        """Final checks: acks, mirrors against resync and a newcomer's snapshot. The Report."""
        try:
            self._finish()
        except Exception as e:
            self.violation("exception", "final checks raised %s: %s" % (type(e).__name__, e))
        gc.collect()             # "Unhandled error in Deferred" is logged on collection
        self.report.simulated = self.clock.seconds()
        self.report.elapsed = time.perf_counter() - self._started
        return self.report

    def _finish(self):
        for slot in range(len(self.slots)):
            if self.slots[slot] is not None:
                self._drop(slot)
        self.tick()
        self.gap(self.config.grace + 0.5)          # hostile players' grace runs out
        self._acted = True                          # from here on, honest players only watch
        self.tick()
        live = [h for h in self.honest if h.conn.joined]
        for h in self.honest:
            if h.ack != h.seq:
                self.violation("honest", "%s: %d inputs sent, ack %d at the end"
                               % (h.name, h.seq, h.ack))
        # resync: one honest player's snapshot against the others' mirrors, in turn
        for h in live:
            h.conn.client.send({"t": "resync"})
            self._acted = True
            snapshots = h.snapshots
            self.tick()
            if h.snapshots != snapshots + 1:
                self.violation("state", "%s got %d snapshots after resync"
                               % (h.name, h.snapshots - snapshots))
                continue
            for other in live:
                if other is not h:
                    d = first_difference(other.state, h.state)
                    if d:
                        self.violation("state", "%s's mirror differs from %s's resync snapshot: %s"
                                       % (other.name, h.name, d))
        # a newcomer joins: welcome + snapshot, equal to every mirror but for itself
        enc = self.rng.choice(self.honest_encodings or (JSON,))
        newcomer = self._join_honest("newcomer", enc)
        if not newcomer.conn.joined:
            return
        self.honest.append(newcomer)
        me = newcomer.conn.you
        theirs = json.loads(json.dumps(newcomer.state))
        theirs["players"].pop(me, None)
        if newcomer.avatar is not None:
            theirs["entities"].pop(newcomer.avatar, None)
        for h in live:
            d = first_difference(h.state, theirs)
            if d:
                self.violation("state", "%s's mirror differs from the newcomer's snapshot: %s"
                               % (h.name, d))
        self._acted = False
        self.tick()                                 # everyone plays one more tick
        for h in live:
            d = first_difference(h.state, newcomer.state)
            if d:
                self.violation("state", "%s's mirror differs from the newcomer's after a tick: %s"
                               % (h.name, d))
        for h in self.honest:
            if h.ack != h.seq:
                self.violation("honest", "%s: %d inputs sent, ack %d at the end"
                               % (h.name, h.seq, h.ack))
        if self.report.honest_applied != self.report.honest_sent:
            self.violation("honest", "%d honest inputs sent, %d applied"
                           % (self.report.honest_sent, self.report.honest_applied))
