"""The turn scheduler of a lockstep room: turn packets in, master packets out.

A :class:`TurnScheduler` owns the game's turns once it has started: which
players are in it, each turn's packets as they arrive, the one timer (on the
injected clock) that closes the next turn, the master packets sent so far, the
timing adaptation, and the checksum ledger. It sends nothing but masters and
knows nothing of connections, phases or messages: it asks its *host* (the room,
:class:`ITurnHost`) what it needs and tells it what happened.

The room (arbiter/lockstep.py) calls: :meth:`~TurnScheduler.begin` at the start,
:meth:`~TurnScheduler.take` for each ``turn`` packet of a player,
:meth:`~TurnScheduler.schedule` when turns may close again,
:meth:`~TurnScheduler.stop` when they may not, :meth:`~TurnScheduler.restart_clock`
when a pause ends, :meth:`~TurnScheduler.drop` and :meth:`~TurnScheduler.settle`
when the players reporting checksums change, and reads the attributes below.
Timing rules: docs/PROTOCOL.md 15.6; checksums: 15.7.
"""

from zope.interface import Attribute, Interface, implementer

from arbiter.checksums import ChecksumLedger
from arbiter.codes import BAD_TURN, DUPLICATE, LATE, NOT_IN_GAME, TOO_BIG
from arbiter.lockstep_packets import MAX_AHEAD, MAX_CMD_BYTES, adapt_timing

EPS = 1e-6


class ITurnHost(Interface):
    """What a :class:`TurnScheduler` asks of and tells its room."""

    def turns_may_close():
        """True while turns may close (phase ``running`` or ``running.lagging``)."""

    def is_present(pid):
        """True if player ``pid`` is in the room and connected."""

    def rtt_ms(pid):
        """The server's own round-trip measurement of ``pid`` in ms, or None."""

    def broadcast(msg):
        """Send ``msg`` (a master packet) to everyone in the room."""

    def lagging_changed():
        """:attr:`TurnScheduler.lagging` changed: the phase may have to follow."""

    def desynced(found):
        """Checksums diverged (an arbiter.checksums divergence): the game halts.
        The scheduler has stopped and set :attr:`TurnScheduler.desync` already."""


class ITurnScheduler(Interface):
    """The scheduler as its room uses it."""

    turn = Attribute("the last closed turn (0 before the first)")
    turn_ms = Attribute("the current turn length in ms")
    frames = Attribute("simulation steps per turn")
    input_delay = Attribute("how many turns ahead clients send")
    order = Attribute("player ids in the game, in join order")
    active = Attribute("the ids of ``order`` not dropped")
    masters = Attribute("every master packet so far; masters[n - 1] is turn n")
    lagging = Attribute("the next turn is overdue (the room shows running.lagging)")
    desync = Attribute("the desync message's body once checksums diverged, else None")

    def begin(order):
        """The game starts with these players; turn 1 is due ``turn_ms`` from now."""

    def take(pid, msg):
        """A player's ``turn`` packet: None, or (code, text) to reject it with."""

    def schedule():
        """Close the next turn now if it is due, else set the timer for it."""

    def stop():
        """Cancel the timer (a pause, a desync, the end)."""

    def restart_clock():
        """A pause ended: the turn clock restarts from now and lagging is forgotten."""

    def drop(pid):
        """``pid`` leaves the game; the next master names it in ``dropped``."""

    def settle():
        """Decide the checksums the present players have all reported."""

    def waiting_for(turn):
        """Active players whose packet for ``turn`` is not in."""

    def next_for(pid):
        """The first turn from which ``pid`` has no packet in (catchup's ``next``)."""


@implementer(ITurnScheduler)
class TurnScheduler:
    """Collects turn packets and closes turns into master packets on a clock."""

    def __init__(self, clock, host, base_turn_ms, turn_timeout, input_delay=2,
                 adapt_every=10):
        self.clock = clock
        self.host = host
        self.base_turn_ms = base_turn_ms
        self.turn_timeout = turn_timeout
        self.input_delay = max(1, int(input_delay))
        self.adapt_every = max(1, int(adapt_every))
        self.lag_after = min(0.25, turn_timeout / 2.0)
        self.order = []                # player ids in the game, in join order
        self.active = set()            # ... minus the dropped ones
        self.turn = 0                  # the last closed turn
        self.turn_ms = base_turn_ms
        self.frames = 1
        self.pending = {}              # turn -> {pid: cmds}
        self.masters = []              # every master packet, masters[n - 1] is turn n
        self.ledger = ChecksumLedger()
        self.reports = {}              # pid -> (lat, fps)
        self.to_drop = []              # dropped players announced in the next master
        self.desync = None
        self.last_close_at = None
        self.lagging = False
        self._timer = None

    def begin(self, order):
        self.order = list(order)
        self.active = set(self.order)
        self.last_close_at = self.clock.seconds()

    # -- packets -------------------------------------------------------------------------
    def take(self, pid, msg):
        """Checked in PROTOCOL.md 15.5's order from ``not_in_game`` on; the packet's
        ``check`` counts before ``late`` and the rest are looked at."""
        turn = msg["turn"]
        if pid not in self.active:
            return NOT_IN_GAME, "player %s is not in this game" % pid
        if "lat" in msg.fields or "fps" in msg.fields:
            lat, fps = self.reports.get(pid, (None, None))
            self.reports[pid] = (msg.get("lat", lat), msg.get("fps", fps))
        if "check" in msg.fields:
            self._take_check(pid, *msg["check"])
            if self.desync is not None:
                return None
        if turn <= self.turn:
            return LATE, ("turn %d is closed (the last closed turn is %d): your commands "
                          "for it were dropped" % (turn, self.turn))
        if turn > self.turn + MAX_AHEAD:
            return BAD_TURN, ("turn %d is too far ahead: expected %d to %d"
                              % (turn, self.turn + 1, self.turn + MAX_AHEAD))
        if msg["size"] > MAX_CMD_BYTES:
            return TOO_BIG, ("commands for turn %d are %d bytes, at most %d allowed"
                             % (turn, msg["size"], MAX_CMD_BYTES))
        slot = self.pending.setdefault(turn, {})
        if pid in slot:
            return DUPLICATE, "turn %d already has your packet" % turn
        slot[pid] = msg["cmds"]
        if turn == self.turn + 1:
            self.schedule()
        return None

    def waiting_for(self, turn):
        slot = self.pending.get(turn, {})
        return [pid for pid in self.order if pid in self.active and pid not in slot]

    def next_for(self, pid):
        nxt = self.turn + 1
        while pid in self.pending.get(nxt, ()):
            nxt += 1
        return nxt

    # -- the timer -----------------------------------------------------------------------
    def schedule(self):
        """Close the next turn now, or set the one timer for when something is due.

        A turn closes ``turn_ms`` after the previous one once every player's
        packet is in; a turn still incomplete ``lag_after`` past that sets
        :attr:`lagging` (the room shows ``running.lagging``); ``turn_timeout``
        past it the turn closes anyway and the missing players are named in
        ``late``."""
        self.stop()
        if not self.host.turns_may_close():
            return
        now = self.clock.seconds()
        due = self.last_close_at + self.turn_ms / 1000.0
        if not self.waiting_for(self.turn + 1):
            at = due
        else:
            lag_at = due + self.lag_after
            if not self.lagging and now + EPS >= lag_at:
                self.lagging = True
                self.host.lagging_changed()
            at = due + self.turn_timeout if self.lagging else lag_at
        if at <= now + EPS:
            self._close_turn()
            return
        self._timer = self.clock.callLater(at - now, self.schedule)

    def stop(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def restart_clock(self):
        self.lagging = False
        self.last_close_at = self.clock.seconds()

    def _close_turn(self):
        n = self.turn + 1
        slot = self.pending.pop(n, {})
        cmds = {pid: slot.get(pid, []) for pid in self.order if pid in self.active}
        master = {"t": "master", "turn": n, "cmds": cmds, "turn_ms": self.turn_ms,
                  "frames": self.frames}
        late = [pid for pid in cmds if pid not in slot]
        if late:
            master["late"] = late
        if self.to_drop:
            master["dropped"], self.to_drop = self.to_drop, []
        self.turn = n
        self.masters.append(master)
        self.last_close_at = self.clock.seconds()
        self.host.broadcast(master)
        if n % self.adapt_every == 0:
            self._adapt()
        if self.lagging:
            self.lagging = False
            self.host.lagging_changed()
        self.schedule()

    def _adapt(self):
        reports = []
        for pid in self.active:
            lat, fps = self.reports.get(pid, (None, None))
            if lat is None:
                lat = self.host.rtt_ms(pid)
            reports.append((lat, fps))
        self.turn_ms, self.frames = adapt_timing(self.base_turn_ms, reports,
                                                 self.input_delay, self.turn_ms)

    # -- players leaving -------------------------------------------------------------------
    def drop(self, pid):
        self.active.discard(pid)
        self.to_drop.append(pid)
        self.reports.pop(pid, None)

    # -- checksums -----------------------------------------------------------------------
    def _expected_checks(self):
        return [pid for pid in self.order if pid in self.active and self.host.is_present(pid)]

    def _take_check(self, pid, turn, value):
        if turn > self.turn:
            return          # a checksum of a turn not closed yet cannot be right; ignore
        found = self.ledger.report(pid, turn, value, self._expected_checks(), self.order)
        if found is not None:
            self._halt(found)

    def settle(self):
        found = self.ledger.settle_all(self._expected_checks(), self.order)
        if found is not None:
            self._halt(found)

    def _halt(self, found):
        self.desync = found.as_wire()
        self.stop()
        self.host.desynced(found)
